//! The end-to-end scenarios of push receipts, status, idempotent publish and recall (issue
//! 14), written once and run on one node (apps/herald/tests/receipts.rs) and on a cluster
//! (it/tests/receipts.rs): [`Target`] names where to push (two API addresses, the same one
//! twice on a single node) and where clients connect.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{Client, Lib, WAIT, hmac_auth, http, unix_secs};
use crate::tools::{Raw, curl_with_input};
use crate::wait::poll_until;

/// Where a scenario runs.
pub struct Target<'a> {
    /// Two REST API base URLs (the same one twice on a single node).
    pub apis: [&'a str; 2],
    /// A Socket.IO connector base URL.
    pub connector: &'a str,
    /// The client auth secret of the nodes.
    pub secret: &'a str,
    /// A prefix for client ids and keys, unique to the run.
    pub tag: &'a str,
}

impl Target<'_> {
    fn client(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    /// A real client (npm `socket.io-client`) of `client` on slot 0.
    fn connect(&self, client: &str, manual: bool) -> Client {
        let mut c = Client::start(
            Lib::Node,
            json!({
                "url": self.connector,
                "auth": hmac_auth(self.secret, client, 0, unix_secs()),
                "transports": ["websocket"],
                "ackPolicy": if manual { "manual" } else { "auto" },
            }),
        );
        c.wait_for("connect");
        c
    }
}

/// A `POST /push` answer without its push id, once checked that it has one (26 characters):
/// what tests that predate push ids compare.
///
/// # Panics
/// When the answer has no push id of 26 characters.
pub fn without_push_id(mut answer: Value) -> Value {
    let id = answer
        .as_object_mut()
        .and_then(|o| o.remove("push_id"))
        .unwrap_or_else(|| panic!("no push_id in {answer}"));
    assert_eq!(id.as_str().map(str::len), Some(26), "push_id {id}");
    answer
}

fn body(to: &[&str], data: Value) -> Value {
    json!({ "send_id": "receipts", "channel": ["t"], "recv_id": to, "data": data })
}

/// `POST /push` through curl, with `Idempotency-Key: key` when given.
pub fn push_raw(api: &str, key: Option<&str>, body: &Value) -> Raw {
    let header = key.map(|k| format!("Idempotency-Key: {k}"));
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "@-",
    ];
    if let Some(h) = &header {
        args.extend(["-H", h.as_str()]);
    }
    let url = format!("{api}/push");
    args.push(&url);
    curl_with_input(&args, body.to_string().as_bytes())
}

/// A push that must be stored: its push id.
async fn pushed(api: &str, body: Value) -> String {
    let a = crate::process::push(api, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body["push_id"].as_str().expect("a push id").to_owned();
    assert_eq!(id.len(), 26, "{id}");
    id
}

/// `GET /push/<id>?<query>`.
pub async fn status(api: &str, id: &str, query: &str) -> (u16, Value) {
    let a = http("GET", &format!("{api}/push/{id}?{query}"), None, &[]).await;
    (a.status, a.body)
}

/// Polls the status of `id` until `check` holds; panics with the last answer otherwise.
async fn status_until(api: &str, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let held = poll_until(WAIT, async || {
        last = status(api, id, "").await.1;
        check(&last)
    })
    .await;
    assert!(held, "status of {id} never showed {what}: {last}");
    last
}

/// The entry of `client` in a status answer.
///
/// # Panics
/// When the answer has none.
pub fn entry<'v>(status: &'v Value, client: &str) -> &'v Value {
    status["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["client"] == client))
        .unwrap_or_else(|| panic!("no entry of {client} in {status}"))
}

/// Push → status says stored → the client receives it → delivered (with its time) → the
/// client acks → acked (with its time); another slot still says stored; pages follow `next`.
pub async fn status_follows_delivery_and_ack(t: &Target<'_>) {
    let (r1, r2) = (t.client("st1"), t.client("st2"));
    let id = pushed(t.apis[0], body(&[&r1, &r2], json!({"n": 1}))).await;
    let (code, st) = status(t.apis[1], &id, "").await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["summary"]["stored"], 2, "{st}");
    assert_eq!(st["recipients"], 2, "{st}");
    assert_eq!(entry(&st, &r1)["state"], "stored", "{st}");
    assert_eq!(entry(&st, &r1)["delivered_at"], Value::Null, "{st}");
    let mut c = t.connect(&r1, true);
    let got = c.messages(1);
    assert_eq!(got[0]["data"], json!({"n": 1}));
    assert!(
        got[0].get("push_id").is_none() && got[0].get("p").is_none(),
        "{got:?}"
    );
    let st = status_until(t.apis[1], &id, "r1 delivered", |st| {
        entry(st, &r1)["state"] == "delivered"
    })
    .await;
    assert!(entry(&st, &r1)["delivered_at"].as_u64().is_some(), "{st}");
    c.send(json!({"cmd": "ack"}));
    c.wait_for("acked");
    let st = status_until(t.apis[0], &id, "r1 acked with its time", |st| {
        entry(st, &r1)["state"] == "acked" && entry(st, &r1)["acked_at"].is_u64()
    })
    .await;
    let r1e = entry(&st, &r1);
    assert!(
        r1e["acked_at"].as_u64() >= r1e["delivered_at"].as_u64(),
        "{st}"
    );
    assert_eq!(
        (
            st["summary"]["acked"].clone(),
            st["summary"]["stored"].clone()
        ),
        (json!(1), json!(1)),
        "{st}"
    );
    let (_, other) = status(t.apis[0], &id, "slot=1").await;
    assert_eq!(
        other["summary"]["stored"], 2,
        "slot 1 has its own state: {other}"
    );
    let (_, page) = status(t.apis[0], &id, "limit=1").await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1), "{page}");
    let next = page["next"].as_str().expect("a next cursor").to_owned();
    let (_, page) = status(t.apis[0], &id, &format!("limit=1&after={next}")).await;
    assert_eq!(page["entries"][0]["client"], r2, "{page}");
    assert!(page.get("next").is_none(), "{page}");
    assert_eq!(
        page["summary"]["acked"], 1,
        "the summary covers every recipient: {page}"
    );
}

/// A retry with the same key stores nothing and answers the same (also through the other API
/// node), with `Idempotent-Replayed: true`; another body under the key is refused with 422;
/// a malformed key with 400.
pub async fn idempotent_retry(t: &Target<'_>) {
    let r = t.client("idem");
    let key = format!("{}-key-1", t.tag);
    let b = body(&[&r], json!({"n": 7}));
    let first = push_raw(t.apis[0], Some(&key), &b);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    for api in [t.apis[0], t.apis[1]] {
        let again = push_raw(api, Some(&key), &b);
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json(), first.json(), "the first answer, again");
        assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    }
    let queue = http(
        "GET",
        &format!("{}/queues/{r}?since=0", t.apis[1]),
        None,
        &[],
    )
    .await;
    assert_eq!(
        queue.body["messages"].as_array().map(Vec::len),
        Some(1),
        "stored once: {}",
        queue.body
    );
    let other = push_raw(t.apis[1], Some(&key), &body(&[&r], json!({"n": 8})));
    assert_eq!(other.status, 422, "{}", other.text());
    assert_eq!(other.json()["ok"], 0);
    // (A value that is not ASCII at all is refused before the route, by the HTTP layer.)
    for bad in ["has space", &"k".repeat(256), "tab\there"] {
        let a = push_raw(t.apis[0], Some(bad), &b);
        assert_eq!(a.status, 400, "key {bad:?}: {}", a.text());
        let errors = a.json()["errors"].clone();
        assert!(
            errors[0]
                .as_str()
                .unwrap_or("")
                .starts_with("Idempotency-Key"),
            "{errors}"
        );
    }
    // A body refused by validation releases its key: the corrected push may use it.
    let key2 = format!("{}-key-2", t.tag);
    let refused = push_raw(t.apis[0], Some(&key2), &json!({"send_id": "s"}));
    assert_eq!(refused.status, 400, "{}", refused.text());
    let fixed = push_raw(t.apis[1], Some(&key2), &b);
    assert_eq!(fixed.status, 200, "{}", fixed.text());
}

/// A recall before the client connects: it never receives the message, status says recalled,
/// a repeated recall answers the same counts.
pub async fn recall_before_connect(t: &Target<'_>) {
    let (r, done) = (t.client("rc"), t.client("rc-acked"));
    let id = pushed(t.apis[0], body(&[&r, &done], json!({"recalled": true}))).await;
    // `done` receives and acks first: it counts as already acked.
    let mut d = t.connect(&done, false);
    d.messages(1);
    status_until(t.apis[0], &id, "the ack of the first recipient", |st| {
        entry(st, &done)["state"] == "acked"
    })
    .await;
    let want = json!({"ok": 1, "recalled": 1, "already_acked": 1});
    for api in [t.apis[1], t.apis[0]] {
        let a = http("DELETE", &format!("{api}/push/{id}"), None, &[]).await;
        assert_eq!((a.status, &a.body), (200, &want));
    }
    let later = pushed(t.apis[1], body(&[&r], json!({"recalled": false}))).await;
    let mut c = t.connect(&r, false);
    let got = c.messages(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["data"],
        json!({"recalled": false}),
        "only the later push: {got:?}"
    );
    let st = status_until(t.apis[1], &id, "recalled", |st| {
        entry(st, &r)["state"] == "recalled"
    })
    .await;
    assert_eq!(st["summary"]["recalled"], 1, "{st}");
    assert_eq!(entry(&st, &done)["state"], "acked", "{st}");
    status_until(t.apis[0], &later, "the later push acked", |st| {
        entry(st, &r)["state"] == "acked"
    })
    .await;
    let none = c.drain_for(Duration::from_millis(300));
    assert!(
        none.iter().all(|e| e["ev"] != "message"),
        "nothing more arrives: {none:?}"
    );
}

/// A recall reaches a copy the session already holds: with `connector.window` 1 (the node's
/// setting), a client that has not acknowledged its first message is sent nothing more, so a
/// second push waits in its session (or its queue). Recalled then, it is never delivered,
/// even once the first is acknowledged; a later push still is.
pub async fn recall_of_a_held_copy(t: &Target<'_>) {
    let r = t.client("held");
    let mut c = t.connect(&r, true);
    pushed(t.apis[0], body(&[&r], json!({"n": "first"}))).await;
    let first = c.messages(1);
    assert_eq!(first[0]["data"], json!({"n": "first"}), "{first:?}");
    let held = pushed(t.apis[0], body(&[&r], json!({"n": "held"}))).await;
    // The session knows of it (a notification, or a read) before the recall.
    status_until(t.apis[1], &held, "the held copy stored", |st| {
        entry(st, &r)["state"] == "stored"
    })
    .await;
    let a = http("DELETE", &format!("{}/push/{held}", t.apis[1]), None, &[]).await;
    assert_eq!(
        (a.status, &a.body),
        (200, &json!({"ok": 1, "recalled": 1, "already_acked": 0}))
    );
    c.send(json!({"cmd": "ack"}));
    c.wait_for("acked");
    pushed(t.apis[0], body(&[&r], json!({"n": "later"}))).await;
    let got = c.messages(1);
    assert_eq!(
        got[0]["data"],
        json!({"n": "later"}),
        "the recalled copy is skipped: {got:?}"
    );
    let st = status_until(t.apis[0], &held, "recalled", |st| {
        entry(st, &r)["state"] == "recalled"
    })
    .await;
    assert_eq!(entry(&st, &r)["delivered_at"], Value::Null, "{st}");
}

/// A copy whose time to live runs out unreceived is `expired`.
pub async fn ttl_runs_out(t: &Target<'_>) {
    let r = t.client("ttl");
    let mut b = body(&[&r], json!(1));
    b["ttl"] = json!(1);
    let id = pushed(t.apis[0], b).await;
    status_until(t.apis[1], &id, "expired", |st| {
        entry(st, &r)["state"] == "expired" && st["summary"]["expired"] == 1
    })
    .await;
}

/// Bad input gets the usual errors body: a malformed or unknown push id, a slot out of range,
/// a bad limit or cursor.
pub async fn bad_input(t: &Target<'_>) {
    let r = t.client("bad");
    let id = pushed(t.apis[0], body(&[&r], json!(1))).await;
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let cases: [(&str, &str, &str, u16); 8] = [
        ("GET", "not-a-push-id", "", 400),
        ("GET", unknown, "", 404),
        ("GET", &id, "slot=16", 400),
        ("GET", &id, "slot=-1", 400),
        ("GET", &id, "limit=0", 400),
        ("GET", &id, "after=x", 400),
        ("GET", &id, "after=2", 400),
        ("DELETE", unknown, "", 404),
    ];
    for (method, push, query, code) in cases {
        let url = format!("{}/push/{push}?{query}", t.apis[1]);
        let a = http(method, &url, None, &[]).await;
        assert_eq!(a.status, code, "{method} {url}: {}", a.body);
        assert_eq!(a.body["ok"], 0, "{method} {url}: {}", a.body);
        assert!(
            a.body["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{method} {url}: {}",
            a.body
        );
    }
    let a = http("DELETE", &format!("{}/push/bad", t.apis[0]), None, &[]).await;
    assert_eq!(
        (a.status, a.body["ok"].clone()),
        (400, json!(0)),
        "{}",
        a.body
    );
}

/// Checks recorded REST answers (`samples`: `{method, path, status, content_type, body}` with
/// the spec's path template) against docs/openapi.yaml with `it/clients/openapi_check.py`,
/// writing them to `dir/samples.json` first.
///
/// # Panics
/// When an answer does not match the spec.
pub fn check_openapi(dir: &std::path::Path, samples: &[Value]) {
    let file = dir.join("samples.json");
    std::fs::write(&file, serde_json::to_vec(samples).expect("JSON")).expect("write samples");
    let spec = crate::docker::workspace_dir().join("docs/openapi.yaml");
    let out = std::process::Command::new(crate::process::test_env().join("venv/bin/python"))
        .arg(crate::process::clients_dir().join("openapi_check.py"))
        .arg(spec)
        .arg(&file)
        .output()
        .expect("run openapi_check.py");
    let report = String::from_utf8_lossy(&out.stdout);
    let all_good = format!("{} samples, 0 problems", samples.len());
    assert!(
        out.status.success() && report.contains(&all_good),
        "answers do not match docs/openapi.yaml:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
