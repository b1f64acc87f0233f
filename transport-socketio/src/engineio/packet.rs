//! Engine.IO packets, pure: encode and decode, for WebSocket frames and polling payloads.
//!
//! A text packet is one type digit followed by its data; a binary packet is a `message` whose
//! data is bytes (a WebSocket binary frame, or `b<base64>` in a v4 polling payload). A v4
//! polling payload joins packets with the record separator `\x1e`.
//!
//! Engine.IO v3 (socket.io 1.x and 2.x clients) frames a polling payload differently: each
//! packet is preceded by its length and a colon, `<len>:<packet>`, where the length counts
//! UTF-16 code units (JavaScript's string length), and a binary message is `b4<base64>`.
//! WebSocket text frames are the same in both versions; a v3 binary frame starts with the
//! packet type as one byte (`4`, message) before the data, a v4 one is the data alone. Only the
//! text form of v3 payloads is spoken (what clients send and expect whenever no binary data
//! travels by polling; a v3 client that posts the binary form gets a decode error).

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
    /// An Engine.IO v3 payload record whose `<len>:` is missing, not a number, or longer than
    /// what follows.
    #[error("invalid record length in an Engine.IO v3 payload")]
    BadLength,
    /// An Engine.IO v3 binary frame whose type byte is not `4` (message).
    #[error("binary frame of packet type {0}: only messages carry bytes")]
    BinaryType(u8),
}

/// The type byte of a v3 binary frame: a message.
const V3_BINARY_MESSAGE: u8 = 4;

/// Decodes an Engine.IO v3 WebSocket binary frame: a type byte (`4`) and the message's bytes.
///
/// # Errors
/// [`DecodeError::Empty`] for an empty frame, [`DecodeError::BinaryType`] for another type.
pub fn decode_binary_frame_v3(frame: &[u8]) -> Result<Packet, DecodeError> {
    match frame.split_first() {
        None => Err(DecodeError::Empty),
        Some((&V3_BINARY_MESSAGE, data)) => Ok(Packet::Binary(data.to_vec())),
        Some((&t, _)) => Err(DecodeError::BinaryType(t)),
    }
}

/// Encodes a binary message as an Engine.IO v3 WebSocket binary frame (type byte first).
pub fn encode_binary_frame_v3(data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(1 + data.len());
    frame.push(V3_BINARY_MESSAGE);
    frame.extend_from_slice(data);
    frame
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

/// Decodes an Engine.IO v3 text polling payload: `<len>:<packet>` records.
///
/// # Errors
/// [`DecodeError::BadLength`] when a record's length is missing, not a number or runs past
/// the payload; the first [`DecodeError`] of a record otherwise.
pub fn decode_payload_v3(s: &str) -> Result<Vec<Packet>, DecodeError> {
    let mut packets = Vec::new();
    let mut rest = s;
    if rest.is_empty() {
        return Err(DecodeError::Empty);
    }
    while !rest.is_empty() {
        let colon = rest.find(':').ok_or(DecodeError::BadLength)?;
        let digits = &rest[..colon];
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::BadLength);
        }
        let units: usize = digits.parse().map_err(|_| DecodeError::BadLength)?;
        let body = &rest[colon + 1..];
        // Walk `units` UTF-16 code units into the body.
        let mut counted = 0;
        let mut end = 0;
        for c in body.chars() {
            if counted >= units {
                break;
            }
            counted += c.len_utf16();
            end += c.len_utf8();
        }
        if counted != units {
            return Err(DecodeError::BadLength);
        }
        let record = &body[..end];
        packets.push(match record.strip_prefix("b4") {
            Some(b64) => STANDARD
                .decode(b64)
                .map(Packet::Binary)
                .map_err(|_| DecodeError::Base64)?,
            None => Packet::decode(record)?,
        });
        rest = &body[end..];
    }
    Ok(packets)
}

/// Encodes packets as one Engine.IO v3 text polling payload.
pub fn encode_payload_v3(packets: &[Packet]) -> String {
    let mut out = String::new();
    for p in packets {
        let text = match p {
            Packet::Binary(b) => format!("b4{}", STANDARD.encode(b)),
            other => other.encode(),
        };
        let units: usize = text.chars().map(char::len_utf16).sum();
        out.push_str(&units.to_string());
        out.push(':');
        out.push_str(&text);
    }
    out
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

    #[test]
    fn v3_binary_frames_carry_a_type_byte() {
        assert_eq!(encode_binary_frame_v3(&[1, 2, 3]), vec![4, 1, 2, 3]);
        assert_eq!(
            decode_binary_frame_v3(&[4, 1, 2, 3]).unwrap(),
            Packet::Binary(vec![1, 2, 3])
        );
        assert_eq!(
            decode_binary_frame_v3(&[4]).unwrap(),
            Packet::Binary(vec![])
        );
        assert_eq!(decode_binary_frame_v3(&[]), Err(DecodeError::Empty));
        assert_eq!(
            decode_binary_frame_v3(&[1, 2, 3]),
            Err(DecodeError::BinaryType(1))
        );
    }

    #[test]
    fn v3_payloads() {
        // Lengths count UTF-16 code units: "é" is one, an emoji two.
        assert_eq!(
            encode_payload_v3(&[Packet::Message("2[\"é😀\"]".into()), Packet::Noop]),
            "9:42[\"é😀\"]1:6"
        );
        assert_eq!(
            decode_payload_v3("9:42[\"é😀\"]1:6").unwrap(),
            vec![Packet::Message("2[\"é😀\"]".into()), Packet::Noop]
        );
        assert_eq!(
            decode_payload_v3("6:b4AQI=").unwrap(),
            vec![Packet::Binary(vec![1, 2])]
        );
        assert_eq!(encode_payload_v3(&[Packet::Binary(vec![1, 2])]), "6:b4AQI=");
        for bad in [
            "",
            "4",
            "x:4a",
            "3:4a",
            ":4a",
            "2:4a1",
            "9999999999:4",
            "1:7",
        ] {
            assert!(decode_payload_v3(bad).is_err(), "{bad:?}");
        }
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
        fn v3_binary_frame_round_trip(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(
                decode_binary_frame_v3(&encode_binary_frame_v3(&data)).unwrap(),
                Packet::Binary(data)
            );
        }

        #[test]
        fn v3_payload_round_trip(ps in proptest::collection::vec(packet(), 1..6)) {
            prop_assert_eq!(decode_payload_v3(&encode_payload_v3(&ps)).unwrap(), ps);
        }

        #[test]
        fn any_text_decodes_or_errs(s in ".{0,40}") {
            let _ = decode_payload(&s);
            let _ = decode_payload_v3(&s);
        }
    }
}
