//! Socket.IO v5 packets, pure: encode and decode the text part; binary attachments travel
//! as separate Engine.IO binary messages and are joined by [`Assembler`].
//!
//! Text form: `<type>[<attachments>-][<namespace>,][<ack id>][<json>]`, e.g.
//! `0{"token":"x"}`, `2["message",1]`, `31[]`, `51-["up",{"_placeholder":true,"num":0}]`.

use serde_json::Value;

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`
    Connect,
    /// `1`
    Disconnect,
    /// `2`
    Event,
    /// `3`
    Ack,
    /// `4`
    ConnectError,
    /// `5`
    BinaryEvent,
    /// `6`
    BinaryAck,
}

impl PacketType {
    fn digit(self) -> char {
        match self {
            PacketType::Connect => '0',
            PacketType::Disconnect => '1',
            PacketType::Event => '2',
            PacketType::Ack => '3',
            PacketType::ConnectError => '4',
            PacketType::BinaryEvent => '5',
            PacketType::BinaryAck => '6',
        }
    }

    fn from_digit(c: char) -> Option<PacketType> {
        Some(match c {
            '0' => PacketType::Connect,
            '1' => PacketType::Disconnect,
            '2' => PacketType::Event,
            '3' => PacketType::Ack,
            '4' => PacketType::ConnectError,
            '5' => PacketType::BinaryEvent,
            '6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// Whether attachments follow.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// The text part of a Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The type.
    pub kind: PacketType,
    /// The namespace, `/` by default.
    pub nsp: String,
    /// The ack id, for events that want an answer and for answers.
    pub id: Option<u64>,
    /// The JSON data (for binary types, with placeholders where attachments go).
    pub data: Option<Value>,
    /// How many binary attachments follow (binary types only).
    pub attachments: usize,
}

/// Why a text is not a Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Nothing to decode.
    #[error("empty packet")]
    Empty,
    /// Unknown type digit.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A binary packet without a valid attachment count.
    #[error("invalid attachment count")]
    Attachments,
    /// An ack id that does not fit 64 bits.
    #[error("invalid ack id")]
    AckId,
    /// The data is not JSON.
    #[error("invalid JSON data: {0}")]
    Json(String),
    /// The data has the wrong shape for the packet type.
    #[error("invalid data for a {0:?} packet")]
    Payload(PacketType),
}

/// Largest number of attachments accepted in one packet.
pub const MAX_ATTACHMENTS: usize = 64;

impl Packet {
    /// An EVENT (or BINARY_EVENT when `attachments > 0`) on `nsp` with `data` = `[name, ...args]`.
    pub fn event(nsp: &str, data: Value, id: Option<u64>, attachments: usize) -> Packet {
        Packet {
            kind: if attachments > 0 {
                PacketType::BinaryEvent
            } else {
                PacketType::Event
            },
            nsp: nsp.to_owned(),
            id,
            data: Some(data),
            attachments,
        }
    }

    /// Encodes the text part.
    pub fn encode(&self) -> String {
        let data = self.data.as_ref().map(Value::to_string);
        encode_raw(
            self.kind,
            &self.nsp,
            self.id,
            self.attachments,
            data.as_deref(),
        )
    }

    /// Decodes the text part.
    ///
    /// # Errors
    /// [`DecodeError`] when `s` is not a valid packet.
    pub fn decode(s: &str) -> Result<Packet, DecodeError> {
        let mut rest = s;
        let t = rest.chars().next().ok_or(DecodeError::Empty)?;
        let kind = PacketType::from_digit(t).ok_or(DecodeError::UnknownType(t))?;
        rest = &rest[t.len_utf8()..];
        let mut attachments = 0;
        if kind.is_binary() {
            let dash = rest.find('-').ok_or(DecodeError::Attachments)?;
            let digits = &rest[..dash];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DecodeError::Attachments);
            }
            attachments = digits.parse().map_err(|_| DecodeError::Attachments)?;
            if attachments > MAX_ATTACHMENTS {
                return Err(DecodeError::Attachments);
            }
            rest = &rest[dash + 1..];
        }
        let mut nsp = "/".to_owned();
        if rest.starts_with('/') {
            match rest.find(',') {
                Some(i) => {
                    nsp = rest[..i].to_owned();
                    rest = &rest[i + 1..];
                }
                None => {
                    nsp = rest.to_owned();
                    rest = "";
                }
            }
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = if digits > 0 {
            let id = rest[..digits].parse().map_err(|_| DecodeError::AckId)?;
            rest = &rest[digits..];
            Some(id)
        } else {
            None
        };
        let data = if rest.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<Value>(rest)
                    .map_err(|e| DecodeError::Json(e.to_string()))?,
            )
        };
        let valid = match (kind, &data) {
            (PacketType::Connect, None | Some(Value::Object(_))) => true,
            (PacketType::Disconnect, None) => true,
            (PacketType::ConnectError, Some(Value::Object(_) | Value::String(_))) => true,
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(a))) => {
                matches!(a.first(), Some(Value::String(_)))
            }
            (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(_))) => id.is_some(),
            _ => false,
        };
        if !valid {
            return Err(DecodeError::Payload(kind));
        }
        Ok(Packet {
            kind,
            nsp,
            id,
            data,
            attachments,
        })
    }
}

/// Encodes a packet whose JSON data is already text (no re-serialization of the payload).
pub fn encode_raw(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
    data: Option<&str>,
) -> String {
    let mut out = String::with_capacity(8 + data.map_or(0, str::len));
    out.push(kind.digit());
    if kind.is_binary() {
        out.push_str(&attachments.to_string());
        out.push('-');
    }
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        out.push_str(&id.to_string());
    }
    if let Some(d) = data {
        out.push_str(d);
    }
    out
}

/// The attachment index of a placeholder `{"_placeholder":true,"num":n}`, if `v` is one.
/// Placeholders stay in the event's arguments; the attachments travel beside them.
pub fn placeholder_index(v: &Value) -> Option<usize> {
    let o = v.as_object()?;
    if o.len() == 2 && o.get("_placeholder") == Some(&Value::Bool(true)) {
        o.get("num")?.as_u64().map(|n| n as usize)
    } else {
        None
    }
}

/// Checks every placeholder of `data` names an attachment below `count`.
pub fn placeholders_valid(data: &Value, count: usize) -> bool {
    match data {
        Value::Array(a) => a.iter().all(|v| placeholders_valid(v, count)),
        Value::Object(_) => match placeholder_index(data) {
            Some(n) => n < count,
            None => data
                .as_object()
                .is_some_and(|o| o.values().all(|v| placeholders_valid(v, count))),
        },
        _ => true,
    }
}

/// Collects a binary packet's attachments as they arrive.
#[derive(Debug)]
pub struct Assembler {
    packet: Packet,
    buffers: Vec<Vec<u8>>,
}

impl Assembler {
    /// Starts with the text part of a binary packet.
    pub fn new(packet: Packet) -> Assembler {
        Assembler {
            buffers: Vec::with_capacity(packet.attachments),
            packet,
        }
    }

    /// Adds one attachment; true once every attachment has arrived.
    pub fn push(&mut self, buf: Vec<u8>) -> bool {
        self.buffers.push(buf);
        self.buffers.len() >= self.packet.attachments
    }

    /// The packet and its attachments.
    pub fn finish(self) -> (Packet, Vec<Vec<u8>>) {
        (self.packet, self.buffers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn known_packets() {
        let p = Packet::decode("0{\"token\":\"x\"}").unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketType::Connect, "/", Some(json!({"token":"x"})))
        );
        let p = Packet::decode("0/custom,").unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketType::Connect, "/custom", None)
        );
        let p = Packet::decode("0/custom").unwrap();
        assert_eq!(p.nsp, "/custom");
        let p = Packet::decode("212[\"message\",1]").unwrap();
        assert_eq!((p.id, p.data), (Some(12), Some(json!(["message", 1]))));
        let p = Packet::decode("3/admin,7[]").unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.id),
            (PacketType::Ack, "/admin", Some(7))
        );
        let p = Packet::decode("51-[\"up\",{\"_placeholder\":true,\"num\":0}]").unwrap();
        assert_eq!((p.kind, p.attachments), (PacketType::BinaryEvent, 1));
        assert!(placeholders_valid(p.data.as_ref().unwrap(), 1));
        assert!(!placeholders_valid(p.data.as_ref().unwrap(), 0));
        assert_eq!(Packet::decode("1").unwrap().kind, PacketType::Disconnect);
    }

    #[test]
    fn bad_packets() {
        assert_eq!(Packet::decode(""), Err(DecodeError::Empty));
        assert_eq!(Packet::decode("9"), Err(DecodeError::UnknownType('9')));
        assert_eq!(Packet::decode("5[\"a\"]"), Err(DecodeError::Attachments));
        assert_eq!(Packet::decode("5x-[\"a\"]"), Err(DecodeError::Attachments));
        assert_eq!(
            Packet::decode("5999-[\"a\"]"),
            Err(DecodeError::Attachments)
        );
        assert!(matches!(
            Packet::decode("2[\"a\""),
            Err(DecodeError::Json(_))
        ));
        assert_eq!(
            Packet::decode("2[1]"),
            Err(DecodeError::Payload(PacketType::Event))
        );
        assert_eq!(
            Packet::decode("2{}"),
            Err(DecodeError::Payload(PacketType::Event))
        );
        assert_eq!(
            Packet::decode("2"),
            Err(DecodeError::Payload(PacketType::Event))
        );
        assert_eq!(
            Packet::decode("0[]"),
            Err(DecodeError::Payload(PacketType::Connect))
        );
        assert_eq!(
            Packet::decode("3[]"),
            Err(DecodeError::Payload(PacketType::Ack))
        );
        assert_eq!(
            Packet::decode("299999999999999999999[\"a\"]"),
            Err(DecodeError::AckId)
        );
        assert_eq!(
            Packet::decode("1{}"),
            Err(DecodeError::Payload(PacketType::Disconnect))
        );
    }

    #[test]
    fn floats_round_trip_exactly() {
        // Found by the fuzzer: needs serde_json's correctly rounded float parsing.
        let p = Packet::decode("4{\"a\":[0.999999999999949999999]}").unwrap();
        assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn raw_encoding_matches() {
        assert_eq!(
            encode_raw(PacketType::Event, "/", Some(3), 0, Some("[\"message\",[]]")),
            "23[\"message\",[]]"
        );
        assert_eq!(
            encode_raw(
                PacketType::ConnectError,
                "/x",
                None,
                0,
                Some("{\"message\":\"m\"}")
            ),
            "4/x,{\"message\":\"m\"}"
        );
        assert_eq!(
            encode_raw(PacketType::BinaryAck, "/", Some(1), 2, Some("[]")),
            "62-1[]"
        );
    }

    fn json_leaf() -> impl Strategy<Value = Value> + Clone {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ]
    }

    fn packet() -> impl Strategy<Value = Packet> {
        let nsp = prop_oneof![Just("/".to_owned()), "/[a-z]{1,6}"];
        let args = proptest::collection::vec(json_leaf(), 0..4);
        prop_oneof![
            (
                nsp.clone(),
                proptest::option::of(proptest::collection::btree_map(
                    "[a-z]{1,4}",
                    json_leaf(),
                    0..3
                ))
            )
                .prop_map(|(nsp, m)| Packet {
                    kind: PacketType::Connect,
                    nsp,
                    id: None,
                    data: m.map(|m| json!(m)),
                    attachments: 0
                }),
            nsp.clone().prop_map(|nsp| Packet {
                kind: PacketType::Disconnect,
                nsp,
                id: None,
                data: None,
                attachments: 0
            }),
            (
                nsp.clone(),
                "[a-z]{1,6}".prop_map(String::from),
                args.clone(),
                proptest::option::of(0..1000u64)
            )
                .prop_map(|(nsp, name, args, id)| {
                    let mut a = vec![Value::String(name)];
                    a.extend(args);
                    Packet::event(&nsp, Value::Array(a), id, 0)
                }),
            (nsp.clone(), args.clone(), 0..1000u64).prop_map(|(nsp, args, id)| Packet {
                kind: PacketType::Ack,
                nsp,
                id: Some(id),
                data: Some(Value::Array(args)),
                attachments: 0
            }),
            (
                nsp,
                "[a-z]{1,6}".prop_map(String::from),
                1..4usize,
                proptest::option::of(0..1000u64)
            )
                .prop_map(|(nsp, name, n, id)| {
                    let mut a = vec![Value::String(name)];
                    a.extend((0..n).map(|i| json!({"_placeholder": true, "num": i})));
                    Packet::event(&nsp, Value::Array(a), id, n)
                }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(p in packet()) {
            prop_assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
        }

        #[test]
        fn any_text_decodes_or_errs(s in ".{0,60}") {
            let _ = Packet::decode(&s);
        }

        #[test]
        fn any_prefixed_text_decodes_or_errs(t in 0..7u8, s in ".{0,60}") {
            let _ = Packet::decode(&format!("{t}{s}"));
        }
    }
}
