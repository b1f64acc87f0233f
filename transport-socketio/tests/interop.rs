//! Interoperability with the official clients and protocol errors on raw sockets, against the
//! echo example served in this process on 127.0.0.1.
//!
//! The clients come from `scripts/setup/20-test-clients.sh` (found through `HERALD_TEST_ENV`,
//! or `<workspace>/test-env`).

#[path = "../examples/echo.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "the example doubles as the test server"
)]
mod echo;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use herald_it::test_env;
use herald_socketio::{ServerConfig, SocketIo};
use serde_json::Value;

async fn server(cfg: ServerConfig) -> SocketAddr {
    server_io(cfg).await.1
}

/// The echo server (namespaces `/` and `/custom`) and its Socket.IO server, to look at.
async fn server_io(cfg: ServerConfig) -> (SocketIo, SocketAddr) {
    let mut cfg = cfg;
    cfg.namespaces = vec!["/".into(), "/custom".into()];
    echo::start(SocketAddr::from(([127, 0, 0, 1], 0)), cfg)
        .await
        .expect("echo server")
}

/// The official clients the interop tests run.
#[derive(Clone, Copy)]
enum Lib {
    /// npm `socket.io-client` 4.x.
    Node,
    /// npm `socket.io-client` 2.x (Engine.IO v3).
    NodeV2,
    /// npm `socket.io-client` 1.4 (Engine.IO v3), the seed's client.
    NodeV1,
    /// PyPI `python-socketio`.
    Python,
}

/// Runs a client script; returns its JSON report, failing the test on a failed check.
fn run_client(lib: Lib, addr: SocketAddr, mode: &str, nsp: &str) -> Value {
    let env = test_env();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let url = format!("http://{addr}");
    let node = |script: &str, package: &str| {
        Command::new("node")
            .arg(scripts.join(script))
            .args([&url, mode, nsp, package])
            .env("NODE_PATH", env.join("node_modules"))
            .output()
    };
    let out = match lib {
        Lib::Python => Command::new(env.join("venv/bin/python"))
            .arg(scripts.join("interop.py"))
            .args([&url, mode, nsp])
            .output(),
        Lib::Node => node("interop.js", "socket.io-client"),
        Lib::NodeV2 => node("interop_v2.js", "socket.io-client-v2"),
        Lib::NodeV1 => node("interop_v2.js", "socket.io-client-v1"),
    }
    .expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "client printed no report: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "client checks failed ({mode} {nsp}): {report}"
    );
    report
}

/// socket.io-client 4.x, 2.x and 1.4 (Engine.IO v4, v3, v3) on every transport and namespace.
#[async_std::test]
async fn node_clients_over_websocket_and_polling_with_upgrade() {
    // Heartbeats short enough that a v3 client's ping comes within the test.
    let addr = server(ServerConfig {
        ping_interval: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    for lib in [Lib::Node, Lib::NodeV2, Lib::NodeV1] {
        for (mode, nsp) in [
            ("websocket", "/"),
            ("polling", "/"),
            ("websocket", "/custom"),
            ("polling", "/custom"),
        ] {
            let report =
                async_std::task::spawn_blocking(move || run_client(lib, addr, mode, nsp)).await;
            assert_eq!(
                report["transport"], "websocket",
                "{mode}: polling upgrades to websocket ({report})"
            );
        }
    }
}

#[async_std::test]
async fn python_client_over_websocket_and_polling_with_upgrade() {
    let addr = server(ServerConfig::default()).await;
    for (mode, nsp) in [("websocket", "/"), ("polling", "/"), ("polling", "/custom")] {
        let report =
            async_std::task::spawn_blocking(move || run_client(Lib::Python, addr, mode, nsp)).await;
        assert_eq!(report["checks"]["refused"], true);
    }
}

/// A raw WebSocket client connection (async-tungstenite's client over async-std's TCP).
async fn connect(
    url: &str,
) -> Result<
    (
        async_tungstenite::WebSocketStream<TcpStream>,
        async_tungstenite::tungstenite::handshake::client::Response,
    ),
    async_tungstenite::tungstenite::Error,
> {
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let tcp = TcpStream::connect(host)
        .await
        .map_err(async_tungstenite::tungstenite::Error::Io)?;
    async_tungstenite::client_async(url, tcp).await
}

/// One raw HTTP/1.1 request; returns (status, body).
async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = async_std::io::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Opens a polling session; returns its sid.
async fn handshake(addr: SocketAddr) -> String {
    let (status, body) = raw(addr, &get("/socket.io/?EIO=4&transport=polling")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with('0'), "{body}");
    let open: Value = serde_json::from_str(&body[1..]).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert!(
        open["pingInterval"].is_u64()
            && open["pingTimeout"].is_u64()
            && open["maxPayload"].is_u64()
    );
    open["sid"].as_str().unwrap().to_string()
}

#[async_std::test]
async fn handshake_errors_use_engine_io_codes() {
    let addr = server(ServerConfig::default()).await;
    for (req, code) in [
        (get("/socket.io/?EIO=2&transport=polling"), 5),
        (get("/socket.io/?transport=polling"), 5),
        (get("/socket.io/?EIO=4&transport=carrier-pigeon"), 0),
        (get("/socket.io/?EIO=4&transport=polling&sid=nope"), 1),
        (post("/socket.io/?EIO=4&transport=polling", "40"), 2),
    ] {
        let (status, body) = raw(addr, &req).await;
        assert_eq!(status, 400, "{req}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
        assert_eq!(v["code"], code, "{req}: {body}");
    }
}

#[async_std::test]
async fn polling_unknown_namespace_bad_packets_and_oversized_bodies() {
    let addr = server(ServerConfig {
        max_payload: 1000,
        ..ServerConfig::default()
    })
    .await;
    let sid = handshake(addr).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(raw(addr, &post(&path, "40/nope,")).await.0, 200);
    let (_, body) = raw(addr, &get(&path)).await;
    assert_eq!(body, "44/nope,{\"message\":\"Invalid namespace\"}");
    // A bad packet closes the session: its sid is unknown afterwards.
    let (status, _) = raw(addr, &post(&path, "4{not socket.io")).await;
    assert_eq!(
        status, 200,
        "the payload is valid Engine.IO; the Socket.IO packet is not"
    );
    wait_unknown(addr, &sid).await;
    // An oversized body is refused and closes the session.
    let sid = handshake(addr).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, _) = raw(addr, &post(&path, &format!("4{}", "x".repeat(2000)))).await;
    assert_eq!(status, 413);
    wait_unknown(addr, &sid).await;
    // Sent in chunks, with no length declared, it is refused too.
    let sid = handshake(addr).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let body = format!("4{}", "x".repeat(2000));
    let chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    assert_eq!(raw(addr, &chunked).await.0, 413);
    wait_unknown(addr, &sid).await;
    // Invalid Engine.IO framing is a 400 and closes the session.
    let sid = handshake(addr).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(raw(addr, &post(&path, "9zz")).await.0, 400);
    wait_unknown(addr, &sid).await;
}

/// Waits (bounded) until the server no longer knows `sid`.
async fn wait_unknown(addr: SocketAddr, sid: &str) {
    let gone = herald_it::poll_until(Duration::from_secs(10), async || {
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        let (status, body) = raw(addr, &get(&path)).await;
        status == 400 && body.contains("\"code\":1")
    });
    assert!(gone.await, "session {sid} still open");
}

#[async_std::test]
async fn silent_clients_time_out() {
    let addr = server(ServerConfig {
        connect_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    })
    .await;
    // Never connects a namespace: the connect timeout ends it.
    let sid = handshake(addr).await;
    wait_unknown(addr, &sid).await;
    // Connects, then never answers pings: the ping timeout ends it.
    let sid = handshake(addr).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(raw(addr, &post(&path, "40")).await.0, 200);
    let (_, body) = raw(addr, &get(&path)).await;
    assert!(body.starts_with("40{\"sid\""), "{body}");
    wait_unknown(addr, &sid).await;
}

#[async_std::test]
async fn oversized_websocket_frames_close_the_connection() {
    let addr = server(ServerConfig {
        max_payload: 1000,
        ..ServerConfig::default()
    })
    .await;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = connect(&url).await.expect("ws connect");
    use async_tungstenite::tungstenite::Message;
    use futures::StreamExt;
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'));
    ws.send(Message::text("40")).await.unwrap();
    let connected = ws.next().await.unwrap().unwrap();
    assert!(
        connected.to_text().unwrap().starts_with("40{\"sid\""),
        "{connected:?}"
    );
    ws.send(Message::text(format!(
        "42[\"message\",\"{}\"]",
        "x".repeat(5000)
    )))
    .await
    .unwrap();
    // The server ends the connection rather than accept the frame.
    frames_until_closed(&mut ws, "after an oversized frame").await;
}

#[async_std::test]
async fn invalid_websocket_packets_close_the_connection() {
    let addr = server(ServerConfig::default()).await;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = connect(&url).await.expect("ws connect");
    use async_tungstenite::tungstenite::Message;
    use futures::StreamExt;
    let _open = ws.next().await.unwrap().unwrap();
    ws.send(Message::text("42[1,2]")).await.unwrap();
    frames_until_closed(&mut ws, "after an invalid packet").await;
}

#[async_std::test]
async fn polls_during_an_upgrade_are_answered_at_once() {
    use async_tungstenite::tungstenite::Message;
    use futures::StreamExt;
    let addr = server(ServerConfig::default()).await;
    let sid = handshake(addr).await;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (mut ws, _) = connect(&url).await.expect("ws connect");
    ws.send(Message::text("2probe")).await.unwrap();
    let pong = ws.next().await.unwrap().unwrap();
    assert_eq!(pong.to_text().unwrap(), "3probe");
    // A poll that arrives after the probe must not be held: the client waits for it to end
    // before it sends `5`.
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let answered = async_std::future::timeout(Duration::from_secs(5), raw(addr, &get(&path))).await;
    let (status, body) = answered.expect("the poll was held during the upgrade");
    assert_eq!((status, body.as_str()), (200, "6"));
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("40")).await.unwrap();
    let connected = ws.next().await.unwrap().unwrap();
    assert!(
        connected.to_text().unwrap().starts_with("40{\"sid\""),
        "{connected:?}"
    );
}

#[async_std::test]
async fn bare_engine_io_echo_with_the_official_client() {
    let addr = server(ServerConfig::default()).await;
    let env = test_env();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/engine.js");
    for mode in ["websocket", "polling"] {
        let url = format!("http://{addr}");
        let script = script.clone();
        let modules = env.join("node_modules");
        let out = async_std::task::spawn_blocking(move || {
            Command::new("node")
                .arg(script)
                .args([&url, mode])
                .env("NODE_PATH", modules)
                .output()
        })
        .await
        .expect("run node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[async_std::test]
async fn engine_io_v3_polling_frames_heartbeat_and_timeout() {
    // A silent client is closed after 3.3 s: room for the steps below on a loaded machine.
    let addr = server(ServerConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(3000),
        ..ServerConfig::default()
    })
    .await;
    let (status, body) = raw(addr, &get("/socket.io/?EIO=3&transport=polling")).await;
    assert_eq!(status, 200, "{body}");
    // `<length>:<packet>`: the open packet in v3 framing.
    let (len, open) = body.split_once(':').expect("a v3 record");
    assert_eq!(len.parse::<usize>().unwrap(), open.encode_utf16().count());
    let open: Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    let path = format!("/socket.io/?EIO=3&transport=polling&sid={sid}");
    // `/` is connected without a CONNECT, then the auth event follows.
    let (_, body) = raw(addr, &get(&path)).await;
    assert!(body.starts_with("2:40"), "{body}");
    // The client pings; the server answers.
    assert_eq!(raw(addr, &post(&path, "1:2")).await.0, 200);
    let (_, body) = raw(addr, &get(&path)).await;
    assert!(body.contains("1:3"), "{body}");
    // A record whose length runs past the payload is refused.
    assert_eq!(raw(addr, &post(&path, "9:42")).await.0, 400);
    // A fresh session that never pings is closed after pingInterval + pingTimeout.
    let (_, body) = raw(addr, &get("/socket.io/?EIO=3&transport=polling")).await;
    let open: Value = serde_json::from_str(&body[body.find('{').unwrap()..]).unwrap();
    let path = format!(
        "/socket.io/?EIO=3&transport=polling&sid={}",
        open["sid"].as_str().unwrap()
    );
    // 400, unknown sid: the session is gone.
    let gone = herald_it::poll_until(Duration::from_secs(60), async || {
        raw(addr, &get(&path)).await.0 == 400
    });
    assert!(gone.await, "a silent v3 client was never timed out");
}

/// `future` with the tests' patience (10 s).
async fn timeout<F: std::future::Future>(
    future: F,
) -> Result<F::Output, async_std::future::TimeoutError> {
    async_std::future::timeout(Duration::from_secs(10), future).await
}

/// Reads `ws` until the server ends the connection; returns the frames that came first.
/// Panics, saying what happened `after`, when it is still open 10 s later.
async fn frames_until_closed(
    ws: &mut async_tungstenite::WebSocketStream<TcpStream>,
    after: &str,
) -> Vec<async_tungstenite::tungstenite::Message> {
    use async_tungstenite::tungstenite::Message;
    use futures::StreamExt;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut frames = Vec::new();
    loop {
        match timeout(ws.next()).await {
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return frames,
            Ok(Some(Ok(m))) => {
                assert!(Instant::now() < deadline, "still open {after}");
                frames.push(m);
            }
            Err(_) => panic!("the connection stayed open {after}"),
        }
    }
}

/// Engine.IO v3 puts a type byte (`4`) before a binary frame's bytes; v4 does not. Bytes a
/// v3 client posted by polling go back over the WebSocket it upgraded to, so both directions
/// are checked separately (an echo on one transport would hide a mistake made both ways).
#[async_std::test]
async fn engine_io_v3_binary_frames_carry_a_type_byte() {
    use async_tungstenite::tungstenite::Message;
    use futures::StreamExt;
    let addr = server(ServerConfig::default()).await;
    let (_, body) = raw(addr, &get("/socket.io/?EIO=3&transport=polling")).await;
    let open: Value = serde_json::from_str(&body[body.find('{').unwrap()..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    let path = format!("/socket.io/?EIO=3&transport=polling&sid={sid}");
    // A binary event by polling: its attachment is `b4<base64>` there.
    let event = r#"451-["message",{"_placeholder":true,"num":0}]"#;
    let payload = format!("{}:{event}6:b4AQID", event.len());
    assert_eq!(raw(addr, &post(&path, &payload)).await.0, 200);
    // Upgrade without polling: the echo waits in the queue for the WebSocket.
    let url = format!("ws://{addr}/socket.io/?EIO=3&transport=websocket&sid={sid}");
    let (mut ws, _) = connect(&url).await.expect("ws connect");
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().to_text().unwrap(),
        "3probe"
    );
    ws.send(Message::text("5")).await.unwrap();
    // What was queued since the handshake (never polled for) comes first: `40`, `auth`.
    loop {
        let frame = timeout(ws.next())
            .await
            .expect("the echo")
            .unwrap()
            .unwrap();
        match frame.to_text().unwrap() {
            "40" | r#"42["auth",{}]"# => {}
            header => {
                assert_eq!(
                    header,
                    r#"451-["message-back",{"_placeholder":true,"num":0}]"#
                );
                break;
            }
        }
    }
    let bytes = timeout(ws.next())
        .await
        .expect("the attachment")
        .unwrap()
        .unwrap();
    assert_eq!(
        bytes,
        Message::binary(vec![4, 1, 2, 3]),
        "type byte, then the data"
    );
    // A binary frame of another type is not a message: the connection is closed.
    ws.send(Message::text(event)).await.unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let answers = frames_until_closed(&mut ws, "after a binary frame of type 1").await;
    assert!(
        answers.is_empty(),
        "answered a binary frame of type 1: {answers:?}"
    );
}

// Hostile clients: what a client that stops reading, or floods the server with packets that
// each make an answer, may cost; and that the server lets go of every socket in time.

/// The byte bound of the hostile tests: small, so that a flood crosses it at once.
const BOUND: usize = 64 * 1024;

/// Posts `payload` to polling session `sid` (Engine.IO `eio`) until the server no longer
/// knows the session, checking after each post that what it holds for the client stays within
/// the bound (one post, or one packet, over at most). Fails when the session is still open after 20 posts.
async fn flood_until_closed(io: &SocketIo, addr: SocketAddr, eio: u8, sid: &str, payload: &str) {
    let path = format!("/socket.io/?EIO={eio}&transport=polling&sid={sid}");
    // What one post may add before the session has handled it (received, not yet handled:
    // each packet counts its size and 64 bytes), checked against the bound only when the
    // next post arrives.
    let post_cost: usize = payload.len() + 64 * payload.split(['\u{1e}', ':']).count();
    for _ in 0..20 {
        let (status, body) = raw(addr, &post(&path, payload)).await;
        assert!(
            io.queued_bytes() <= BOUND + post_cost + 1024,
            "{} bytes queued for a client that never polls",
            io.queued_bytes()
        );
        if status == 400 {
            // Closed at the outbound bound (the session is gone: code 1), or refused at the
            // inbound one when the session had not yet handled the previous post (code 3).
            assert!(
                body.contains("\"code\":1") || body.contains("\"code\":3"),
                "{body}"
            );
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    wait_unknown(addr, sid).await;
    assert_eq!(io.queued_bytes(), 0, "a closed session's queue is freed");
}

/// Each CONNECT to an unknown namespace queues a CONNECT_ERROR; a client that posts them and
/// never polls is closed once its answers pass the byte bound.
#[async_std::test]
async fn a_client_flooding_connects_without_polling_is_closed_at_the_byte_bound() {
    let (io, addr) = server_io(ServerConfig {
        queue_bytes: BOUND,
        ..ServerConfig::default()
    })
    .await;
    let sid = handshake(addr).await;
    let flood = vec!["40/unknown,"; 2000].join("\u{1e}");
    flood_until_closed(&io, addr, 4, &sid, &flood).await;
}

/// Each Engine.IO v3 ping queues a pong; a client that posts pings and never polls is closed
/// once its pongs pass the byte bound.
#[async_std::test]
async fn a_client_flooding_pings_without_polling_is_closed_at_the_byte_bound() {
    let (io, addr) = server_io(ServerConfig {
        queue_bytes: BOUND,
        ..ServerConfig::default()
    })
    .await;
    let (_, body) = raw(addr, &get("/socket.io/?EIO=3&transport=polling")).await;
    let open: Value = serde_json::from_str(&body[body.find('{').unwrap()..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    flood_until_closed(&io, addr, 3, sid, &"1:2".repeat(3000)).await;
}

/// WebSocket clients that go silent: one never connects a namespace (connect timeout), one
/// never answers a ping (ping timeout), one sends big events and never reads the echoes (its
/// socket's buffers fill, so not even the close frame can be written). Each session ends, and
/// the server closes each socket within the close timeout, whatever the client does.
#[async_std::test]
async fn silent_websockets_are_dropped_after_the_close_timeout() {
    use std::io::Write;
    let (io, addr) = server_io(ServerConfig {
        connect_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(200),
        close_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let base = format!("http://{addr}");
    let path = "/socket.io/?EIO=4&transport=websocket";
    let mut silent = herald_it::open_websocket(&base, path).unwrap();
    let mut mute = herald_it::open_websocket(&base, path).unwrap();
    mute.write_all(&herald_it::text_frame("40")).unwrap();
    let mut deaf = herald_it::open_websocket(&base, path).unwrap();
    deaf.write_all(&herald_it::text_frame("40")).unwrap();
    let event = herald_it::text_frame(&format!("42[\"message\",\"{}\"]", "x".repeat(100_000)));
    for _ in 0..300 {
        if deaf.write_all(&event).is_err() {
            break;
        }
    }
    assert!(
        herald_it::wait_until(Duration::from_secs(10), || io.session_count() == 0),
        "{} sessions still open",
        io.session_count()
    );
    for (name, s) in [
        ("silent", &mut silent),
        ("mute", &mut mute),
        ("deaf", &mut deaf),
    ] {
        assert!(
            herald_it::closed_within(s, Duration::from_secs(10)),
            "the {name} client's socket is still open"
        );
    }
}

/// A poll waiting when its session ends (here: the client vanished, the ping timeout) is
/// answered with a close, not left hanging.
#[async_std::test]
async fn a_waiting_poll_is_answered_when_its_session_ends() {
    let addr = server(ServerConfig {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let sid = handshake(addr).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(raw(addr, &post(&path, "40")).await.0, 200);
    // Polls get the CONNECT answer, the echo's `auth`, a ping; the poll after the ping waits
    // for the timeout, and must then be told the session is over.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = raw(addr, &get(&path)).await;
        assert_ne!(status, 0, "a poll was never answered");
        if body == "1" || status == 400 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "the session never ended");
    }
    wait_unknown(addr, &sid).await;
}

/// A client that stops reading its echoes and keeps sending: its session, blocked writing to
/// it, handles nothing; the server stops reading from it at the byte bound (the client's
/// writes stall) instead of holding all it sends until the write timeout.
#[async_std::test]
async fn a_client_that_sends_without_reading_is_not_read_past_the_byte_bound() {
    use std::io::Write;
    let (_io, addr) = server_io(ServerConfig {
        queue_bytes: 8 << 20,
        // Far longer than the test: the session stays blocked writing.
        ping_interval: Duration::from_secs(120),
        ping_timeout: Duration::from_secs(120),
        ..ServerConfig::default()
    })
    .await;
    let base = format!("http://{addr}");
    let mut deaf =
        herald_it::open_websocket(&base, "/socket.io/?EIO=4&transport=websocket").unwrap();
    deaf.write_all(&herald_it::text_frame("40")).unwrap();
    // 9 MB of echoes it never reads: more than the sockets' buffers, less than the bound.
    let big = format!("42[\"message\",\"{}\"]", "x".repeat(900_000));
    for _ in 0..10 {
        deaf.write_all(&herald_it::text_frame(&big)).unwrap();
    }
    // Then events nobody answers, until the server stops reading them.
    let ignored = herald_it::text_frame(&format!("42[\"ignored\",\"{}\"]", "y".repeat(100_000)));
    deaf.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut sent = 0usize;
    while sent < 150 << 20 {
        if deaf.write_all(&ignored).is_err() {
            break;
        }
        sent += ignored.len();
    }
    assert!(
        sent < 150 << 20,
        "the server read {sent} bytes from a client whose session handles nothing"
    );
}
