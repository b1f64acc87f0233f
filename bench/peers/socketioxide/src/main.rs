//! A minimal socketioxide server with the surface Herald's benchmark drives: Socket.IO over
//! WebSocket on `/socket.io/`, each client joining the room named by the `client_id` of its
//! CONNECT auth, and `POST /push` emitting `message` `[msg]` to the room of every `recv_id`.
//! No durability: a peer to compare Herald against, nothing more.
//!
//! With `--ack`, each `message` is emitted with an ack id (`emit_with_ack`) and the server
//! awaits every client's acknowledgement (one task per push drains the acks), so it does the
//! acknowledgement half of Herald's work; it still stores nothing and redelivers nothing.
//!
//! Usage: `socketioxide-peer [--ack] [ADDR]` (default 127.0.0.1:3000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::serve::ListenerExt;
use axum::routing::post;
use axum::{Json, Router};
use futures_util::StreamExt;
use futures_util::stream::select_all;
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};

/// The fields of Herald's `POST /push` body that a peer uses.
#[derive(Deserialize)]
struct Push {
    send_id: String,
    #[serde(default)]
    channel: Value,
    recv_id: Vec<String>,
    data: Value,
}

#[derive(Clone)]
struct App {
    io: SocketIo,
    /// Emit with an ack id and await the acks (`--ack`).
    ack: bool,
    /// Acknowledgements received and waits that failed (timeout, disconnect), logged at exit.
    acked: Arc<AtomicU64>,
    unacked: Arc<AtomicU64>,
}

/// How long the `--ack` peer waits for one client's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn push(State(app): State<App>, Json(p): Json<Push>) -> Json<Value> {
    let channel = match p.channel {
        Value::String(s) => json!([s]),
        other => other,
    };
    let mut sent = 0u64;
    let mut acks = Vec::new();
    for to in &p.recv_id {
        let msg = json!({
            "id": NEXT_ID.fetch_add(1, Ordering::Relaxed),
            "from": p.send_id,
            "channel": channel,
            "data": p.data,
            "ts": unix_ms(),
        });
        // A one-element tuple: one argument, the batch array `[msg]`.
        let room = app.io.to(to.clone());
        if app.ack {
            let emitted = room
                .timeout(ACK_TIMEOUT)
                .emit_with_ack::<_, Value>("message", &(vec![msg],))
                .await;
            if let Ok(stream) = emitted {
                sent += 1;
                acks.push(Box::pin(stream));
            }
        } else if room.emit("message", &(vec![msg],)).await.is_ok() {
            sent += 1;
        }
    }
    if !acks.is_empty() {
        let (acked, unacked) = (app.acked.clone(), app.unacked.clone());
        tokio::spawn(async move {
            let mut all = select_all(acks);
            while let Some((_, reply)) = all.next().await {
                let counter = if reply.is_ok() { &acked } else { &unacked };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    Json(json!({ "ok": 1, "send": sent }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ack = args.first().is_some_and(|a| a == "--ack");
    if ack {
        args.remove(0);
    }
    let addr = args.first().cloned().unwrap_or_else(|| "127.0.0.1:3000".into());
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |s: SocketRef, Data(auth): Data<Value>| {
        if let Some(id) = auth.get("client_id").and_then(Value::as_str) {
            s.join(id.to_owned());
        }
    });
    let app = Router::new()
        .route("/push", post(push))
        .with_state(App {
            io,
            ack,
            acked: Arc::new(AtomicU64::new(0)),
            unacked: Arc::new(AtomicU64::new(0)),
        })
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "socketioxide-peer listening on {}{}",
        listener.local_addr()?,
        if ack { " (emits with ack ids, awaits acks)" } else { "" }
    );
    // Like Herald and Node: Nagle off, so small deliveries never wait for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
