//! Any bytes as an Engine.IO polling payload or frame: decode must return, never panic, and
//! what decodes must encode back to something that decodes to the same packets.
#![no_main]
use herald_socketio::engineio::packet::{
    Packet, decode_payload, decode_payload_v3, encode_payload, encode_payload_v3,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Packet::decode(text);
    if let Ok(packets) = decode_payload(text) {
        let again = decode_payload(&encode_payload(&packets)).expect("re-encoded payload decodes");
        assert_eq!(again, packets);
    }
    if let Ok(packets) = decode_payload_v3(text) {
        let again =
            decode_payload_v3(&encode_payload_v3(&packets)).expect("re-encoded v3 payload decodes");
        assert_eq!(again, packets);
    }
});
