//! A minimal socketioxide server with the surface Herald's benchmark drives: Socket.IO over
//! WebSocket on `/socket.io/`, each client joining the room named by the `client_id` of its
//! CONNECT auth, and `POST /push` emitting `message` `[msg]` to the room of every `recv_id`.
//! No durability, no acknowledgements: a peer to compare Herald against, nothing more.
//!
//! Usage: `socketioxide-peer [ADDR]` (default 127.0.0.1:3000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::serve::ListenerExt;
use axum::routing::post;
use axum::{Json, Router};
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
}

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
    for to in &p.recv_id {
        let msg = json!({
            "id": NEXT_ID.fetch_add(1, Ordering::Relaxed),
            "from": p.send_id,
            "channel": channel,
            "data": p.data,
            "ts": unix_ms(),
        });
        // A one-element tuple: one argument, the batch array `[msg]`.
        if app.io.to(to.clone()).emit("message", &(vec![msg],)).await.is_ok() {
            sent += 1;
        }
    }
    Json(json!({ "ok": 1, "send": sent }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |s: SocketRef, Data(auth): Data<Value>| {
        if let Some(id) = auth.get("client_id").and_then(Value::as_str) {
            s.join(id.to_owned());
        }
    });
    let app = Router::new()
        .route("/push", post(push))
        .with_state(App { io })
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("socketioxide-peer listening on {}", listener.local_addr()?);
    // Like Herald and Node: Nagle off, so small deliveries never wait for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
