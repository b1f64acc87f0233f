//! Validated identifiers: a value of these types is always well formed.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string or number was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A client id must be 1..=128 bytes.
    #[error("client id must be 1 to 128 bytes long, found {0} bytes")]
    ClientIdLength(usize),
    /// A client id may only hold `[A-Za-z0-9_.:@-]`.
    #[error("client id may only contain A-Z a-z 0-9 _ . : @ -, found {0:?}")]
    ClientIdChar(char),
    /// A slot is `0..=15`.
    #[error("slot must be 0 to 15, found {0}")]
    Slot(i64),
    /// A node id must be 1..=128 bytes of printable ASCII without spaces or `:`.
    #[error(
        "node id must be 1 to 128 printable ASCII characters without spaces or ':', found {0:?}"
    )]
    NodeId(String),
}

/// The addressee of pushes: 1..=128 bytes of `[A-Za-z0-9_.:@-]`.
///
/// Cheap to clone (shared string), because every session, request and event carries one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Longest accepted client id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates `s` as a client id.
    ///
    /// # Errors
    /// [`IdError::ClientIdLength`] or [`IdError::ClientIdChar`] when `s` is not a valid id.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(IdError::ClientIdLength(s.len()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-')))
        {
            return Err(IdError::ClientIdChar(c));
        }
        Ok(ClientId(Arc::from(s)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", &*self.0)
    }
}

impl std::str::FromStr for ClientId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        ClientId::new(s)
    }
}

impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ClientId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// An independent consumer cursor on a client's queue, `0..=15` (bit `slot` of the ack mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct Slot(u8);

impl Slot {
    /// Number of slots per client.
    pub const COUNT: u8 = 16;

    /// Validates `n` as a slot.
    ///
    /// # Errors
    /// [`IdError::Slot`] when `n` is outside `0..=15`.
    pub fn new(n: i64) -> Result<Self, IdError> {
        if (0..i64::from(Self::COUNT)).contains(&n) {
            Ok(Slot(n as u8))
        } else {
            Err(IdError::Slot(n))
        }
    }

    /// The slot number, `0..=15`.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The slot's bit in an ack bitmask.
    pub fn bit(self) -> u16 {
        1 << self.0
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Slot::new(n).map_err(serde::de::Error::custom)
    }
}

/// A message's per-client sequence number: strictly increasing, the first is 1.
///
/// `MessageId::ZERO` means "before the first message" (a cursor that has seen nothing).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl MessageId {
    /// The cursor position before any message.
    pub const ZERO: MessageId = MessageId(0);

    /// The next id in sequence.
    pub fn next(self) -> MessageId {
        MessageId(self.0 + 1)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A node's name in claims, logs and metrics: printable ASCII, no spaces, no `:`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Validates `s` as a node id.
    ///
    /// # Errors
    /// [`IdError::NodeId`] when `s` is empty, longer than 128 bytes, or holds a space, a `:` or
    /// a non-printable character (`:` separates fields in broker claim payloads).
    pub fn new(s: &str) -> Result<Self, IdError> {
        let ok =
            !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if ok {
            Ok(NodeId(Arc::from(s)))
        } else {
            Err(IdError::NodeId(s.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", &*self.0)
    }
}

/// The generation a session obtained when it claimed its `(client, slot)`: cluster-wide
/// strictly increasing per `(client, slot)`; the highest one wins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_accepts_the_documented_alphabet() {
        assert!(ClientId::new("u42").is_ok());
        assert!(ClientId::new("A-z_0.9:@x").is_ok());
        assert!(ClientId::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn client_id_refuses_bad_length_and_characters() {
        assert_eq!(ClientId::new(""), Err(IdError::ClientIdLength(0)));
        assert_eq!(
            ClientId::new(&"a".repeat(129)),
            Err(IdError::ClientIdLength(129))
        );
        assert_eq!(ClientId::new("a b"), Err(IdError::ClientIdChar(' ')));
        assert_eq!(ClientId::new("{x}"), Err(IdError::ClientIdChar('{')));
        assert_eq!(ClientId::new("é"), Err(IdError::ClientIdChar('é')));
    }

    #[test]
    fn client_id_deserializes_with_validation() {
        let ok: ClientId = serde_json::from_str("\"u1\"").unwrap();
        assert_eq!(ok.as_str(), "u1");
        assert!(serde_json::from_str::<ClientId>("\"bad id\"").is_err());
    }

    #[test]
    fn slot_range() {
        assert_eq!(Slot::new(0).unwrap().get(), 0);
        assert_eq!(Slot::new(15).unwrap().bit(), 1 << 15);
        assert_eq!(Slot::new(16), Err(IdError::Slot(16)));
        assert_eq!(Slot::new(-1), Err(IdError::Slot(-1)));
        assert!(serde_json::from_str::<Slot>("16").is_err());
        assert!(serde_json::from_str::<Slot>("3").is_ok());
    }

    #[test]
    fn node_id_rules() {
        assert!(NodeId::new("host-1_3001").is_ok());
        assert!(NodeId::new("a:b").is_err());
        assert!(NodeId::new("a b").is_err());
        assert!(NodeId::new("").is_err());
    }
}
