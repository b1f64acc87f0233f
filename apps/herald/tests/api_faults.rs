//! The REST API's answers when the store or the broker fails, through the real tide routes
//! (in process, `Server::respond`), with the in-memory ports switched down to inject the
//! failure. MongoDB really stopped under a running cluster is covered by it/ (issue 5).

use std::sync::Arc;

use herald::api::{self, ApiState};
use herald_core::{MemoryBroker, MemoryStore, Retention};
use herald_it::receipts::without_push_id;
use serde_json::{Value, json};
use tide::http::{Method, Request, Url};

struct Fixture {
    app: tide::Server<api::State<MemoryStore, herald_core::MemoryBrokerNode>>,
    store: MemoryStore,
    bus: MemoryBroker,
}

fn fixture() -> Fixture {
    let store = MemoryStore::new(Retention::default());
    let bus = MemoryBroker::new();
    let state = Arc::new(ApiState::new(
        Arc::new(store.clone()),
        Arc::new(bus.node()),
        "test",
    ));
    let mut app = tide::with_state(state);
    api::routes(&mut app);
    Fixture { app, store, bus }
}

async fn call(
    app: &tide::Server<impl Clone + Send + Sync + 'static>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = Request::new(method, Url::parse(&format!("http://test{path}")).unwrap());
    if let Some(b) = body {
        req.set_body(b.to_string());
        req.insert_header("content-type", "application/json");
    }
    let mut res: tide::http::Response = app.respond(req).await.unwrap();
    let status = u16::from(res.status());
    let text = res.body_string().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn push_body() -> Value {
    json!({"send_id": "s", "recv_id": ["a", "b"], "data": 1})
}

#[async_std::test]
async fn store_down_answers_503_and_stores_nothing() {
    let f = fixture();
    f.store.set_down(true);
    let (status, body) = call(&f.app, Method::Post, "/push", Some(push_body())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ok"], 0);
    assert!(
        body["errors"][0].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
    let (status, _) = call(&f.app, Method::Get, "/healthy", None).await;
    assert_eq!(status, 503);
    let (status, _) = call(&f.app, Method::Get, "/queues/a?since=0", None).await;
    assert_eq!(status, 503);
    // Back up: it recovers by itself, and nothing from the outage was stored.
    f.store.set_down(false);
    let (status, body) = call(&f.app, Method::Get, "/queues/a?since=0", None).await;
    assert_eq!((status, body["messages"].clone()), (200, json!([])));
    let (status, body) = call(&f.app, Method::Post, "/push", Some(push_body())).await;
    assert_eq!(
        (status, without_push_id(body)),
        (200, json!({"ok": 1, "send": 2}))
    );
    assert_eq!(call(&f.app, Method::Get, "/healthy", None).await.0, 200);
}

#[async_std::test]
async fn broker_down_still_stores_and_the_node_is_degraded_not_unhealthy() {
    let f = fixture();
    f.bus.set_down(true);
    // Stored is what 200 promises; the notification is only delayed until the broker resyncs.
    let (status, body) = call(&f.app, Method::Post, "/push", Some(push_body())).await;
    assert_eq!(
        (status, without_push_id(body)),
        (200, json!({"ok": 1, "send": 2}))
    );
    // Pushes still succeed: a load balancer must keep the node, told that it is degraded.
    let (status, body) = call(&f.app, Method::Get, "/healthy", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], 1, "{body}");
    assert!(
        body["degraded"][0].as_str().unwrap().contains("broker"),
        "{body}"
    );
    f.bus.set_down(false);
    let (status, body) = call(&f.app, Method::Get, "/healthy", None).await;
    assert_eq!((status, body), (200, json!({"ok": 1})));
}
