//! The echo server the interop tests run against, and a small demo of the library.
//!
//! - namespaces `/` and `/custom`; a CONNECT whose auth holds `"refuse": true` (or, for
//!   socket.io 2.x clients, which send no auth, a query `refuse=true`) is refused with
//!   `{"message":"refused"}`;
//! - on every connection, emits `auth` with the CONNECT payload (`{}` if none);
//! - `message` is echoed as `message-back` with the same arguments, binary included;
//! - `message-with-ack` is answered with an ack of the same arguments;
//! - a bare Engine.IO echo on `/engine.io/`: every message is sent back as it came.
//!
//! `cargo run -p herald-socketio --example echo -- --port 3000 [--ping-interval MS]
//!  [--ping-timeout MS] [--max-payload BYTES] [--connect-timeout MS]`
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example's console"
)]
#![allow(dead_code, reason = "the tests include this file for its echo logic")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_std::channel::Receiver;
use herald_core::Runtime;
use herald_it::AsyncStd;
use herald_socketio::{Event, Pending, ServerConfig, SocketIo};
use serde_json::{Value, json};

/// Accepts every pending connection and echoes, until the server stops.
pub async fn echo(incoming: Receiver<Pending>) {
    while let Ok(pending) = incoming.recv().await {
        let auth = pending.handshake.auth.clone().unwrap_or_else(|| json!({}));
        let refuse_query = pending
            .handshake
            .query
            .iter()
            .any(|(k, v)| k == "refuse" && v == "true");
        if auth.get("refuse") == Some(&Value::Bool(true)) || refuse_query {
            pending.refuse(json!({ "message": "refused" }));
            continue;
        }
        let conn = pending.accept();
        async_std::task::spawn(async move {
            let socket = conn.socket;
            let _ = socket.emit("auth", &[auth], None);
            while let Ok(event) = conn.events.recv().await {
                match event {
                    Event::Message {
                        name,
                        args,
                        attachments,
                        ack,
                    } => match name.as_str() {
                        "message" => {
                            let _ = socket.emit_binary("message-back", &args, attachments, None);
                        }
                        "message-with-ack" => {
                            if let Some(id) = ack {
                                let _ = socket.ack(id, &args, attachments);
                            }
                        }
                        _ => {}
                    },
                    Event::Ack { .. } | Event::Text(_) | Event::Binary(_) => {}
                    Event::Closed { .. } => break,
                }
            }
        });
    }
}

/// The bare Engine.IO echo: every text or binary message goes back as it came.
pub async fn engine_echo(incoming: Receiver<Pending>) {
    while let Ok(pending) = incoming.recv().await {
        let conn = pending.accept();
        async_std::task::spawn(async move {
            while let Ok(event) = conn.events.recv().await {
                match event {
                    Event::Text(t) => {
                        let _ = conn.socket.send_text(t);
                    }
                    Event::Binary(b) => {
                        let _ = conn.socket.send_binary(b);
                    }
                    Event::Closed { .. } => break,
                    _ => {}
                }
            }
        });
    }
}

/// The echo server's configuration from `args` (flags as in the module docs).
pub fn config(args: &[String]) -> Result<(u16, ServerConfig), String> {
    let mut port = 3000;
    let mut cfg = ServerConfig {
        namespaces: vec!["/".into(), "/custom".into()],
        ..ServerConfig::default()
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--port" => port = u16::try_from(n).map_err(|_| "--port: too large".to_owned())?,
            "--ping-interval" => cfg.ping_interval = Duration::from_millis(n),
            "--ping-timeout" => cfg.ping_timeout = Duration::from_millis(n),
            "--max-payload" => cfg.max_payload = n as usize,
            "--connect-timeout" => cfg.connect_timeout = Duration::from_millis(n),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok((port, cfg))
}

/// Starts the echo server (`/socket.io/` and `/engine.io/` on one port) on `addr`; returns
/// the Socket.IO server and the bound address.
pub async fn start(addr: SocketAddr, cfg: ServerConfig) -> std::io::Result<(SocketIo, SocketAddr)> {
    let runtime: Arc<dyn Runtime> = Arc::new(AsyncStd);
    let (io, incoming) = SocketIo::new(cfg.clone(), runtime.clone());
    let (engine, engine_incoming) = SocketIo::new(
        ServerConfig {
            path: "/engine.io/".into(),
            engine_only: true,
            ..cfg.clone()
        },
        runtime.clone(),
    );
    async_std::task::spawn(echo(incoming));
    async_std::task::spawn(engine_echo(engine_incoming));
    let mut app = tide::new();
    io.mount(&mut app);
    engine.mount(&mut app);
    let listener = async_std::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let limits = herald_socketio::http1::HttpLimits {
        max_body: cfg.max_payload,
        ..Default::default()
    };
    async_std::task::spawn(herald_socketio::http1::serve(
        listener, app, limits, runtime,
    ));
    Ok((io, bound))
}

#[async_std::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, cfg) = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(2);
        }
    };
    match start(SocketAddr::from(([127, 0, 0, 1], port)), cfg).await {
        Ok((_, addr)) => {
            println!("echo server on http://{addr}/socket.io/ and http://{addr}/engine.io/")
        }
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(1);
        }
    }
    futures::future::pending::<()>().await;
}
