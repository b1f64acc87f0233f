//! Messages as stored and delivered.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::ids::MessageId;
use crate::push_id::PushId;

/// A message's `data`: any JSON value except `null`, kept as its JSON text.
///
/// Kept as text (not a parsed tree) and shared, because one push is stored for up to 10 000
/// recipients and serialized again for every delivery: cloning and writing it costs nothing.
#[derive(Clone)]
pub struct Payload(Arc<RawValue>);

impl Payload {
    /// Parses `json` as a payload.
    ///
    /// # Errors
    /// When `json` is not one valid JSON value, or is `null`.
    pub fn from_json(json: &str) -> Result<Payload, PayloadError> {
        let raw: Box<RawValue> =
            serde_json::from_str(json).map_err(|e| PayloadError::Json(e.to_string()))?;
        Payload::from_raw(raw)
    }

    /// Wraps an already parsed raw value.
    ///
    /// # Errors
    /// [`PayloadError::Null`] for `null`.
    pub fn from_raw(raw: Box<RawValue>) -> Result<Payload, PayloadError> {
        if raw.get() == "null" {
            return Err(PayloadError::Null);
        }
        Ok(Payload(Arc::from(raw)))
    }

    /// The payload's JSON text (compact as received, not re-formatted).
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// `data` must not be null.
    #[error("data must not be null")]
    Null,
    /// The text is not valid JSON.
    #[error("data is not valid JSON: {0}")]
    Json(String),
}

impl PartialEq for Payload {
    /// Payloads compare by their JSON text.
    fn eq(&self, other: &Payload) -> bool {
        self.0.get() == other.0.get()
    }
}
impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({})", self.0.get())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Payload::from_raw(raw).map_err(serde::de::Error::custom)
    }
}

/// A message as stored in a client's queue and delivered to its sessions.
///
/// Serializes to the wire form of DESIGN.md:
/// `{"id":17,"from":"billing","channel":["invoice"],"data":{...},"ts":1764000000123}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Per-client sequence number, strictly increasing.
    pub id: MessageId,
    /// The sender (`send_id` of the push).
    pub from: String,
    /// The push's topics (the seed called them "channel").
    pub channel: Vec<String>,
    /// The application's payload.
    pub data: Payload,
    /// When the store accepted the message, Unix milliseconds.
    pub ts: u64,
    /// The push it is a copy of, when the store knows (copies stored before push ids existed
    /// have none). Not part of the wire form: clients never see it; the engine uses it to
    /// record delivery receipts per push.
    #[serde(skip)]
    pub push: Option<PushId>,
}

/// A message before the store gives it an id: what `POST /push` hands to the store once for
/// all its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The sender (`send_id`).
    pub from: String,
    /// The topics.
    pub channel: Vec<String>,
    /// The payload.
    pub data: Payload,
    /// How long the message is kept; `None` means the store's default retention TTL.
    pub ttl: Option<Duration>,
    /// The push this message belongs to (every copy remembers it).
    pub push: Option<PushId>,
}

impl NewMessage {
    /// The stored form of this message for one recipient, given its id and store time.
    pub fn to_message(&self, id: MessageId, ts: u64) -> Message {
        Message {
            id,
            from: self.from.clone(),
            channel: self.channel.clone(),
            data: self.data.clone(),
            ts,
            push: self.push,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_serializes_to_the_wire_form() {
        let m = Message {
            id: MessageId(17),
            from: "billing".into(),
            channel: vec!["invoice".into()],
            data: Payload::from_json(r#"{"n": 1}"#).unwrap(),
            ts: 1764000000123,
            push: Some(crate::push_id::PushIds::new(1).next(1)),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"id":17,"from":"billing","channel":["invoice"],"data":{"n": 1},"ts":1764000000123}"#
        );
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back,
            Message { push: None, ..m },
            "the push id is not on the wire"
        );
    }

    #[test]
    fn payload_refuses_null_and_bad_json() {
        assert_eq!(Payload::from_json("null"), Err(PayloadError::Null));
        assert!(matches!(
            Payload::from_json("{"),
            Err(PayloadError::Json(_))
        ));
        assert!(Payload::from_json("0").is_ok());
        assert!(Payload::from_json("\"s\"").is_ok());
        assert!(
            serde_json::from_str::<Message>(
                r#"{"id":1,"from":"a","channel":[],"data":null,"ts":0}"#
            )
            .is_err()
        );
    }
}
