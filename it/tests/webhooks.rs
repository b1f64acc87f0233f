//! Webhooks on a cluster (issue 14): two API nodes and two connectors (real `herald`
//! processes) on a MongoDB-wire server and Redis in containers, the official Node client, and
//! a real HTTP receiver started by the test. Connectors record the receipts of their sessions
//! in the shared outbox, API nodes send them and report expiries.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use herald_it::{
    ClusterNodes, HOOK_SECRET, Mongo, Receiver, Redis, WAIT, assert_signed, free_port, poll_until,
    push, test_env,
};
use serde_json::{Value, json};

/// The configuration every node reads: webhooks to `port`, quick retries and expiry reports.
fn config(port: u16) -> String {
    format!(
        "[webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{HOOK_SECRET}\"\n\
         batch_max = 100\nbatch_delay_ms = 20\nretry_min_ms = 50\nretry_max_ms = 200\n\
         timeout_ms = 2000\nlease_ms = 5000\nexpired_every_ms = 200\n"
    )
}

/// Pushes one message through `api` to `clients` (time to live `ttl` seconds); its push id.
async fn pushed(api: &str, clients: &[&str], ttl: u64) -> String {
    let answer = push(
        api,
        json!({"send_id": "s", "channel": ["t"], "recv_id": clients, "data": {"n": 1}, "ttl": ttl}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["push_id"].as_str().unwrap().to_owned()
}

/// The (type, push id, client) of every event received with a 2xx answer.
fn facts(receiver: &Receiver) -> BTreeSet<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    receiver
        .delivered()
        .values()
        .map(|(ev, _)| (text(&ev["type"]), text(&ev["push_id"]), text(&ev["client"])))
        .collect()
}

fn fact(kind: &str, push: &str, client: &str) -> (String, String, String) {
    (kind.into(), push.into(), client.into())
}

#[async_std::test]
async fn receipts_expiries_and_recalls_reach_the_receiver_also_across_a_restart()
-> anyhow::Result<()> {
    let _ = test_env();
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let port = free_port()?;
    let receiver = Receiver::start(port, 200).await;
    let mut nodes = ClusterNodes::new(&mongo.url(), &redis.url(), Some(&config(port)));
    let mut api1 = nodes.start("api", "api-1");
    let api2 = nodes.start("api", "api-2");
    let conns = [
        nodes.start("connector", "conn-a"),
        nodes.start("connector", "conn-b"),
    ];

    // One push, two clients on two connectors acknowledge, a third never connects and its
    // copy expires; a second push is recalled before anyone connects.
    let first = pushed(&api1.api, &["wh-a", "wh-b", "wh-gone"], 4).await;
    let recalled = pushed(&api2.api, &["wh-never"], 3600).await;
    for (node, client) in [(&conns[0], "wh-a"), (&conns[1], "wh-b")] {
        assert_eq!(node.receive_and_ack(client)["data"], json!({"n": 1}));
    }
    let url = format!("{}/push/{recalled}", api2.api);
    assert_eq!(herald_it::http("DELETE", &url, None, &[]).await.status, 200);
    let want: BTreeSet<_> = [
        fact("delivered", &first, "wh-a"),
        fact("acked", &first, "wh-a"),
        fact("delivered", &first, "wh-b"),
        fact("acked", &first, "wh-b"),
        fact("expired", &first, "wh-gone"),
        fact("recalled", &recalled, "wh-never"),
    ]
    .into();
    assert!(
        poll_until(WAIT, async || facts(&receiver) == want).await,
        "got {:?}, want {want:?}",
        facts(&receiver)
    );

    // The receiver fails for a while; an API node is killed and another started meanwhile:
    // once the receiver answers 2xx again, the events of the receipts made meanwhile arrive.
    receiver.status.store(500, Ordering::SeqCst);
    let failed_before = receiver.got().len();
    let second = pushed(&api2.api, &["wh-c"], 3600).await;
    assert_eq!(conns[1].receive_and_ack("wh-c")["data"], json!({"n": 1}));
    assert!(
        poll_until(WAIT, async || receiver.got().len() > failed_before).await,
        "the receiver is tried while it fails"
    );
    api1.kill9();
    let _api3 = nodes.start("api", "api-3");
    receiver.status.store(200, Ordering::SeqCst);
    let mut want = want;
    want.insert(fact("delivered", &second, "wh-c"));
    want.insert(fact("acked", &second, "wh-c"));
    assert!(
        poll_until(WAIT, async || facts(&receiver) == want).await,
        "got {:?}, want {want:?}",
        facts(&receiver)
    );
    for g in receiver.got() {
        assert_signed(&g);
    }
    drop(api2);
    Ok(())
}
