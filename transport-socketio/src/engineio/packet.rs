//! Engine.IO v4 packets, pure: encode and decode, for WebSocket frames and polling payloads.
//!
//! A text packet is one type digit followed by its data; a binary packet is a `message` whose
//! data is bytes (a WebSocket binary frame, or `b<base64>` in a polling payload). A polling
//! payload joins packets with the record separator `\x1e`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The record separator between packets of a polling payload.
pub const SEPARATOR: char = '\x1e';

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake, JSON data.
    Open(String),
    /// `1`: the session ends.
    Close,
    /// `2`: heartbeat (`2probe` during an upgrade).
    Ping(String),
    /// `3`: heartbeat answer (`3probe` during an upgrade).
    Pong(String),
    /// `4`: a text message (a Socket.IO packet).
    Message(String),
    /// A binary message (a Socket.IO attachment).
    Binary(Vec<u8>),
    /// `5`: the transport upgrade is complete.
    Upgrade,
    /// `6`: nothing (releases a pending poll during an upgrade).
    Noop,
}

/// Why bytes are not an Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An empty packet.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A `b` packet whose base64 does not decode.
    #[error("invalid base64 in a binary packet")]
    Base64,
    /// Data where the packet type carries none.
    #[error("packet type {0} carries no data")]
    UnexpectedData(char),
}

impl Packet {
    /// Encodes a text packet (every packet but [`Packet::Binary`], which is sent as a binary
    /// frame or, in polling, as `b<base64>`: see [`Packet::encode_polling`]).
    pub fn encode(&self) -> String {
        match self {
            Packet::Open(d) => format!("0{d}"),
            Packet::Close => "1".into(),
            Packet::Ping(d) => format!("2{d}"),
            Packet::Pong(d) => format!("3{d}"),
            Packet::Message(d) => format!("4{d}"),
            Packet::Binary(b) => format!("b{}", STANDARD.encode(b)),
            Packet::Upgrade => "5".into(),
            Packet::Noop => "6".into(),
        }
    }

    /// Encodes for a polling payload (binary as `b<base64>`).
    pub fn encode_polling(&self) -> String {
        self.encode()
    }

    /// Decodes a text frame or one record of a polling payload.
    ///
    /// # Errors
    /// [`DecodeError`] when `s` is not a packet.
    pub fn decode(s: &str) -> Result<Packet, DecodeError> {
        let mut chars = s.chars();
        let t = chars.next().ok_or(DecodeError::Empty)?;
        let data = chars.as_str();
        let none = |p: Packet| {
            if data.is_empty() {
                Ok(p)
            } else {
                Err(DecodeError::UnexpectedData(t))
            }
        };
        match t {
            '0' => Ok(Packet::Open(data.to_owned())),
            '1' => none(Packet::Close),
            '2' => Ok(Packet::Ping(data.to_owned())),
            '3' => Ok(Packet::Pong(data.to_owned())),
            '4' => Ok(Packet::Message(data.to_owned())),
            '5' => none(Packet::Upgrade),
            '6' => none(Packet::Noop),
            'b' => STANDARD
                .decode(data)
                .map(Packet::Binary)
                .map_err(|_| DecodeError::Base64),
            other => Err(DecodeError::UnknownType(other)),
        }
    }
}

/// Decodes a polling payload: packets separated by `\x1e`.
///
/// # Errors
/// The first [`DecodeError`] (the whole payload is refused).
pub fn decode_payload(s: &str) -> Result<Vec<Packet>, DecodeError> {
    s.split(SEPARATOR).map(Packet::decode).collect()
}

/// Encodes packets as one polling payload.
pub fn encode_payload(packets: &[Packet]) -> String {
    let mut out = String::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.push_str(&p.encode_polling());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_packets() {
        assert_eq!(
            Packet::decode("2probe").unwrap(),
            Packet::Ping("probe".into())
        );
        assert_eq!(Packet::decode("40").unwrap(), Packet::Message("0".into()));
        assert_eq!(Packet::decode("6").unwrap(), Packet::Noop);
        assert_eq!(Packet::decode("bAQI=").unwrap(), Packet::Binary(vec![1, 2]));
        assert_eq!(Packet::decode(""), Err(DecodeError::Empty));
        assert_eq!(Packet::decode("7"), Err(DecodeError::UnknownType('7')));
        assert_eq!(Packet::decode("1x"), Err(DecodeError::UnexpectedData('1')));
        assert_eq!(Packet::decode("b!!"), Err(DecodeError::Base64));
        assert_eq!(
            decode_payload("4hello\x1e2\x1ebAQI=").unwrap(),
            vec![
                Packet::Message("hello".into()),
                Packet::Ping(String::new()),
                Packet::Binary(vec![1, 2])
            ]
        );
        assert!(
            decode_payload("4a\x1e").is_err(),
            "an empty record is refused"
        );
    }

    fn packet() -> impl Strategy<Value = Packet> {
        let text = "[^\u{1e}]{0,20}";
        prop_oneof![
            text.prop_map(Packet::Open),
            Just(Packet::Close),
            text.prop_map(Packet::Ping),
            text.prop_map(Packet::Pong),
            text.prop_map(Packet::Message),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Packet::Binary),
            Just(Packet::Upgrade),
            Just(Packet::Noop),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(p in packet()) {
            prop_assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
        }

        #[test]
        fn payload_round_trip(ps in proptest::collection::vec(packet(), 1..6)) {
            prop_assert_eq!(decode_payload(&encode_payload(&ps)).unwrap(), ps);
        }

        #[test]
        fn any_text_decodes_or_errs(s in ".{0,40}") {
            let _ = decode_payload(&s);
        }
    }
}
