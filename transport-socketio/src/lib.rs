//! # herald-socketio
//!
//! A Socket.IO v5 (Engine.IO v4) server library: a pure codec ([`engineio::packet`],
//! [`socketio::packet`]) and a server for WebSocket and HTTP long-polling (with upgrade),
//! served on tide. It knows nothing of what the app sends; it hands the app connections and
//! events.

pub mod engineio;
pub mod server;
pub mod socketio;

pub use server::{
    Connection, EmitError, Event, Handshake, Pending, ServerConfig, Socket, SocketIo,
};
