//! `herald-cli tail`: a minimal Socket.IO client over WebSocket, built on herald-socketio's
//! codec: HMAC auth, ack mode, every message printed as one JSON line and acknowledged.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use herald_socketio::engineio::packet::Packet as Eio;
use herald_socketio::socketio::packet::{Packet as Sio, PacketType};
use serde_json::{Value, json};

/// Connects to `connector` as `client` on `slot` and prints messages until `count` (or forever).
pub async fn run(
    connector: &str,
    client: &str,
    slot: u8,
    secret: &str,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let base = connector.trim_end_matches('/');
    let host = base
        .strip_prefix("http://")
        .context("--connector must be an http:// URL")?
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let url = format!("ws://{host}/socket.io/?EIO=4&transport=websocket");
    let tcp = TcpStream::connect(&host)
        .await
        .with_context(|| format!("connecting to {host}"))?;
    let (mut ws, _) = async_tungstenite::client_async(&url, tcp)
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    let ts = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let auth = json!({
        "client_id": client,
        "ts": ts,
        "sig": herald_core::auth::hmac_hex(secret.as_bytes(), ts, client),
        "slot": slot,
    });
    let mut seen = 0u64;
    while let Some(frame) = ws.next().await {
        let frame = frame.context("reading from the server")?;
        let Message::Text(text) = frame else { continue };
        match Eio::decode(text.as_str())
            .map_err(|e| anyhow::anyhow!("bad packet from the server: {e}"))?
        {
            Eio::Open(_) => {
                let connect = Sio {
                    kind: PacketType::Connect,
                    nsp: "/".into(),
                    id: None,
                    data: Some(auth.clone()),
                    attachments: 0,
                };
                ws.send(Message::text(Eio::Message(connect.encode()).encode()))
                    .await?;
            }
            Eio::Ping(d) => ws.send(Message::text(Eio::Pong(d).encode())).await?,
            Eio::Close => bail!("the server closed the session"),
            Eio::Message(m) => {
                let p = Sio::decode(&m)
                    .map_err(|e| anyhow::anyhow!("bad packet from the server: {e}"))?;
                match p.kind {
                    PacketType::ConnectError => bail!("refused: {}", p.data.unwrap_or(Value::Null)),
                    PacketType::Connect => {
                        // On stderr, so stdout stays one message per line: without it a
                        // connected tail and a hung one look alike until a message comes.
                        #[allow(clippy::print_stderr, reason = "the command's status line")]
                        {
                            eprintln!(
                                "connected to {base} as {client} (slot {slot}); waiting for messages"
                            );
                        }
                    }
                    PacketType::Disconnect => bail!("disconnected by the server"),
                    PacketType::Event => {
                        let args = p
                            .data
                            .and_then(|d| d.as_array().cloned())
                            .unwrap_or_default();
                        match args.first().and_then(Value::as_str) {
                            Some("message") => {
                                let batch = args
                                    .get(1)
                                    .and_then(Value::as_array)
                                    .cloned()
                                    .unwrap_or_default();
                                for m in &batch {
                                    #[allow(clippy::print_stdout, reason = "the command's output")]
                                    {
                                        println!("{m}");
                                    }
                                }
                                if let Some(id) = p.id {
                                    let ack = Sio {
                                        kind: PacketType::Ack,
                                        nsp: "/".into(),
                                        id: Some(id),
                                        data: Some(json!([])),
                                        attachments: 0,
                                    };
                                    ws.send(Message::text(Eio::Message(ack.encode()).encode()))
                                        .await?;
                                }
                                seen += batch.len() as u64;
                                if count.is_some_and(|c| seen >= c) {
                                    let _ = ws.close(None).await;
                                    return Ok(());
                                }
                            }
                            Some("kicked") => {
                                bail!("kicked: {}", args.get(1).unwrap_or(&Value::Null))
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    bail!("the connection ended")
}
