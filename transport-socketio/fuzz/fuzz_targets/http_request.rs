//! Any bytes as the start of an HTTP/1.1 connection: the head parser must return, never
//! panic; a parsed head never claims more bytes than it was given, and a chunked body after
//! it decodes the same whether it arrives at once or byte by byte (`check_invariants`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = herald_socketio::http1::check_invariants(data);
});
