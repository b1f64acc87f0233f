//! # herald-socketio
//!
//! A Socket.IO v5 (Engine.IO v4) server library, which also serves socket.io 1.x/2.x clients
//! (Engine.IO v3): a pure codec ([`engineio::packet`],
//! [`socketio::packet`]) and a server for WebSocket and HTTP long-polling (with upgrade),
//! served on tide. It knows nothing of what the app sends; it hands the app connections and
//! events.

pub mod engineio;
pub mod http1;
mod mailbox;
mod outbox;
pub mod pairs;
pub mod server;
pub mod socketio;

pub use pairs::Pairs;
pub use server::{
    Connection, CorsLayer, EmitError, Event, Handshake, Pending, ServerConfig, Socket, SocketIo,
};
