//! The HTTP layer under attack and under the HTTP clients business servers use: the real
//! `herald` binary, raw sockets that send exactly the bytes of an attack (request smuggling,
//! HTTP/1.0, no `Host`, oversized heads, pipelining, slow bodies, idle sockets), and the real
//! clients (`node-fetch` 2, `undici`, Python `requests`, `curl`). Both listeners (REST API
//! and Socket.IO) run the same HTTP/1.1 connection code; the tests use both.

use herald_it as support;
use serde_json::{Value, json};
use support::{Herald, RawHttp, TempDir, WAIT, curl_output, run_client, wait_until};

const PUSH: &str = r#"{"send_id":"h","recv_id":["u1"],"data":1}"#;

fn push_request(extra: &str, body: &str) -> String {
    format!(
        "POST /push HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n{extra}\r\n{body}"
    )
}

use herald_it::receipts::without_push_id;

fn json_body(a: &support::RawAnswer) -> Value {
    serde_json::from_slice(&a.body).unwrap_or(Value::Null)
}

/// Herald with the given `HERALD_*` environment (through `env`, so a key the binary does not
/// know yet is only warned about).
fn start_with_env(dir: &TempDir, env: &[&str]) -> Herald {
    let mut wrapper = vec!["env"];
    wrapper.extend_from_slice(env);
    Herald::start_under(&wrapper, &dir.0, &[])
}

#[async_std::test]
async fn connection_close_is_announced_then_done_on_both_ports() {
    let dir = TempDir::new("close");
    let h = Herald::start(&dir.0, &[]);
    let mut c = RawHttp::connect(&h.api);
    c.send(
        push_request(
            &format!("Connection: close\r\nContent-Length: {}\r\n", PUSH.len()),
            PUSH,
        )
        .as_bytes(),
    );
    let a = c.answer(false).expect("an answer");
    assert_eq!(
        (a.status, without_push_id(json_body(&a))),
        (200, json!({"ok": 1, "send": 1}))
    );
    assert!(a.says_close(), "no Connection: close in {:?}", a.headers);
    assert!(c.closed_within(WAIT));

    let mut c = RawHttp::connect(&h.connector);
    c.send(
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n",
    );
    let a = c.answer(false).expect("an answer");
    assert_eq!(a.status, 200);
    assert!(a.says_close(), "no Connection: close in {:?}", a.headers);
    assert!(c.closed_within(WAIT));
}

#[async_std::test]
async fn ambiguous_lengths_are_refused_and_the_connection_closed() {
    let dir = TempDir::new("smuggle");
    let h = Herald::start(&dir.0, &[]);
    let smuggled = "GET /healthy HTTP/1.1\r\nHost: herald\r\n\r\n";
    // Two lengths: whichever one a server picks, the other one's reader sees a different
    // next request. Refused, and nothing after it is read as a request.
    let cases = [
        format!(
            "Content-Length: {}\r\nContent-Length: 2\r\n",
            2 + smuggled.len()
        ),
        format!("Content-Length: 2, {}\r\n", 2 + smuggled.len()),
        "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n".to_owned(),
    ];
    for extra in cases {
        let mut c = RawHttp::connect(&h.api);
        c.send(push_request(&extra, &format!("{{}}{smuggled}")).as_bytes());
        let a = c.answer(false).expect("an answer");
        assert_eq!(a.status, 400, "{extra:?}");
        assert!(a.says_close(), "{extra:?}: {:?}", a.headers);
        assert!(
            c.answer(false).is_none(),
            "{extra:?}: a smuggled request was answered"
        );
    }
    // A sign is not a digit.
    let mut c = RawHttp::connect(&h.api);
    c.send(push_request(&format!("Content-Length: +{}\r\n", PUSH.len()), PUSH).as_bytes());
    let a = c.answer(false).expect("an answer");
    assert_eq!(a.status, 400);
    assert!(a.says_close() && c.answer(false).is_none());
    // Nothing was stored by any of them.
    let mut c = RawHttp::connect(&h.api);
    c.send(b"GET /queues/u1?since=0 HTTP/1.1\r\nHost: herald\r\n\r\n");
    let a = c.answer(false).expect("an answer");
    assert_eq!(json_body(&a)["messages"], json!([]));
}

#[async_std::test]
async fn http10_no_host_and_oversized_heads_are_answered() {
    let dir = TempDir::new("http10");
    let h = Herald::start(&dir.0, &[]);
    for base in [&h.api, &h.connector] {
        // HTTP/1.0 without Host is served, and closed after (no keep-alive asked).
        let mut c = RawHttp::connect(base);
        c.send(b"GET /healthy HTTP/1.0\r\n\r\n");
        let a = c.answer(false).expect("an HTTP/1.0 answer");
        if base == &h.api {
            assert_eq!((a.status, json_body(&a)), (200, json!({"ok": 1})));
        }
        assert!(a.says_close() && c.closed_within(WAIT));
        // HTTP/1.0 keep-alive, when asked for.
        let mut c = RawHttp::connect(base);
        for _ in 0..2 {
            c.send(b"HEAD /healthy HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            let a = c.answer(true).expect("an answer");
            assert_eq!(a.header("connection"), Some("keep-alive"));
        }
        // HTTP/1.1 without Host: 400.
        let mut c = RawHttp::connect(base);
        c.send(b"GET /healthy HTTP/1.1\r\n\r\n");
        let a = c
            .answer(false)
            .expect("an answer to a request without Host");
        assert_eq!(a.status, 400);
        assert!(a.says_close() && c.closed_within(WAIT));
        // A 9 KiB head: 431.
        let mut c = RawHttp::connect(base);
        let big = format!(
            "GET /healthy HTTP/1.1\r\nHost: herald\r\nX-Big: {}\r\n\r\n",
            "a".repeat(9 << 10)
        );
        c.send(big.as_bytes());
        let a = c.answer(false).expect("an answer to a 9 KiB head");
        assert_eq!(a.status, 431);
        assert!(a.says_close() && c.closed_within(WAIT));
    }
}

#[async_std::test]
async fn chunked_bodies_are_read_and_oversized_ones_refused_unread() {
    let dir = TempDir::new("bodies");
    let h = Herald::start(&dir.0, &[]);
    let mut c = RawHttp::connect(&h.api);
    let (a, b) = PUSH.split_at(10);
    let chunked = format!(
        "{:x};x=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        a.len(),
        b.len()
    );
    c.send(push_request("Transfer-Encoding: chunked\r\n", &chunked).as_bytes());
    let a = c.answer(false).expect("an answer to a chunked push");
    assert_eq!(without_push_id(json_body(&a)), json!({"ok": 1, "send": 1}));
    assert!(!a.says_close());
    // A malformed chunk: 400 and close.
    c.send(push_request("Transfer-Encoding: chunked\r\n", "zz\r\n").as_bytes());
    let a = c.answer(false).expect("an answer to a bad chunk");
    assert_eq!(a.status, 400);
    assert!(a.says_close() && c.closed_within(WAIT));
    // Declared larger than api.max_body: the app's 413 without reading it, then close.
    let mut c = RawHttp::connect(&h.api);
    c.send(push_request("Content-Length: 2000000\r\n", "{").as_bytes());
    let a = c.answer(false).expect("an answer to an oversized body");
    assert_eq!((a.status, json_body(&a)["ok"].clone()), (413, json!(0)));
    assert!(a.says_close() && c.closed_within(WAIT));
}

#[async_std::test]
async fn pipelined_requests_are_answered_in_order() {
    let dir = TempDir::new("pipeline");
    let h = Herald::start(&dir.0, &[]);
    let mut c = RawHttp::connect(&h.api);
    let mut all = String::new();
    all.push_str("GET /healthy HTTP/1.1\r\nHost: herald\r\n\r\n");
    all.push_str(&push_request(
        &format!("Content-Length: {}\r\n", PUSH.len()),
        PUSH,
    ));
    all.push_str("GET /apis HTTP/1.1\r\nHost: herald\r\n\r\n");
    all.push_str("HEAD /healthy HTTP/1.1\r\nHost: herald\r\n\r\n");
    all.push_str("GET /queues/u1?since=0 HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n");
    c.send(all.as_bytes());
    let a = c.answer(false).expect("answer 1");
    assert_eq!(json_body(&a), json!({"ok": 1}));
    let a = c.answer(false).expect("answer 2");
    assert_eq!(without_push_id(json_body(&a)), json!({"ok": 1, "send": 1}));
    let a = c.answer(false).expect("answer 3");
    assert!(json_body(&a)["v1"].is_array());
    let a = c.answer(true).expect("answer 4");
    assert_eq!(a.status, 200);
    assert!(a.body.is_empty());
    let a = c.answer(false).expect("answer 5");
    assert_eq!(json_body(&a)["messages"].as_array().map(Vec::len), Some(1));
    assert!(a.says_close() && c.closed_within(WAIT));
}

#[async_std::test]
async fn a_websocket_frame_sent_with_the_upgrade_request_is_not_lost() {
    let dir = TempDir::new("upgrade");
    let h = Herald::start(&dir.0, &[]);
    let mut c = RawHttp::connect(&h.connector);
    let mut bytes = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: herald\r\n\
Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_vec();
    // A masked text frame (mask 0): Socket.IO CONNECT without auth, in the same write.
    bytes.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'4', b'0']);
    c.send(&bytes);
    let a = c.answer(true).expect("an answer to the upgrade");
    assert_eq!(a.status, 101);
    assert!(c.ws_text().starts_with('0'), "no Engine.IO open");
    // The CONNECT was read: it is refused for its missing auth.
    assert!(c.ws_text().starts_with("44"), "the early CONNECT was lost");
}

#[async_std::test]
async fn slow_heads_bodies_and_idle_connections_are_timed_out() {
    let dir = TempDir::new("slow");
    let h = start_with_env(
        &dir,
        &[
            "HERALD_HTTP_HEAD_TIMEOUT_MS=500",
            "HERALD_HTTP_BODY_TIMEOUT_MS=500",
            "HERALD_HTTP_IDLE_TIMEOUT_MS=500",
        ],
    );
    for base in [&h.api, &h.connector] {
        // A body that stops arriving.
        let mut c = RawHttp::connect(base);
        c.send(push_request("Content-Length: 100000\r\n", "{").as_bytes());
        let a = c.answer(false).expect("an answer to a stalled body");
        assert_eq!(a.status, 408);
        assert!(a.says_close() && c.closed_within(WAIT));
        // A head that stops arriving.
        let mut c = RawHttp::connect(base);
        c.send(b"GET /healthy HTTP/1.1\r\nHo");
        let a = c.answer(false).expect("an answer to a stalled head");
        assert_eq!(a.status, 408);
        assert!(c.closed_within(WAIT));
        // A connection that never sends anything, and one idle after a request.
        let mut c = RawHttp::connect(base);
        assert!(c.closed_within(WAIT), "a silent connection was kept");
        let mut c = RawHttp::connect(base);
        c.send(b"GET /healthy HTTP/1.1\r\nHost: herald\r\n\r\n");
        assert!(c.answer(false).is_some());
        assert!(c.closed_within(WAIT), "an idle connection was kept");
    }
}

#[async_std::test]
async fn connections_beyond_the_limit_are_answered_503() {
    let dir = TempDir::new("limit");
    let h = start_with_env(&dir, &["HERALD_HTTP_MAX_CONNECTIONS=10"]);
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut c = RawHttp::connect(&h.api);
        c.send(b"GET /healthy HTTP/1.1\r\nHost: herald\r\n\r\n");
        assert_eq!(c.answer(false).expect("an answer").status, 200);
        held.push(c);
    }
    for _ in 0..5 {
        let mut c = RawHttp::connect(&h.api);
        c.send(b"GET /healthy HTTP/1.1\r\nHost: herald\r\n\r\n");
        let a = c.answer(false).expect("an answer beyond the limit");
        assert_eq!(a.status, 503);
        assert!(a.says_close());
    }
    // The other listener has its own limit.
    let mut c = RawHttp::connect(&h.connector);
    c.send(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: herald\r\n\r\n");
    assert_eq!(c.answer(false).expect("a connector answer").status, 200);
    // A slot freed is a slot taken again.
    drop(held);
    assert!(wait_until(WAIT, || {
        let mut c = RawHttp::connect(&h.api);
        c.send(b"GET /healthy HTTP/1.1\r\nHost: herald\r\n\r\n");
        c.answer(false).is_some_and(|a| a.status == 200)
    }));
    // Logged once per interval, not per connection.
    let refusals = || {
        h.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("connections refused"))
            .count()
    };
    assert!(wait_until(WAIT, || refusals() > 0));
    assert_eq!(refusals(), 1);
}

#[async_std::test]
async fn idle_sockets_cannot_take_the_last_file_descriptor() {
    let dir = TempDir::new("nofile");
    let h = Herald::start_under(&["prlimit", "--nofile=256:256", "--"], &dir.0, &[]);
    let idle: Vec<RawHttp> = (0..250).map(|_| RawHttp::connect(&h.connector)).collect();
    // The connector is full: the next one is told so (it is accepted, not left waiting).
    let mut c = RawHttp::connect(&h.connector);
    c.send(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: herald\r\n\r\n");
    assert_eq!(c.answer(false).expect("an answer").status, 503);
    // The REST API still answers.
    let mut c = RawHttp::connect(&h.api);
    c.send(b"GET /healthy HTTP/1.1\r\nHost: herald\r\n\r\n");
    assert_eq!(c.answer(false).expect("/healthy answered").status, 200);
    drop(idle);
}

#[async_std::test]
async fn node_fetch_sends_fifty_pushes_and_polls_without_a_hang_up() {
    let dir = TempDir::new("nodefetch");
    let h = Herald::start(&dir.0, &[]);
    let r = run_client(
        "http_node.js",
        &json!({"lib": "node-fetch", "url": h.api, "path": "/push", "method": "POST",
                "body": serde_json::from_str::<Value>(PUSH).unwrap(), "n": 50}),
    );
    assert_eq!(r["ok"], 50, "{r}");
    let r = run_client(
        "http_node.js",
        &json!({"lib": "node-fetch", "url": h.connector,
                "path": "/socket.io/?EIO=4&transport=polling", "n": 50}),
    );
    assert_eq!(r["ok"], 50, "{r}");
}

#[async_std::test]
async fn undici_keeps_one_connection_and_pipelines() {
    let dir = TempDir::new("undici");
    let h = Herald::start(&dir.0, &[]);
    let r = run_client(
        "http_node.js",
        &json!({"lib": "undici", "url": h.api, "path": "/healthy", "n": 20}),
    );
    assert_eq!(
        (r["ok"].clone(), r["connects"].clone()),
        (json!(40), json!(1)),
        "{r}"
    );
    let r = run_client(
        "http_node.js",
        &json!({"lib": "undici", "url": h.api, "path": "/push", "method": "POST",
                "body": serde_json::from_str::<Value>(PUSH).unwrap(), "n": 10}),
    );
    assert_eq!(r["ok"], 20, "{r}");
}

#[async_std::test]
async fn python_requests_and_curl_are_served() {
    let dir = TempDir::new("requests");
    let h = Herald::start(&dir.0, &[]);
    let r = run_client(
        "http_requests.py",
        &json!({"url": h.api, "path": "/push", "method": "POST",
                "body": serde_json::from_str::<Value>(PUSH).unwrap(), "n": 20}),
    );
    assert_eq!(
        (r["ok"].clone(), r["closed"].clone()),
        (json!(40), json!(20)),
        "{r}"
    );
    let url = format!("{}/healthy", h.api);
    // Three requests asking to close: three answers, a connection each.
    let out = curl_output(&[
        "-H",
        "Connection: close",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\n",
        &url,
        &url,
        &url,
    ]);
    assert_eq!(out, "200 1\n200 1\n200 1\n");
    assert_eq!(curl_output(&["--http1.0", &url]), r#"{"ok":1}"#);
    // A 100-continue upload (curl asks for it above 1 KiB).
    let big = format!(
        r#"{{"send_id":"h","recv_id":["u2"],"data":"{}"}}"#,
        "x".repeat(4000)
    );
    let out = curl_output(&[
        "-H",
        "Content-Type: application/json",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &big,
        &format!("{}/push", h.api),
    ]);
    let out: Value = serde_json::from_str(&out).expect("a JSON answer");
    assert_eq!(without_push_id(out), json!({"ok": 1, "send": 1}));
}
