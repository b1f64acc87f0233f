//! End to end on one node (the embedded store): push ids, status, delivery receipts,
//! idempotent publish and recall with the real binary, curl and the official Node client
//! (the scenarios are in `herald_it::receipts`, shared with the cluster test).

use herald_it::receipts::{self, Target};
use herald_it::{Herald, TempDir, test_env};

fn target<'a>(h: &'a Herald, tag: &'a str) -> Target<'a> {
    Target {
        apis: [&h.api, &h.api],
        connector: &h.connector,
        secret: &h.secret,
        tag,
    }
}

#[async_std::test]
async fn status_follows_delivery_and_ack() {
    let _ = test_env();
    let dir = TempDir::new("receipts-status");
    let h = Herald::start(&dir.0, &[]);
    receipts::status_follows_delivery_and_ack(&target(&h, "one")).await;
}

#[async_std::test]
async fn an_idempotent_retry_stores_nothing_and_answers_the_same() {
    let dir = TempDir::new("receipts-idem");
    let h = Herald::start(&dir.0, &[]);
    receipts::idempotent_retry(&target(&h, "one")).await;
}

#[async_std::test]
async fn a_recall_before_connect_is_never_received() {
    let _ = test_env();
    let dir = TempDir::new("receipts-recall");
    let h = Herald::start(&dir.0, &[]);
    receipts::recall_before_connect(&target(&h, "one")).await;
}

#[async_std::test]
async fn a_recall_reaches_a_copy_the_session_holds() {
    let _ = test_env();
    let dir = TempDir::new("receipts-held");
    let h = Herald::start(&dir.0, &["--window", "1"]);
    receipts::recall_of_a_held_copy(&target(&h, "one")).await;
}

#[async_std::test]
async fn a_copy_whose_ttl_runs_out_is_expired() {
    let dir = TempDir::new("receipts-ttl");
    let h = Herald::start(&dir.0, &[]);
    receipts::ttl_runs_out(&target(&h, "one")).await;
}

#[async_std::test]
async fn bad_input_gets_the_errors_body() {
    let dir = TempDir::new("receipts-bad");
    let h = Herald::start(&dir.0, &[]);
    receipts::bad_input(&target(&h, "one")).await;
}

#[async_std::test]
async fn receipts_and_idempotency_survive_a_restart() {
    let _ = test_env();
    let dir = TempDir::new("receipts-restart");
    let body = serde_json::json!({"send_id": "s", "recv_id": ["rs"], "data": 1});
    let (first, id) = {
        let h = Herald::start(&dir.0, &[]);
        let first = receipts::push_raw(&h.api, Some("restart-key"), &body);
        assert_eq!(first.status, 200, "{}", first.text());
        let id = first.json()["push_id"].as_str().unwrap().to_owned();
        let a = herald_it::http("DELETE", &format!("{}/push/{id}", h.api), None, &[]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        (first.json(), id)
    };
    let h = Herald::start(&dir.0, &[]);
    let again = receipts::push_raw(&h.api, Some("restart-key"), &body);
    assert_eq!((again.status, again.json()), (200, first));
    let (code, st) = receipts::status(&h.api, &id, "").await;
    assert_eq!(
        (code, st["summary"]["recalled"].clone()),
        (200, serde_json::json!(1)),
        "{st}"
    );
}

#[async_std::test]
async fn receipt_answers_match_the_openapi_spec() {
    use herald_it::http;
    use serde_json::{Value, json};
    let dir = TempDir::new("receipts-openapi");
    let h = Herald::start(&dir.0, &[]);
    let mut samples = Vec::new();
    let mut record = |path: &str, method: &str, status: u16, content_type: String, body: Value| {
        samples.push(json!({
            "method": method, "path": path, "status": status,
            "content_type": content_type, "body": body,
        }));
    };
    let b = json!({"send_id": "s", "recv_id": ["oa", "ob"], "data": 1});
    for (key, body) in [
        ("oa-k", &b),
        ("oa-k", &b),
        (
            "oa-k",
            &json!({"send_id": "s", "recv_id": ["oa"], "data": 2}),
        ),
        ("bad key", &b),
    ] {
        let a = receipts::push_raw(&h.api, Some(key), body);
        let ctype = a.header("content-type").unwrap_or_default();
        record("/push", "post", a.status, ctype, a.json());
    }
    let id = receipts::push_raw(&h.api, None, &b).json()["push_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for (method, push, query) in [
        ("GET", id.as_str(), "limit=1"),
        ("GET", id.as_str(), "slot=99"),
        ("GET", unknown, ""),
        ("DELETE", id.as_str(), ""),
        ("DELETE", unknown, ""),
        ("DELETE", "x", ""),
    ] {
        let a = http(method, &format!("{}/push/{push}?{query}", h.api), None, &[]).await;
        let m = method.to_lowercase();
        record("/push/{push_id}", &m, a.status, a.content_type, a.body);
    }
    let statuses: Vec<u64> = samples
        .iter()
        .map(|s| s["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 422, 400, 200, 400, 404, 200, 404, 400]);
    receipts::check_openapi(&dir.0, &samples);
}
