//! The benchmark's own Socket.IO client over WebSocket: connect (bound to a chosen source
//! address), Engine.IO open, Socket.IO CONNECT with auth, then a receive loop that answers
//! pings, acknowledges batches and records each message's end-to-end latency.
//!
//! The framing is written out here because it is tiny and hot: `0{open}`, `40{auth}`,
//! `2`/`3` ping/pong, events `42<ack>["message",[..]]`, acks `43<ack>[]`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use async_std::channel::Receiver;
use async_std::net::TcpStream;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures::StreamExt;
use futures::future::Either;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::sys::unix_us;

/// One client's WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// What every connection adds to, read by the scenario while it runs.
#[derive(Debug, Default)]
pub struct Shared {
    /// Messages received for the first time (by `(connection, data.s)`).
    pub received: AtomicU64,
    /// Messages received again (a redelivery the client had already seen).
    pub duplicates: AtomicU64,
    /// Acks sent.
    pub acks: AtomicU64,
    /// Connections that ended before the scenario stopped them.
    pub dropped: AtomicU64,
    /// `kicked` events received.
    pub kicked: AtomicU64,
    /// Frames that could not be read as what the benchmark sends.
    pub foreign: AtomicU64,
    /// The latest receive time seen, Unix microseconds.
    pub last_recv_us: AtomicU64,
    /// The first reason a connection ended early, for the report.
    pub first_drop: Mutex<Option<String>>,
}

impl Shared {
    fn dropped(&self, reason: String) {
        self.dropped.fetch_add(1, Relaxed);
        let mut first = self.first_drop.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(reason);
        }
    }
}

/// The stamp the benchmark puts in every push's `data`.
#[derive(Deserialize)]
struct Stamp {
    /// When the push was due to be sent, Unix microseconds.
    t: u64,
    /// The push's sequence number within the run: unique per recipient.
    s: u64,
}

/// The part of a message object the benchmark reads.
#[derive(Deserialize)]
struct Msg {
    data: Stamp,
}

/// Connect auth: HMAC-signed per DESIGN.md when `secret` is given, else just the client id
/// (what the peers read to pick the client's room).
pub fn auth(client_id: &str, secret: Option<&str>) -> serde_json::Value {
    match secret {
        Some(secret) => {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            json!({
                "client_id": client_id,
                "ts": ts,
                "sig": herald_core::auth::hmac_hex(secret.as_bytes(), ts, client_id),
                "slot": 0,
            })
        }
        None => json!({ "client_id": client_id }),
    }
}

/// A TCP connection to `addr` from `source` (port chosen by the kernel), Nagle off.
fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into())
}

/// Opens a Socket.IO session as `client_id` on `addr` and waits for the server's CONNECT
/// answer. Pings that arrive meanwhile are answered.
///
/// # Errors
/// When the TCP connection, the WebSocket handshake or the Socket.IO connect fails, or the
/// server refuses the client.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    client_id: &str,
    secret: Option<&str>,
) -> anyhow::Result<Ws> {
    let tcp = async_std::task::spawn_blocking(move || tcp_connect(addr, source))
        .await
        .with_context(|| format!("TCP connect to {addr} from {source:?}"))?;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    // Small buffers: tens of thousands of mostly idle connections live in this process.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) =
        async_tungstenite::client_async_with_config(&url, TcpStream::from(tcp), Some(config))
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
    let mut sent_connect = false;
    while let Some(frame) = ws.next().await {
        let frame = frame.context("reading the session's first packets")?;
        let Message::Text(text) = frame else { continue };
        let text = text.as_str();
        match text.as_bytes().first() {
            Some(b'0') if !sent_connect => {
                let connect = format!("40{}", auth(client_id, secret));
                ws.send(Message::text(connect)).await?;
                sent_connect = true;
            }
            Some(b'2') => ws.send(Message::text(format!("3{}", &text[1..]))).await?,
            Some(b'1') => bail!("the server closed the session while connecting"),
            Some(b'4') if text.starts_with("40") => return Ok(ws),
            Some(b'4') if text.starts_with("44") => bail!("refused: {}", &text[2..]),
            _ => {}
        }
    }
    bail!("the connection ended before the Socket.IO connect was answered")
}

/// What one text frame asks of the receive loop.
enum Reply {
    None,
    Send(String),
    Closed(&'static str),
}

/// Per-connection state of the receive loop.
struct Receiving<'a> {
    shared: &'a Shared,
    seen: HashSet<u64>,
    latencies: Vec<u32>,
}

impl Receiving<'_> {
    fn frame(&mut self, text: &str) -> Reply {
        match text.as_bytes().first() {
            Some(b'2') => Reply::Send(format!("3{}", &text[1..])),
            Some(b'1') => Reply::Closed("engine.io close from the server"),
            Some(b'4') => self.socketio(&text[1..]),
            _ => Reply::None,
        }
    }

    fn socketio(&mut self, p: &str) -> Reply {
        match p.as_bytes().first() {
            Some(b'2') => self.event(&p[1..]),
            Some(b'1') => Reply::Closed("socket.io disconnect from the server"),
            _ => Reply::None,
        }
    }

    /// `<ack digits>["name",args..]` of the default namespace.
    fn event(&mut self, p: &str) -> Reply {
        let digits = p.bytes().take_while(u8::is_ascii_digit).count();
        let ack: Option<u64> = p[..digits].parse().ok();
        let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(&p[digits..]) else {
            self.shared.foreign.fetch_add(1, Relaxed);
            return Reply::None;
        };
        let name = parts
            .first()
            .and_then(|n| serde_json::from_str::<&str>(n.get()).ok());
        match (name, parts.get(1)) {
            (Some("message"), Some(batch)) => match serde_json::from_str::<Vec<Msg>>(batch.get()) {
                Ok(batch) => self.batch(batch),
                Err(_) => {
                    self.shared.foreign.fetch_add(1, Relaxed);
                }
            },
            (Some("kicked"), _) => {
                self.shared.kicked.fetch_add(1, Relaxed);
            }
            _ => {
                self.shared.foreign.fetch_add(1, Relaxed);
            }
        }
        match ack {
            Some(id) => {
                self.shared.acks.fetch_add(1, Relaxed);
                Reply::Send(format!("43{id}[]"))
            }
            None => Reply::None,
        }
    }

    fn batch(&mut self, batch: Vec<Msg>) {
        let now = unix_us();
        let mut fresh = 0;
        for m in batch {
            if self.seen.insert(m.data.s) {
                fresh += 1;
                let us = now.saturating_sub(m.data.t).min(u64::from(u32::MAX));
                self.latencies.push(us as u32);
            } else {
                self.shared.duplicates.fetch_add(1, Relaxed);
            }
        }
        self.shared.last_recv_us.fetch_max(now, Relaxed);
        self.shared.received.fetch_add(fresh, Relaxed);
    }
}

/// Receives on `ws` until `stop` closes (or the connection ends, counted as dropped), answering
/// pings and acks; returns the latencies (microseconds) of the messages it received.
pub async fn receive(mut ws: Ws, shared: &Shared, stop: Receiver<()>) -> Vec<u32> {
    let mut state = Receiving {
        shared,
        seen: HashSet::new(),
        latencies: Vec::new(),
    };
    let mut stopped = Box::pin(stop.recv());
    loop {
        let frame = match futures::future::select(ws.next(), &mut stopped).await {
            Either::Left((Some(Ok(frame)), _)) => frame,
            Either::Left((Some(Err(e)), _)) => {
                shared.dropped(format!("transport error: {e}"));
                break;
            }
            Either::Left((None, _)) => {
                shared.dropped("connection closed by the server".into());
                break;
            }
            Either::Right(_) => {
                let _ = ws.close(None).await;
                break;
            }
        };
        let Message::Text(text) = frame else { continue };
        match state.frame(text.as_str()) {
            Reply::None => {}
            Reply::Send(out) => {
                if let Err(e) = ws.send(Message::text(out)).await {
                    shared.dropped(format!("send failed: {e}"));
                    break;
                }
            }
            Reply::Closed(why) => {
                shared.dropped(why.into());
                break;
            }
        }
    }
    state.latencies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiving(shared: &Shared) -> Receiving<'_> {
        Receiving {
            shared,
            seen: HashSet::new(),
            latencies: Vec::new(),
        }
    }

    #[test]
    fn frames_are_answered_and_counted() {
        let shared = Shared::default();
        let mut r = receiving(&shared);
        assert!(matches!(r.frame("2"), Reply::Send(s) if s == "3"));
        let t = unix_us();
        let herald = format!(
            r#"4217["message",[{{"id":1,"from":"b","channel":[],"data":{{"t":{t},"s":4}},"ts":0}}]]"#
        );
        assert!(matches!(r.frame(&herald), Reply::Send(s) if s == "4317[]"));
        let peer = format!(r#"42["message",[{{"id":9,"data":{{"t":{t},"s":4}}}}]]"#);
        assert!(matches!(r.frame(&peer), Reply::None));
        assert_eq!(shared.received.load(Relaxed), 1);
        assert_eq!(shared.duplicates.load(Relaxed), 1);
        assert_eq!(r.latencies.len(), 1);
        assert!(matches!(
            r.frame(r#"42["kicked",{"reason":"replaced"}]"#),
            Reply::None
        ));
        assert_eq!(shared.kicked.load(Relaxed), 1);
        assert!(matches!(r.frame("41"), Reply::Closed(_)));
    }
}
