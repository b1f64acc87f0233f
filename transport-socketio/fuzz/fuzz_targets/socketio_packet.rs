//! Any text as a Socket.IO packet: decode must return, never panic, and a decoded packet must
//! survive an encode/decode round trip.
#![no_main]
use herald_socketio::socketio::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = Packet::decode(text) {
        let again = Packet::decode(&p.encode()).expect("re-encoded packet decodes");
        assert_eq!(again, p);
    }
});
