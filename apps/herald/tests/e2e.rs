//! End to end: the real `herald` binary on 127.0.0.1 (free ports, its own data directory),
//! real HTTP, and the official clients — `socket.io-client` from npm and `python-socketio`
//! from PyPI — driven line by line (it/clients/). Waits poll for conditions; nothing sleeps
//! a fixed time to let something happen.

use herald_it as support;
use serde_json::{Value, json};
use support::{Client, Herald, Lib, TempDir, clients_dir, http, push, test_env, unix_secs};

fn ids(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

fn body(to: &[&str], data: Value) -> Value {
    json!({ "send_id": "e2e", "channel": ["t"], "recv_id": to, "data": data })
}

fn client(lib: Lib, h: &Herald, auth: Value, transports: &[&str], manual: bool) -> Client {
    Client::start(
        lib,
        json!({
            "url": h.connector,
            "auth": auth,
            "transports": transports,
            "ackPolicy": if manual { "manual" } else { "auto" },
        }),
    )
}

#[async_std::test]
async fn push_validation_answers() {
    let dir = TempDir::new("validation");
    let h = Herald::start(&dir.0, &[]);
    let a = push(&h.api, body(&["a", "b", "a"], json!({"n": 1}))).await;
    assert_eq!(
        (a.status, support::receipts::without_push_id(a.body)),
        (200, json!({"ok": 1, "send": 2}))
    );
    let a = push(
        &h.api,
        json!({"send_id": 5, "recv_id": ["ok", "bad id"], "data": null, "ttl": -1}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["ok"], 0);
    let errors: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    for field in ["send_id", "recv_id[1]", "data", "ttl"] {
        assert!(
            errors.iter().any(|e| e.starts_with(field)),
            "{field} missing in {errors:?}"
        );
    }
    let a = http(
        "POST",
        &format!("{}/push", h.api),
        Some(("text/plain", b"{}".to_vec())),
        &[],
    )
    .await;
    assert_eq!(a.status, 415);
    let a = http(
        "POST",
        &format!("{}/push", h.api),
        Some(("application/json", b"{".to_vec())),
        &[],
    )
    .await;
    assert_eq!((a.status, a.body["ok"].clone()), (400, json!(0)));
    let big = format!(
        r#"{{"send_id":"s","recv_id":["a"],"data":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    let a = http(
        "POST",
        &format!("{}/push", h.api),
        Some(("application/json", big.into_bytes())),
        &[],
    )
    .await;
    assert_eq!(a.status, 413);
    let a = http("GET", &format!("{}/apis", h.api), None, &[]).await;
    assert_eq!(
        a.body,
        json!({"v1": ["/push", "/healthy", "/apis", "/queues", "/watch", "/metrics", "/clients"]})
    );
    let a = http("GET", &format!("{}/healthy", h.api), None, &[]).await;
    assert_eq!((a.status, a.body.clone()), (200, json!({"ok": 1})));
    // Nothing invalid was stored.
    let a = http("GET", &format!("{}/queues/ok?since=0", h.api), None, &[]).await;
    assert_eq!(a.body, json!({"ok": 1, "messages": []}));
}

#[async_std::test]
async fn api_keys_are_required_when_configured() {
    let dir = TempDir::new("keys");
    let h = Herald::start(&dir.0, &["--api-key", "k1"]);
    let a = push(&h.api, body(&["a"], json!(1))).await;
    assert_eq!(a.status, 401);
    let a = http(
        "POST",
        &format!("{}/push", h.api),
        Some((
            "application/json",
            serde_json::to_vec(&body(&["a"], json!(1))).unwrap(),
        )),
        &[("authorization", "Bearer k1")],
    )
    .await;
    assert_eq!(a.status, 200);
}

#[async_std::test]
async fn online_delivery_over_websocket_and_polling_with_upgrade() {
    let _ = test_env();
    let dir = TempDir::new("online");
    let h = Herald::start(&dir.0, &[]);
    for (i, (lib, transports)) in [
        (Lib::Node, vec!["websocket"]),
        (Lib::Node, vec!["polling", "websocket"]),
        (Lib::Python, vec!["websocket"]),
        (Lib::Python, vec!["polling", "websocket"]),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("online{i}");
        let mut c = client(lib, &h, h.auth(&name, 0), &transports, false);
        c.wait_for("connect");
        let a = push(&h.api, body(&[&name], json!({"hello": i}))).await;
        assert_eq!(a.status, 200);
        let got = c.messages(1);
        assert_eq!(got[0]["data"], json!({"hello": i}));
        assert_eq!(got[0]["from"], "e2e");
        assert_eq!(got[0]["channel"], json!(["t"]));
        assert_eq!(got[0]["id"], 1);
    }
}

#[async_std::test]
async fn offline_backlog_arrives_in_order() {
    let dir = TempDir::new("backlog");
    let h = Herald::start(&dir.0, &[]);
    for i in 0..30 {
        assert_eq!(push(&h.api, body(&["late"], json!(i))).await.status, 200);
    }
    let mut c = client(Lib::Python, &h, h.auth("late", 0), &["websocket"], false);
    let got = c.messages(30);
    assert_eq!(ids(&got), (1..=30).collect::<Vec<_>>());
}

#[async_std::test]
async fn unacked_is_redelivered_and_acked_never_again() {
    let dir = TempDir::new("redeliver");
    let h = Herald::start(&dir.0, &[]);
    push(&h.api, body(&["r"], json!("one"))).await;
    push(&h.api, body(&["r"], json!("two"))).await;
    // First session: receives, never acknowledges.
    let mut c = client(Lib::Node, &h, h.auth("r", 0), &["websocket"], true);
    assert_eq!(ids(&c.messages(2)), vec![1, 2]);
    drop(c);
    // Second session: gets both again, acknowledges.
    let mut c = client(Lib::Node, &h, h.auth("r", 0), &["websocket"], true);
    assert_eq!(ids(&c.messages(2)), vec![1, 2]);
    c.send(json!({"cmd": "ack"}));
    c.wait_for("acked");
    // Wait until the server has recorded the acknowledgement, then reconnect.
    let recorded = support::poll_until(support::WAIT, async || {
        let w = http("GET", &format!("{}/watch/r?timeout=0", h.api), None, &[]).await;
        w.body["message"].is_null()
    });
    assert!(recorded.await, "ack never recorded");
    drop(c);
    push(&h.api, body(&["r"], json!("three"))).await;
    let mut c = client(Lib::Node, &h, h.auth("r", 0), &["websocket"], false);
    // In-order delivery: had 1 or 2 come back, they would arrive before 3.
    assert_eq!(ids(&c.messages(1)), vec![3]);
}

#[async_std::test]
async fn slots_are_independent() {
    let dir = TempDir::new("slots");
    let h = Herald::start(&dir.0, &[]);
    push(&h.api, body(&["s"], json!(1))).await;
    let mut phone = client(Lib::Node, &h, h.auth("s", 0), &["websocket"], false);
    assert_eq!(ids(&phone.messages(1)), vec![1]);
    let mut web = client(Lib::Python, &h, h.auth("s", 1), &["websocket"], false);
    assert_eq!(
        ids(&web.messages(1)),
        vec![1],
        "slot 1 gets what slot 0 acknowledged"
    );
    push(&h.api, body(&["s"], json!(2))).await;
    assert_eq!(ids(&phone.messages(1)), vec![2]);
    assert_eq!(ids(&web.messages(1)), vec![2]);
}

#[async_std::test]
async fn a_newer_login_kicks_the_older() {
    let dir = TempDir::new("kick");
    let h = Herald::start(&dir.0, &[]);
    let mut old = client(Lib::Node, &h, h.auth("k", 0), &["websocket"], false);
    old.wait_for("connect");
    let mut new = client(Lib::Python, &h, h.auth("k", 0), &["websocket"], false);
    new.wait_for("connect");
    let kicked = old.wait_for("kicked");
    assert_eq!(kicked["data"], json!({"reason": "replaced"}));
    let gone = old.wait_for("disconnect");
    assert_eq!(gone["reason"], "io server disconnect");
    push(&h.api, body(&["k"], json!("for the new one"))).await;
    assert_eq!(new.messages(1)[0]["data"], "for the new one");
    // Another slot is not kicked.
    let mut other = client(Lib::Node, &h, h.auth("k", 3), &["websocket"], false);
    other.wait_for("connect");
    push(&h.api, body(&["k"], json!("both"))).await;
    assert_eq!(new.messages(1)[0]["data"], "both");
}

#[async_std::test]
async fn bad_stale_and_missing_auth_are_refused() {
    let dir = TempDir::new("auth");
    let h = Herald::start(&dir.0, &[]);
    let now = unix_secs();
    let cases = [
        support::hmac_auth("wrong-secret", "x", 0, now),
        support::hmac_auth(support::SECRET, "x", 0, now - 2000),
        json!({}),
        json!({"client_id": "x", "ts": now, "sig": "00"}),
        json!({"token": "not.a.jwt"}),
    ];
    for (i, auth) in cases.into_iter().enumerate() {
        for lib in [Lib::Node, Lib::Python] {
            let mut c = client(lib, &h, auth.clone(), &["websocket"], false);
            let refused = c.wait_for("connect_error");
            let message = match lib {
                Lib::Node => refused["message"].clone(),
                Lib::Python | Lib::NodeV2 | Lib::NodeV1 => refused["data"]["message"].clone(),
            };
            if i == 4 {
                assert!(message.as_str().unwrap().contains("token"), "{refused}");
            } else {
                assert_eq!(message, "unauthorized", "case {i}: {refused}");
            }
        }
    }
    // Nothing was created for the refused clients.
    let m = http("GET", &format!("{}/metrics", h.api), None, &[]).await;
    let text = m.body.as_str().unwrap().to_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("herald_auth_failures_total") && l.ends_with(" 10")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("herald_sessions") && l.ends_with(" 0")),
        "{text}"
    );
}

#[async_std::test]
async fn commit_mode_and_legacy_headers_follow_the_seed_protocol() {
    let dir = TempDir::new("commit");
    let h = Herald::start(&dir.0, &["--legacy-auth"]);
    push(&h.api, body(&["old"], json!("a"))).await;
    push(&h.api, body(&["old"], json!("b"))).await;
    let mut auth = h.auth("old", 0);
    auth["mode"] = json!("commit");
    let mut c = client(Lib::Node, &h, auth, &["websocket"], false);
    let first = c.wait_for("message");
    assert_eq!(first["batch"], json!([]), "the empty first message");
    assert_eq!(first["hasAck"], false);
    c.send(json!({"cmd": "commit", "n": 0}));
    let m = c.wait_for("message");
    assert_eq!(ids(m["batch"].as_array().unwrap()), vec![1]);
    c.send(json!({"cmd": "commit", "n": 1}));
    let m = c.wait_for("message");
    assert_eq!(ids(m["batch"].as_array().unwrap()), vec![2]);
    c.send(json!({"cmd": "commit", "n": 1}));
    drop(c);

    // The seed's legacy headers: md5("<ts><secret><id>"),<ts>; commit mode.
    use md5::{Digest, Md5};
    let ts = unix_secs();
    let sign = format!(
        "{:x},{ts}",
        Md5::digest(format!("{ts}{}legacy", support::SECRET))
    );
    push(&h.api, body(&["legacy"], json!("hello"))).await;
    let mut c = Client::start(
        Lib::Node,
        json!({
            "url": h.connector,
            "transports": ["polling", "websocket"],
            "extraHeaders": {"x-nbb-authid": "legacy", "x-nbb-sign": sign},
        }),
    );
    let first = c.wait_for("message");
    assert_eq!(first["batch"], json!([]));
    c.send(json!({"cmd": "commit", "n": 0}));
    assert_eq!(c.wait_for("message")["batch"][0]["data"], "hello");
}

#[async_std::test]
async fn the_seeds_socket_io_2_clients_connect_over_engine_io_v3() {
    let dir = TempDir::new("eio3");
    let h = Herald::start(&dir.0, &["--legacy-auth"]);
    for i in 0..3 {
        push(&h.api, body(&["seed"], json!(i))).await;
    }
    // xiucall-push's client: socket.io 1.4, x-nbb-* headers, commit mode, polling first.
    use md5::{Digest, Md5};
    let ts = unix_secs();
    let sign = format!(
        "{:x},{ts}",
        Md5::digest(format!("{ts}{}seed", support::SECRET))
    );
    let mut c = Client::start(
        Lib::NodeV1,
        json!({
            "url": h.connector,
            "transports": ["polling", "websocket"],
            "extraHeaders": {"x-nbb-authid": "seed", "x-nbb-sign": sign},
        }),
    );
    assert_eq!(
        c.wait_for("message")["batch"],
        json!([]),
        "the empty first message"
    );
    for (n, id) in [(0, 1), (1, 2), (1, 3)] {
        c.send(json!({"cmd": "commit", "n": n}));
        let m = c.wait_for("message");
        assert_eq!(ids(m["batch"].as_array().unwrap()), vec![id]);
    }
    assert!(
        c.seen
            .iter()
            .any(|e| e["ev"] == "upgrade" && e["transport"] == "websocket"),
        "polling upgraded to websocket: {:?}",
        c.seen
    );

    // HMAC credentials in the query (socket.io 2.x sends no CONNECT auth), ack mode.
    let auth = h.auth("q2", 0);
    push(&h.api, body(&["q2"], json!("x"))).await;
    let mut c = Client::start(
        Lib::NodeV2,
        json!({"url": h.connector, "transports": ["websocket"], "query": auth}),
    );
    let m = c.wait_for("message");
    assert_eq!(m["hasAck"], true);
    assert_eq!(m["batch"][0]["data"], "x");

    // Bad credentials: refused with the reason, then the connection ends.
    let mut bad = h.auth("q3", 0);
    bad["sig"] = json!("00");
    let mut c = Client::start(
        Lib::NodeV2,
        json!({"url": h.connector, "transports": ["polling", "websocket"], "query": bad}),
    );
    let refused = c.wait_for("connect_error");
    assert_eq!(refused["data"], json!({"message": "unauthorized"}));
    c.wait_for("disconnect");
}

#[async_std::test]
async fn history_and_watch() {
    let dir = TempDir::new("watch");
    let h = Herald::start(&dir.0, &[]);
    let w = http("GET", &format!("{}/watch/w?timeout=0", h.api), None, &[]).await;
    assert_eq!(w.body, json!({"ok": 1, "message": null}));
    // A watcher waiting is woken by a push.
    let api = h.api.clone();
    let watcher = async_std::task::spawn(async move {
        http(
            "GET",
            &format!("{api}/watch/w?channel=2&timeout=20000"),
            None,
            &[],
        )
        .await
    });
    // Push only once the watcher is registered with the engine (herald_watchers).
    let waiting = support::poll_until(support::WAIT, async || {
        support::metric(&h.api, "herald_watchers").await == Some(1.0)
    });
    assert!(waiting.await, "the watcher never waited");
    let started = std::time::Instant::now();
    push(&h.api, body(&["w"], json!("wake"))).await;
    let w = watcher.await;
    assert_eq!(w.body["message"]["data"], "wake");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "answered by the push, not the timeout"
    );
    for i in 0..3 {
        push(&h.api, body(&["w"], json!(i))).await;
    }
    let q = http(
        "GET",
        &format!("{}/queues/w?since=0&limit=2", h.api),
        None,
        &[],
    )
    .await;
    assert_eq!(ids(q.body["messages"].as_array().unwrap()), vec![1, 2]);
    let q = http("GET", &format!("{}/queues/w?since=0", h.api), None, &[]).await;
    assert_eq!(
        ids(q.body["messages"].as_array().unwrap()),
        vec![1, 2, 3, 4]
    );
    let q = http(
        "GET",
        &format!("{}/queues/w?since={}", h.api, unix_secs() + 60),
        None,
        &[],
    )
    .await;
    assert_eq!(q.body["messages"], json!([]));
    let bad = http("GET", &format!("{}/queues/w?limit=0", h.api), None, &[]).await;
    assert_eq!(bad.status, 400);
    let bad = http("GET", &format!("{}/watch/w?channel=16", h.api), None, &[]).await;
    assert_eq!(bad.status, 400);
}

#[async_std::test]
async fn pushes_survive_kill_9() {
    let dir = TempDir::new("durable");
    let mut h = Herald::start(&dir.0, &[]);
    for i in 0..20 {
        assert_eq!(push(&h.api, body(&["d"], json!(i))).await.status, 200);
    }
    h.kill9();
    let h = Herald::start(&dir.0, &[]);
    let mut c = client(Lib::Python, &h, h.auth("d", 0), &["websocket"], false);
    assert_eq!(ids(&c.messages(20)), (1..=20).collect::<Vec<_>>());
}

#[async_std::test]
async fn sigterm_stops_cleanly() {
    let dir = TempDir::new("sigterm");
    let mut h = Herald::start(&dir.0, &[]);
    let mut c = client(Lib::Node, &h, h.auth("t", 0), &["websocket"], false);
    c.wait_for("connect");
    let status = h.terminate();
    assert!(status.success(), "exit status {status:?}");
    let gone = c.wait_for("disconnect");
    assert_eq!(gone["reason"], "transport close", "{gone}");
    assert!(h.logged("herald stopped"));
}

#[async_std::test]
async fn twenty_clients_receive_and_commit_while_pushes_arrive() {
    let dir = TempDir::new("twenty");
    let h = Herald::start(&dir.0, &[]);
    let names: Vec<String> = (0..20).map(|i| format!("user{i}")).collect();
    let auths: Vec<Value> = names
        .iter()
        .map(|n| {
            let mut a = h.auth(n, 0);
            a["mode"] = json!("commit");
            a
        })
        .collect();
    let env = test_env();
    let script = clients_dir().join("many.js");
    let mut child = std::process::Command::new("node")
        .arg(script)
        .arg(json!({"url": h.connector, "auths": auths, "expect": 10}).to_string())
        .env("NODE_PATH", env.join("node_modules"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), r#"{"ready":true}"#);
    let to: Vec<&str> = names.iter().map(String::as_str).collect();
    for i in 0..10 {
        assert_eq!(push(&h.api, body(&to, json!(i))).await.status, 200);
    }
    let report: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(child.wait().unwrap().success(), "{report}");
    for n in &names {
        assert_eq!(
            report["received"][n],
            json!((1..=10).collect::<Vec<_>>()),
            "{n}"
        );
    }
}

#[async_std::test]
async fn rest_answers_match_the_openapi_spec() {
    let dir = TempDir::new("openapi");
    let h = Herald::start(&dir.0, &[]);
    let keyed_dir = TempDir::new("openapi-keyed");
    let cfg_dir = TempDir::new("openapi-keyed-cfg");
    let cfg = support::config_file(&cfg_dir.0, "[api]\nmax_answer = 65536\n");
    let keyed = Herald::start(&keyed_dir.0, &["--api-key", "k", "--config", &cfg]);
    let json_body = |v: Value| Some(("application/json", serde_json::to_vec(&v).unwrap()));
    let mut samples = Vec::new();
    let mut record = |path: &str, method: &str, a: support::Answer| {
        samples.push(json!({
            "method": method, "path": path, "status": a.status,
            "content_type": a.content_type, "body": a.body,
        }));
    };
    let api = &h.api;
    let big = format!(
        r#"{{"send_id":"s","recv_id":["a"],"data":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    // Pushes: a good one, an invalid one, the wrong type, too large, no key where one is set.
    for (base, request) in [
        (api, json_body(body(&["o1", "o2"], json!({"x": [1]})))),
        (api, json_body(json!({"recv_id": "x"}))),
        (api, Some(("text/plain", b"x".to_vec()))),
        (api, Some(("application/json", big.into_bytes()))),
        (&keyed.api, json_body(body(&["o1"], json!(1)))),
    ] {
        let a = http("POST", &format!("{base}/push"), request, &[]).await;
        record("/push", "post", a);
    }
    // Reads, good and bad; with a key configured, reads need it too.
    let keyed_api = &keyed.api;
    for (path, url) in [
        ("/queues/{id}", format!("{api}/queues/o1?since=0")),
        ("/queues/{id}", format!("{api}/queues/o1?limit=5000")),
        ("/queues/{id}", format!("{api}/queues/bad%20id")),
        ("/watch/{id}", format!("{api}/watch/o1?timeout=0")),
        ("/watch/{id}", format!("{api}/watch/nobody?timeout=0")),
        ("/watch/{id}", format!("{api}/watch/o1?channel=99")),
        ("/healthy", format!("{api}/healthy")),
        ("/healthy", format!("{api}/healthy?timeout=x")),
        ("/apis", format!("{api}/apis")),
        ("/metrics", format!("{api}/metrics")),
        ("/queues/{id}", format!("{keyed_api}/queues/o1?since=0")),
        ("/watch/{id}", format!("{keyed_api}/watch/o1?timeout=0")),
        ("/apis", format!("{keyed_api}/apis")),
        ("/metrics", format!("{keyed_api}/metrics")),
    ] {
        record(path, "get", http("GET", &url, None, &[]).await);
    }
    // An answer over api.max_answer says `more`.
    let key = [("authorization", "Bearer k")];
    for i in 0..2 {
        let big = json!("x".repeat(40_000) + &i.to_string());
        let a = http(
            "POST",
            &format!("{}/push", keyed.api),
            json_body(body(&["o1"], big)),
            &key,
        )
        .await;
        assert_eq!(a.status, 200);
    }
    let more = http(
        "GET",
        &format!("{}/queues/o1?since=0", keyed.api),
        None,
        &key,
    )
    .await;
    assert_eq!(more.body["more"], true, "{}", more.body);
    record("/queues/{id}", "get", more);
    let statuses: Vec<u64> = samples
        .iter()
        .map(|s| s["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![
            200, 400, 415, 413, 401, 200, 400, 400, 200, 200, 400, 200, 400, 200, 200, 401, 401,
            401, 401, 200
        ]
    );

    support::receipts::check_openapi(&dir.0, &samples);
}

/// Runs `herald` on the API address `api` with `data_dir` and waits for it to exit.
fn run_on(api: &str, data_dir: &std::path::Path) -> std::process::Output {
    let dir = data_dir.display().to_string();
    let args = [
        "--api-listen",
        api,
        "--connector-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.as_str(),
    ];
    support::run_with_env(&support::herald_bin(), &args, &[])
}

/// A node that cannot bind its port stops with the reason and leaves nothing behind: the
/// data directory it would have made (with a generated secret) is not there afterwards, so a
/// retry on a free port starts clean. A data directory that was there before is kept.
#[test]
fn a_node_that_cannot_bind_leaves_no_new_data_directory() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new("bind-fails");
    let fresh = dir.0.join("fresh");
    let out = run_on(&port, &fresh);
    let text = support::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&port), "the error names the address: {text}");
    assert!(
        !fresh.exists(),
        "a new data directory was left behind: {text}"
    );

    // A directory that existed before is the operator's: kept.
    let kept = dir.0.join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    let out = run_on(&port, &kept);
    assert!(!out.status.success());
    assert!(kept.exists());
    drop(taken);
}
