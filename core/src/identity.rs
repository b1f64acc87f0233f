//! Who a verified connection is: the result of authentication, the input of a session.

use crate::ids::{ClientId, Slot};

/// How a session consumes its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Batches of up to `window` messages, each batch acknowledged by a Socket.IO ack.
    #[default]
    Ack,
    /// The seed's protocol: an empty `message` first, then one message at a time, each
    /// acknowledged by the client's `commit` event with a count.
    Commit,
}

impl Mode {
    /// Parses the CONNECT auth `mode` field: `"ack"` or `"commit"`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "ack" => Some(Mode::Ack),
            "commit" => Some(Mode::Commit),
            _ => None,
        }
    }
}

/// A connection whose credentials were verified: which client, which slot, which mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The client the connection receives for.
    pub client: ClientId,
    /// The consumer cursor it uses.
    pub slot: Slot,
    /// How it acknowledges.
    pub mode: Mode,
}
