//! Webhooks end to end: the real `herald` binary sends the events of its store's outbox to a
//! real HTTP receiver (a tide server started by the test), signed.
//!
//! The outbox's own tests put events in it directly (`MessageStore::outbox_add` on the real
//! store: the embedded store's files while the node is stopped, MongoDB while nodes run); the
//! last tests make them the way users do: a push delivered and acknowledged by a real client,
//! a recall through the REST API.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use herald_core::{ClientId, Event, EventKind, MessageId, MessageStore, Slot};
use herald_it::receipts;
use herald_it::{
    HOOK_SECRET, Herald, Receiver, TempDir, WAIT, assert_signed, free_port, metric, poll_until,
    start_refused,
};
use serde_json::Value;

fn events(tag: &str, n: usize) -> Vec<Event> {
    let now = herald_it::unix_secs() * 1000;
    (0..n)
        .map(|i| {
            Event::new(
                EventKind::ALL[i % 4],
                &format!("{tag}push{}", i / 4),
                ClientId::new(&format!("u{}", i % 7)).unwrap(),
                Slot::new((i % 2) as i64).unwrap(),
                MessageId(i as u64 + 1),
                now + i as u64,
            )
        })
        .collect()
}

/// A config file in `dir` sending to `port` with short retries.
fn config(dir: &TempDir, port: u16, extra: &str) -> String {
    let path = dir.0.join("webhooks.toml");
    std::fs::write(
        &path,
        format!(
            "[webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{HOOK_SECRET}\"\n\
             batch_max = 10\nbatch_delay_ms = 20\nretry_min_ms = 50\nretry_max_ms = 200\n\
             timeout_ms = 2000\nlease_ms = 5000\n{extra}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn metric_at_least(api: &str, name: &str, n: f64) -> bool {
    poll_until(WAIT, async || metric(api, name).await.unwrap_or(0.0) >= n).await
}

/// Every event added arrives, signed, with its fields as recorded.
fn assert_all_arrived(receiver: &Receiver, added: &[Event]) {
    let delivered = receiver.delivered();
    for ev in added {
        let (got, _) = delivered
            .get(ev.id.as_str())
            .unwrap_or_else(|| panic!("event {} never arrived", ev.id));
        let want: Value = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(got, &want);
    }
    for g in receiver.got() {
        assert_signed(&g);
    }
}

#[async_std::test]
async fn events_survive_a_receiver_outage_and_a_node_crash_and_arrive_signed() {
    let dir = TempDir::new("webhooks");
    let data = dir.0.join("data");
    let port = free_port().unwrap();
    let cfg = config(&dir, port, "");
    // The events enter the real store's outbox while no node runs.
    let added = events("crash", 25);
    {
        let store = herald_store_embedded::EmbeddedStore::open(
            herald_store_embedded::EmbeddedConfig::new(&data),
        )
        .unwrap();
        let r = store.outbox_add(&added, 1_000_000).await.unwrap();
        assert_eq!(r.added, 25);
    }
    // Nothing listens on the receiver's port: every attempt fails.
    let mut node = Herald::start(&data, &["--config", &cfg]);
    assert!(metric_at_least(&node.api, "herald_webhook_failed_attempts_total", 3.0).await);
    assert!(metric_at_least(&node.api, "herald_webhook_outbox_depth", 25.0).await);
    node.kill9();

    // The node comes back; the receiver is up but answers 500 for a while.
    let receiver = Receiver::start(port, 500).await;
    let node = Herald::start(&data, &["--config", &cfg]);
    assert!(
        poll_until(WAIT, async || receiver.got().len() >= 3).await,
        "the restarted node sends again"
    );
    assert!(receiver.delivered().is_empty());
    receiver.status.store(200, Ordering::SeqCst);
    assert!(
        poll_until(WAIT, async || receiver.delivered().len() == added.len()).await,
        "every event arrives once the receiver is back: {} of {}",
        receiver.delivered().len(),
        added.len()
    );
    assert_all_arrived(&receiver, &added);
    assert!(metric_at_least(&node.api, "herald_webhook_events_sent_total", 25.0).await);
    assert!(
        poll_until(WAIT, async || metric(
            &node.api,
            "herald_webhook_outbox_depth"
        )
        .await
            == Some(0.0))
        .await,
        "the outbox empties"
    );
    // Batches respect batch_max.
    for g in receiver.got() {
        let v: Value = serde_json::from_str(&g.body).unwrap();
        assert!(v["events"].as_array().unwrap().len() <= 10);
    }
}

#[async_std::test]
async fn events_older_than_max_age_are_dropped_and_counted() {
    let dir = TempDir::new("webhooks-age");
    let data = dir.0.join("data");
    let port = free_port().unwrap();
    let receiver = Receiver::start(port, 200).await;
    let cfg = config(&dir, port, "max_age_secs = 60\n");
    let mut old = events("old", 3);
    for e in &mut old {
        e.ts -= 3_600_000;
    }
    let fresh = events("fresh", 2);
    {
        let store = herald_store_embedded::EmbeddedStore::open(
            herald_store_embedded::EmbeddedConfig::new(&data),
        )
        .unwrap();
        store.outbox_add(&old, 100).await.unwrap();
        store.outbox_add(&fresh, 100).await.unwrap();
    }
    let node = Herald::start(&data, &["--config", &cfg]);
    assert!(
        metric_at_least(
            &node.api,
            "herald_webhook_events_dropped_max_age_total",
            3.0
        )
        .await
    );
    assert!(poll_until(WAIT, async || receiver.delivered().len() == 2).await);
    assert_all_arrived(&receiver, &fresh);
    let got = receiver.delivered();
    assert!(old.iter().all(|e| !got.contains_key(e.id.as_str())));
}

#[async_std::test]
async fn two_nodes_on_one_mongodb_never_send_an_event_twice() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let dir = TempDir::new("webhooks-mongo");
    let port = free_port().unwrap();
    let receiver = Receiver::start(port, 200).await;
    let cfg = config(&dir, port, "");
    let url = mongo.url();
    let nodes: Vec<Herald> = ["w1", "w2"]
        .iter()
        .map(|n| {
            Herald::start(
                &dir.0.join(n),
                &["--config", &cfg, "--mongo", &url, "--node-id", n],
            )
        })
        .collect();
    let store = herald_store_mongo::MongoStore::connect(
        herald_store_mongo::MongoConfig::new(url.clone()),
        std::sync::Arc::new(herald_it::AsyncStd),
    )
    .await
    .unwrap();
    // Events arrive while both nodes poll the outbox.
    let added = events("two", 200);
    for chunk in added.chunks(20) {
        store.outbox_add(chunk, 1_000_000).await.unwrap();
    }
    assert!(
        poll_until(WAIT * 3, async || receiver.delivered().len() == added.len()).await,
        "{} of {} arrived",
        receiver.delivered().len(),
        added.len()
    );
    assert_all_arrived(&receiver, &added);
    assert!(
        receiver.twice().is_empty(),
        "sent twice: {:?}",
        receiver.twice()
    );
    let mut sent = 0.0;
    for n in &nodes {
        sent += metric(&n.api, "herald_webhook_events_sent_total")
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(sent, added.len() as f64, "the nodes' counts add up");
    let ids: BTreeSet<_> = added.iter().map(|e| e.id.as_str().to_owned()).collect();
    assert_eq!(ids.len(), added.len());
}

#[test]
fn a_url_without_a_secret_or_a_bad_url_is_refused_at_start() {
    let dir = TempDir::new("webhooks-refused");
    let path = dir.0.join("w.toml");
    std::fs::write(&path, "[webhook]\nurl = \"http://127.0.0.1:9/hook\"\n").unwrap();
    let p = path.display().to_string();
    let stopped = start_refused(&dir.0.join("d"), &["--config", &p]);
    assert!(!stopped.status.success());
    assert!(
        stopped.stderr.contains("webhook.secret"),
        "{}",
        stopped.stderr
    );
    std::fs::write(
        &path,
        "[webhook]\nurl = \"https://example.com/hook\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let stopped = start_refused(&dir.0.join("d"), &["--config", &p]);
    assert!(!stopped.status.success());
    assert!(
        stopped.stderr.contains("webhook.url") && stopped.stderr.contains("https"),
        "{}",
        stopped.stderr
    );
}

/// The whole path: a push is delivered to a real client (npm `socket.io-client`) and
/// acknowledged; the node records both receipts, and the receiver gets a `delivered` and an
/// `acked` event for that push, client, slot and message, signed.
#[async_std::test]
async fn a_delivered_and_acknowledged_push_sends_signed_receipt_events() {
    let _ = herald_it::test_env();
    let dir = TempDir::new("webhooks-receipts");
    let port = free_port().unwrap();
    let cfg = config(&dir, port, "");
    let receiver = Receiver::start(port, 200).await;
    let node = Herald::start(&dir.0.join("data"), &["--config", &cfg]);
    let push_id = push_to(&node, &["hooked"]).await;
    let message_id = node.receive_and_ack("hooked")["id"].as_u64().unwrap();
    let kinds = || -> BTreeSet<String> {
        receiver
            .delivered()
            .values()
            .filter(|(ev, _)| ev["push_id"] == push_id.as_str())
            .map(|(ev, _)| ev["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(
        poll_until(WAIT, async || kinds().len() == 2).await,
        "a delivered and an acked event: {:?}",
        receiver.got()
    );
    assert_eq!(
        kinds(),
        BTreeSet::from(["acked".to_owned(), "delivered".to_owned()])
    );
    for (ev, _) in receiver.delivered().values() {
        assert_eq!(ev["client"], "hooked", "{ev}");
        assert_eq!(ev["slot"], 0, "{ev}");
        assert_eq!(ev["message_id"], message_id, "{ev}");
    }
    for g in receiver.got() {
        assert_signed(&g);
    }
}

#[async_std::test]
async fn a_recall_sends_a_recalled_event_for_each_copy_not_yet_acknowledged() {
    let _ = herald_it::test_env();
    let dir = TempDir::new("webhooks-recall");
    let port = free_port().unwrap();
    let cfg = config(&dir, port, "events = [\"recalled\"]\n");
    let receiver = Receiver::start(port, 200).await;
    let node = Herald::start(&dir.0.join("data"), &["--config", &cfg]);
    let push_id = push_to(&node, &["early", "late"]).await;
    // "early" gets and acknowledges its copy; "late" never connects.
    node.receive_and_ack("early");
    let url = format!("{}/push/{push_id}", node.api);
    let recall = || herald_it::http("DELETE", &url, None, &[]);
    let answer = recall().await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["recalled"], 1, "{}", answer.body);
    assert_eq!(answer.body["already_acked"], 1, "{}", answer.body);
    // A repeat makes the same event again: receivers deduplicate by id.
    assert_eq!(recall().await.status, 200);
    let status = herald_it::http("GET", &url, None, &[]).await.body;
    let late_id = receipts::entry(&status, "late")["id"].as_u64().unwrap();
    assert!(
        poll_until(WAIT, async || !receiver.delivered().is_empty()).await,
        "a recalled event: {:?}",
        receiver.got()
    );
    let events = receiver.delivered();
    assert_eq!(events.len(), 1, "one fact, one id: {events:?}");
    let (ev, _) = events.values().next().unwrap();
    assert_eq!(ev["type"], "recalled", "{ev}");
    assert_eq!(ev["push_id"], push_id.as_str(), "{ev}");
    assert_eq!(ev["client"], "late", "{ev}");
    assert_eq!(ev["slot"], 0, "{ev}");
    assert_eq!(ev["message_id"], late_id, "{ev}");
    for g in receiver.got() {
        assert_signed(&g);
    }
}

#[async_std::test]
async fn a_push_whose_time_to_live_runs_out_sends_one_expired_event_per_copy_not_acknowledged() {
    let _ = herald_it::test_env();
    let dir = TempDir::new("webhooks-expired");
    let data = dir.0.join("data");
    let port = free_port().unwrap();
    let cfg = config(
        &dir,
        port,
        "events = [\"expired\"]\nexpired_every_ms = 200\n",
    );
    let receiver = Receiver::start(port, 200).await;
    let mut node = Herald::start(&data, &["--config", &cfg]);
    let push_id = push_with(&node, &["early", "late"], Some(5)).await;
    // "early" gets and acknowledges its copy within its 5 s; "late" never connects.
    node.receive_and_ack("early");
    let url = format!("{}/push/{push_id}", node.api);
    let status = herald_it::http("GET", &url, None, &[]).await.body;
    let late = receipts::entry(&status, "late").clone();
    assert!(
        poll_until(WAIT, async || !receiver.delivered().is_empty()).await,
        "an expired event: {:?}",
        receiver.got()
    );
    let status = herald_it::http("GET", &url, None, &[]).await.body;
    assert_eq!(status["summary"]["expired"], 1, "{status}");
    assert_eq!(status["summary"]["acked"], 1, "{status}");
    let events = receiver.delivered();
    assert_eq!(
        events.len(),
        1,
        "the acknowledged copy has none: {events:?}"
    );
    let (first_id, (ev, _)) = events.iter().next().unwrap();
    assert_eq!(ev["type"], "expired", "{ev}");
    assert_eq!(ev["push_id"], push_id.as_str(), "{ev}");
    assert_eq!(ev["client"], "late", "{ev}");
    assert_eq!(ev["slot"], 0, "{ev}");
    assert_eq!(ev["message_id"], late["id"], "{ev}");
    assert_eq!(
        ev["ts"], status["expires_at"],
        "stamped with the expiry: {ev} {status}"
    );
    for g in receiver.got() {
        assert_signed(&g);
    }

    // After a restart the reported push is not reported again: the next push's event comes
    // alone, and the first one's id was received once.
    node.terminate();
    let node = Herald::start(&data, &["--config", &cfg]);
    let second = push_with(&node, &["late"], Some(1)).await;
    assert!(
        poll_until(WAIT, async || receiver.delivered().len() >= 2).await,
        "the second push's expired event: {:?}",
        receiver.got()
    );
    let events = receiver.delivered();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events
            .values()
            .any(|(ev, _)| ev["push_id"] == second.as_str()),
        "{events:?}"
    );
    assert_eq!(events[first_id].1, 1, "the first event once: {events:?}");
}

/// Pushes one message to `clients`; its push id.
async fn push_to(node: &Herald, clients: &[&str]) -> String {
    push_with(node, clients, None).await
}

/// Pushes one message to `clients` with a time to live of `ttl` seconds, if given; its push id.
async fn push_with(node: &Herald, clients: &[&str], ttl: Option<u64>) -> String {
    let mut body =
        serde_json::json!({"send_id": "s", "channel": ["t"], "recv_id": clients, "data": {"n": 1}});
    if let Some(ttl) = ttl {
        body["ttl"] = ttl.into();
    }
    let answer = herald_it::push(&node.api, body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["push_id"].as_str().unwrap().to_owned()
}

/// A receiver that answers with a body (as most do) gets every event once: the sender reads
/// each answer to its end before its connection carries the next request. It used to leave
/// the body unread, so the next answer on that connection failed to parse ("invalid HTTP
/// version"), and every other batch was sent twice.
#[async_std::test]
async fn a_receiver_answering_with_a_body_gets_every_event_once() {
    events_once_with_answer("answer-body", r#"{"ok":true,"received":"thanks"}"#, "").await;
}

/// An answer longer than the sender reads (64 KiB) is cut off, and its connection is not
/// used again.
#[async_std::test]
async fn a_receiver_answering_a_long_body_gets_every_event_once() {
    events_once_with_answer("answer-long", String::leak("x".repeat(200_000)), "").await;
}

/// The same past a cap set by `webhook.max_answer_bytes`: the node says it cut answers off.
#[async_std::test]
async fn a_receiver_answering_past_the_configured_cap_gets_every_event_once() {
    let body = String::leak("y".repeat(3_000));
    let node = events_once_with_answer("answer-cap", body, "max_answer_bytes = 1000\n").await;
    assert!(node.logged("longer than 1000 bytes (webhook.max_answer_bytes)"));
}

/// 40 recalled events in batches of at most 10 to a receiver answering `body`, with `extra`
/// webhook keys: each arrives once, no attempt fails. The node, for more checks.
async fn events_once_with_answer(tag: &str, body: &'static str, extra: &str) -> Herald {
    let _ = herald_it::test_env();
    let dir = TempDir::new(&format!("webhooks-{tag}"));
    let port = free_port().unwrap();
    let cfg = config(&dir, port, &format!("events = [\"recalled\"]\n{extra}"));
    let receiver = Receiver::answering(port, 200, body).await;
    let node = Herald::start(&dir.0.join("data"), &["--config", &cfg]);
    let clients: Vec<String> = (0..40).map(|i| format!("{tag}-{i}")).collect();
    let names: Vec<&str> = clients.iter().map(String::as_str).collect();
    let push_id = push_to(&node, &names).await;
    let recall =
        herald_it::http("DELETE", &format!("{}/push/{push_id}", node.api), None, &[]).await;
    assert_eq!(recall.body["recalled"], 40, "{}", recall.body);
    // At least four requests, on kept-alive connections.
    assert!(
        poll_until(WAIT, async || receiver.delivered().len() == 40).await,
        "40 recalled events: {} arrived",
        receiver.delivered().len()
    );
    assert!(
        receiver.got().len() >= 4,
        "{} requests",
        receiver.got().len()
    );
    assert_eq!(
        metric(&node.api, "herald_webhook_failed_attempts_total").await,
        Some(0.0),
        "no attempt failed"
    );
    let twice = receiver.twice();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    node
}
