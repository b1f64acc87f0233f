//! Hostile Socket.IO clients against the real `herald` binary: clients that go silent or stop
//! reading must not keep the server's file descriptors, nor make it hold without bound what
//! it has for them, and whatever was cut short is delivered on the next connection.
//!
//! The silent clients are plain TCP (it/src/raw_socket.rs): a WebSocket handshake, perhaps a
//! CONNECT, then nothing. Waits poll a condition; nothing sleeps a fixed time.

use std::io::Write;

use async_std::task::block_on;
use herald_it as support;
use serde_json::json;
use support::{Client, Herald, Lib, TempDir, WAIT};

const WEBSOCKET: &str = "/socket.io/?EIO=4&transport=websocket";

/// Herald with these lines in its configuration file's `[connector]` table.
fn herald(dir: &TempDir, connector: &str) -> Herald {
    let path = dir.0.join("herald.toml");
    std::fs::write(&path, format!("[connector]\n{connector}")).unwrap();
    Herald::start(&dir.0, &["--config", path.to_str().unwrap()])
}

/// The `herald_connections` gauge.
fn connections(h: &Herald) -> Option<f64> {
    block_on(support::metric(&h.api, "herald_connections"))
}

/// 200 WebSockets that go silent after the handshake: half never send CONNECT (the connect
/// timeout ends them), half connect with valid auth and then never answer a ping (the ping
/// timeout). None of them reads or answers the close. After the timeouts and the close
/// timeout, the server's open descriptors are back near where they were.
#[test]
fn silent_websockets_do_not_keep_file_descriptors() {
    let dir = TempDir::new("silent-ws");
    let h = herald(
        &dir,
        "connect_timeout_ms = 1000\nping_interval_ms = 500\nping_timeout_ms = 500\n\
         close_timeout_ms = 500\n",
    );
    let pid = h.pid();
    let baseline = support::open_fds(pid);
    let mut sockets = Vec::new();
    for i in 0..200 {
        let mut s = support::open_websocket(&h.connector, WEBSOCKET).expect("handshake");
        if i % 2 == 1 {
            let auth = h.auth(&format!("silent-{i}"), 0);
            s.write_all(&support::text_frame(&format!("40{auth}")))
                .unwrap();
        }
        sockets.push(s);
    }
    let released = support::wait_until(WAIT, || support::open_fds(pid) <= baseline + 10);
    assert!(
        released,
        "herald holds {} descriptors, {baseline} before 200 silent WebSockets",
        support::open_fds(pid)
    );
    assert_eq!(connections(&h), Some(0.0));
    for s in &mut sockets[..5] {
        assert!(support::closed_within(s, WAIT), "a silent socket is open");
    }
}

/// A client that connects and then stops reading, while big messages are pushed to it: the
/// server's writes to it block, deliveries pile up, and past `connector.max_queue_bytes` its
/// session is closed (the heartbeats are far longer than the test, so nothing else ends it).
/// Nothing is lost: the next connection of that client receives every message, in order.
#[test]
fn a_client_that_stops_reading_is_closed_at_the_byte_bound_and_loses_nothing() {
    let dir = TempDir::new("slow-reader");
    let h = herald(
        &dir,
        "max_queue_bytes = 1048576\nping_interval_ms = 120000\nping_timeout_ms = 120000\n",
    );
    let mut slow = support::open_websocket(&h.connector, WEBSOCKET).expect("handshake");
    slow.write_all(&support::text_frame(&format!("40{}", h.auth("slow", 0))))
        .unwrap();
    assert!(support::wait_until(WAIT, || connections(&h) == Some(1.0)));
    let pad = "x".repeat(200_000);
    for n in 0..40 {
        let body = json!({
            "send_id": "e2e", "channel": ["t"], "recv_id": ["slow"],
            "data": {"n": n, "pad": pad},
        });
        assert_eq!(block_on(support::push(&h.api, body)).status, 200);
    }
    assert!(
        support::wait_until(WAIT, || connections(&h) == Some(0.0)),
        "a client that stopped reading 8 MB ago is still connected"
    );
    drop(slow);
    let mut c = Client::start(
        Lib::Node,
        json!({
            "url": h.connector,
            "auth": h.auth("slow", 0),
            "transports": ["websocket"],
            "ackPolicy": "auto",
        }),
    );
    let got = c.messages(40);
    let ns: Vec<u64> = got
        .iter()
        .map(|m| m["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..40).collect::<Vec<_>>());
    assert!(got.iter().all(|m| m["data"]["pad"] == pad.as_str()));
}
