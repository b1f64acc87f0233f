//! Replays the tricky inputs in tests/corpus (also the fuzzers' seed corpus) through both
//! decoders in plain `cargo test`: each must decode or fail cleanly, and what decodes must
//! round-trip.

use herald_socketio::engineio::packet::{
    Packet as Eio, decode_payload, decode_payload_v3, encode_payload, encode_payload_v3,
};
use herald_socketio::socketio::packet::Packet as Sio;

#[test]
fn corpus_decodes_or_fails_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let _ = Eio::decode(&text);
        if let Ok(ps) = decode_payload(&text) {
            assert_eq!(
                decode_payload(&encode_payload(&ps)).unwrap(),
                ps,
                "{text:?}"
            );
        }
        if let Ok(ps) = decode_payload_v3(&text) {
            assert_eq!(
                decode_payload_v3(&encode_payload_v3(&ps)).unwrap(),
                ps,
                "{text:?}"
            );
        }
        for candidate in [text.as_ref(), text.get(1..).unwrap_or("")] {
            if let Ok(p) = Sio::decode(candidate) {
                assert_eq!(Sio::decode(&p.encode()).unwrap(), p, "{candidate:?}");
            }
        }
        n += 1;
    }
    assert!(n >= 30, "the corpus has {n} entries");
}

#[test]
fn known_bad_inputs_are_refused() {
    for bad in [
        "",
        "7",
        "4{",
        "42[1]",
        "42{}",
        "45-[",
        "0[]",
        "3[]",
        "4299999999999999999999[\"a\"]",
    ] {
        let as_sio = bad.get(1..).map(Sio::decode);
        assert!(
            bad.is_empty() || Eio::decode(bad).is_err() || matches!(as_sio, Some(Err(_))),
            "{bad:?} was accepted"
        );
    }
}

/// Replays tests/corpus-http (the `http_request` fuzzer's seeds) through the HTTP head parser
/// and the chunked decoder: each parses or is refused, never panics, and keeps the parsers'
/// invariants (`check_invariants`).
#[test]
fn http_corpus_parses_or_is_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus-http");
    let (mut parsed, mut refused) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.unwrap().path();
        match herald_socketio::http1::check_invariants(&std::fs::read(&path).unwrap()) {
            Ok(true) => parsed += 1,
            Ok(false) => panic!("{}: a whole head asks for more", path.display()),
            Err(_) => refused += 1,
        }
    }
    assert!(
        parsed >= 8 && refused >= 8,
        "{parsed} parsed, {refused} refused"
    );
}
