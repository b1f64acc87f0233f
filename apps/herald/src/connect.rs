//! Socket.IO connections into the engine: each is authenticated at CONNECT (credentials
//! taken from the handshake by [`Credentials::from_handshake`]), handed to its client's shard,
//! and its acks, commits and end are forwarded as Hub inputs.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use async_std::channel::{Receiver, Sender};
use herald_core::auth::{AuthConfig, Credentials, authenticate};
use herald_core::{AckId, Broker, ConnId, Input, MessageStore};
use herald_socketio::{Event, Pending};
use serde_json::json;

use crate::api::unix_ms;
use crate::driver::{Node, ShardMsg};
use crate::metrics::Metrics;

/// Accepts Socket.IO connections: authenticates each, hands it to its shard, forwards its acks,
/// commits and end.
pub async fn accept_connections<S: MessageStore, B: Broker>(
    incoming: Receiver<Pending>,
    auth: Arc<AuthConfig>,
    node: Arc<Node<S, B>>,
) {
    while let Ok(pending) = incoming.recv().await {
        let h = &pending.handshake;
        let creds = Credentials::from_handshake(
            h.auth.clone(),
            h.query.iter(),
            h.header("x-nbb-authid"),
            h.header("x-nbb-sign"),
        );
        let identity = match authenticate(&auth, &creds, unix_ms() / 1000) {
            Ok(id) => id,
            Err(e) => {
                Metrics::inc(&node.metrics.auth_failures);
                log::info!(
                    "connection refused from {}: {e}",
                    h.remote.as_deref().unwrap_or("an unknown peer")
                );
                pending.refuse(json!({ "message": e.client_message() }));
                continue;
            }
        };
        let conn = ConnId(node.next_conn.fetch_add(1, Relaxed));
        let protocol = pending.handshake.protocol;
        node.metrics.connections.fetch_add(1, Relaxed);
        Metrics::inc(&node.metrics.connections_total);
        log::debug!(
            "{conn} is {} slot {} ({:?}, Engine.IO v{})",
            identity.client,
            identity.slot,
            identity.mode,
            protocol
        );
        let shard = node.shard_of(&identity.client).clone();
        // The client's events go straight from its session to the shard (no channel or task
        // of ours per connection); those that come before the shard has the connection wait.
        let forward = Arc::new(Forward {
            conn,
            shard: shard.clone(),
            metrics: node.metrics.clone(),
            early: Mutex::new(Some(Vec::new())),
            closed: AtomicBool::new(false),
        });
        let handler = forward.clone();
        let socket = pending.accept_with(move |event| handler.event(event));
        let _ = shard.try_send(ShardMsg::Connect {
            conn,
            socket,
            identity,
        });
        forward.open();
    }
}

/// Hands one connection's events to its shard as Hub inputs, the end exactly once.
struct Forward {
    conn: ConnId,
    shard: Sender<ShardMsg>,
    metrics: Arc<Metrics>,
    /// Inputs that came before the shard was sent the connection; `None` once it was.
    early: Mutex<Option<Vec<Input>>>,
    /// The end (`Disconnect`) was sent.
    closed: AtomicBool,
}

impl Forward {
    /// Called by the transport, on the connection's session task, for each event.
    fn event(&self, event: Event) {
        let conn = self.conn;
        let input = match event {
            Event::Ack { id, .. } => Input::Ack {
                conn,
                ack: AckId(id),
            },
            Event::Message { name, args, .. } if name == "commit" => {
                let n = args.first().and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                });
                match n {
                    Some(n) => Input::Commit { conn, n },
                    None => {
                        log::info!("{conn}: commit without a count: ignored");
                        return;
                    }
                }
            }
            Event::Message { name, .. } => {
                log::debug!("{conn}: event {name:?} ignored");
                return;
            }
            Event::Text(_) | Event::Binary(_) => return,
            Event::Closed { .. } => return self.close(),
        };
        self.send(input);
    }

    fn send(&self, input: Input) {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        match early.as_mut() {
            Some(waiting) => waiting.push(input),
            None => {
                let _ = self.shard.try_send(ShardMsg::Hub(input));
            }
        }
    }

    /// The shard has the connection: what waited goes, in order, and the rest goes directly.
    fn open(&self) {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        for input in early.take().unwrap_or_default() {
            let _ = self.shard.try_send(ShardMsg::Hub(input));
        }
    }

    /// The connection ended: its session leaves the Hub (once).
    fn close(&self) {
        if !self.closed.swap(true, Relaxed) {
            self.metrics.connections.fetch_sub(1, Relaxed);
            self.send(Input::Disconnect { conn: self.conn });
        }
    }
}

impl Drop for Forward {
    /// A session that ended without saying so (it panicked) still leaves the Hub.
    fn drop(&mut self) {
        self.close();
        self.open();
    }
}
