//! A cluster end to end: real `herald` processes — two connector nodes (A and B) and one API
//! node — sharing a MongoDB-wire server and Redis in containers (a 3-master Redis Cluster in
//! the last scenario), driven by the official clients (`socket.io-client` from npm,
//! `python-socketio` from PyPI) and real HTTP.
//!
//! Every scenario ends with an [`Audit`]: each message whose push was answered 200 was
//! delivered to every slot that listened, no message was delivered that was not pushed, and
//! within each session the ids only grow, in push order. Waits poll for a condition (bounded
//! by [`WAIT`] or a stated limit); nothing sleeps to let something happen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_it::{
    Client, ClusterNodes, Herald, Lib, Mongo, Redis, RedisCluster, RedisProcess, RedisSentinel,
    WAIT, http, push,
};
use serde_json::{Value, json};

/// Two connectors and an API node on one store and one broker.
struct Cluster {
    /// The REST node (`--role api`).
    api: Herald,
    /// Connector A.
    a: Herald,
    /// Connector B.
    b: Herald,
    /// Keeps the nodes' data directories (unused with MongoDB, but each node gets its own).
    _nodes: ClusterNodes,
}

impl Cluster {
    fn start(mongo: &str, redis: &str) -> Cluster {
        Cluster::start_with(mongo, redis, None)
    }

    /// Like [`Cluster::start`], every node reading `config` (TOML) as its configuration file.
    fn start_with(mongo: &str, redis: &str, config: Option<&str>) -> Cluster {
        let mut nodes = ClusterNodes::new(mongo, redis, config);
        Cluster {
            api: nodes.start("api", "api-1"),
            a: nodes.start("connector", "conn-a"),
            b: nodes.start("connector", "conn-b"),
            _nodes: nodes,
        }
    }
}

/// A client session of `client` on `slot`, through the connector `node`: socket.io 4.x over
/// polling with upgrade, socket.io 2.x (Engine.IO v3, credentials in the query) over polling
/// with upgrade, or python-socketio over WebSocket.
fn connect(lib: Lib, node: &Herald, client: &str, slot: u8, manual_ack: bool) -> Client {
    let mut options = json!({
        "url": node.connector,
        "transports": match lib {
            Lib::Node | Lib::NodeV2 | Lib::NodeV1 => json!(["polling", "websocket"]),
            Lib::Python => json!(["websocket"]),
        },
        "ackPolicy": if manual_ack { "manual" } else { "auto" },
    });
    let credentials = if matches!(lib, Lib::NodeV2 | Lib::NodeV1) {
        "query"
    } else {
        "auth"
    };
    options[credentials] = node.auth(client, slot);
    let mut c = Client::start(lib, options);
    c.wait_for("connect");
    c
}

/// What was pushed and answered 200, and what each session received.
#[derive(Default)]
struct Audit {
    /// Per client: the `seq` of every push answered 200 for it, in push order.
    sent: BTreeMap<String, Vec<u64>>,
    /// The next `seq` to push.
    next: u64,
}

impl Audit {
    /// Pushes one message carrying a fresh `seq` to `to` through `api`; records it for every
    /// recipient the answer says it was stored for. Returns the HTTP status.
    async fn push(&mut self, api: &str, to: &[&str]) -> u16 {
        let seq = self.next;
        self.next += 1;
        let answer = push(
            api,
            json!({ "send_id": "it", "channel": ["audit"], "recv_id": to, "data": { "seq": seq } }),
        )
        .await;
        if answer.status == 200 {
            let failed: BTreeSet<&str> = answer.body["failed"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for client in to.iter().filter(|c| !failed.contains(*c)) {
                self.sent.entry(client.to_string()).or_default().push(seq);
            }
        }
        answer.status
    }

    /// Pushes `n` messages to `to`, each of which must be answered 200.
    async fn push_ok(&mut self, api: &str, to: &[&str], n: usize) {
        for _ in 0..n {
            let status = self.push(api, to).await;
            assert_eq!(status, 200, "push to {to:?}");
        }
    }

    /// The seqs pushed to `client` so far.
    fn sent_to(&self, client: &str) -> Vec<u64> {
        self.sent.get(client).cloned().unwrap_or_default()
    }

    /// Waits until the sessions of one `(client, slot)` — in the order they ran — have received
    /// every message pushed to `client`, then checks the audit on what they received.
    fn settle(&self, client: &str, sessions: &mut [&mut Client]) {
        let expected: BTreeSet<u64> = self.sent_to(client).into_iter().collect();
        let last = sessions.len() - 1;
        let deadline = Instant::now() + WAIT;
        loop {
            let got: BTreeSet<u64> = sessions
                .iter()
                .flat_map(|s| delivered(s))
                .map(|(_, seq)| seq)
                .collect();
            if expected.is_subset(&got) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{client}: missing {:?} after {WAIT:?}",
                expected.difference(&got).collect::<Vec<_>>()
            );
            // Only the newest session is still receiving.
            sessions[last].wait_for("message");
        }
        audit(client, &self.sent_to(client), sessions);
    }
}

/// `(id, seq)` of every message a session received, in arrival order.
fn delivered(session: &Client) -> Vec<(u64, u64)> {
    session
        .seen
        .iter()
        .filter(|e| e["ev"] == "message")
        .flat_map(|e| e["batch"].as_array().cloned().unwrap_or_default())
        .map(|m| {
            (
                m["id"].as_u64().expect("a message id"),
                m["data"]["seq"].as_u64().expect("the audit's seq"),
            )
        })
        .collect()
}

/// The audit of one `(client, slot)`: `sent` is what was answered 200, in push order; the
/// sessions ran one after the other.
fn audit(client: &str, sent: &[u64], sessions: &[&mut Client]) {
    let mut by_id: BTreeMap<u64, u64> = BTreeMap::new();
    for (n, session) in sessions.iter().enumerate() {
        let got = delivered(session);
        for pair in got.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{client}: session {n} received id {} after id {}: {got:?}",
                pair[1].0,
                pair[0].0
            );
        }
        for (id, seq) in got {
            let before = by_id.insert(id, seq);
            assert!(
                before.is_none() || before == Some(seq),
                "{client}: id {id} carried {before:?} and {seq}"
            );
        }
    }
    // Ordered by id, the messages are exactly what was pushed, in push order: none lost,
    // none invented, none reordered.
    let in_id_order: Vec<u64> = by_id.values().copied().collect();
    assert_eq!(in_id_order, sent, "{client}: delivered (by id) vs pushed");
}

/// Polls `GET <api><path>` until it answers `status`, for at most `limit`.
async fn until_status(api: &str, path: &str, status: u16, limit: Duration) {
    let answers = herald_it::poll_until(limit, async || {
        http("GET", &format!("{api}{path}"), None, &[]).await.status == status
    });
    assert!(
        answers.await,
        "GET {path} does not answer {status} after {limit:?}"
    );
}

/// Polls `GET /watch/<client>` until the oldest message not acked by slot 0 is `id` (`None`:
/// none), i.e. until the acks before it are in the store.
async fn until_oldest_unacked(api: &str, client: &str, id: Option<u64>) {
    let reached = herald_it::poll_until(WAIT, async || {
        let url = format!("{api}/watch/{client}?channel=0&timeout=1");
        let a = http("GET", &url, None, &[]).await;
        a.status == 200 && a.body["message"]["id"].as_u64() == id
    });
    assert!(
        reached.await,
        "{client}: the oldest unacked never became {id:?}"
    );
}

/// The client's newer login on connector B replaces its session `older` (on A): `older` is
/// kicked, and what is pushed next reaches the newer one.
async fn a_newer_login_on_b_replaces(
    cl: &Cluster,
    audit: &mut Audit,
    lib: Lib,
    client: &str,
    older: &mut Client,
) {
    let mut newer = connect(lib, &cl.b, client, 0, false);
    let kicked = older.wait_for("kicked");
    assert_eq!(kicked["data"], json!({"reason": "replaced"}));
    audit.push_ok(&cl.api.api, &[client], 2).await;
    audit.settle(client, &mut [older, &mut newer]);
}

/// How many keys the Redis server on `port` holds (`DBSIZE`; 0 when it does not answer).
fn keys_on(port: u16) -> u64 {
    std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "dbsize"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// A task that keeps pushing to the same recipients (paced, at most 2,000 pushes) until
/// told to stop, auditing every answer.
struct Pusher {
    /// Set to stop.
    stop: Arc<AtomicBool>,
    /// Pushes answered so far (any status).
    answered: Arc<AtomicUsize>,
    /// The task; it returns the audit and the count of each status.
    task: async_std::task::JoinHandle<(Audit, BTreeMap<u16, usize>)>,
}

impl Pusher {
    fn start(api: &str, to: &[&str]) -> Pusher {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let to: Vec<String> = to.iter().map(|c| c.to_string()).collect();
        let task = {
            let (stop, answered, api) = (stop.clone(), answered.clone(), api.to_string());
            async_std::task::spawn(async move {
                let to: Vec<&str> = to.iter().map(String::as_str).collect();
                let mut audit = Audit::default();
                let mut statuses = BTreeMap::<u16, usize>::new();
                while !stop.load(Ordering::Relaxed) && audit.next < 2_000 {
                    let status = audit.push(&api, &to).await;
                    *statuses.entry(status).or_default() += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                    async_std::task::sleep(Duration::from_millis(10)).await;
                }
                (audit, statuses)
            })
        };
        Pusher {
            stop,
            answered,
            task,
        }
    }

    /// Waits until `n` more pushes were answered (from now).
    async fn until_answered(&self, n: usize) {
        let target = self.answered.load(Ordering::Relaxed) + n;
        let answered = herald_it::poll_until(WAIT, async || {
            self.answered.load(Ordering::Relaxed) >= target
        });
        assert!(answered.await, "the pusher is stuck");
    }

    /// Stops it and checks that every push was answered 200 (the store took them all,
    /// whatever happened to the broker); returns its audit.
    async fn finish(self) -> Audit {
        self.stop.store(true, Ordering::Relaxed);
        let (audit, statuses) = self.task.await;
        assert_eq!(
            statuses.keys().copied().collect::<Vec<_>>(),
            vec![200],
            "{statuses:?}"
        );
        audit
    }
}

/// The value of the series `name` in `GET <api>/metrics` (0 when absent).
async fn metric(api: &str, name: &str) -> f64 {
    let a = http("GET", &format!("{api}/metrics"), None, &[]).await;
    let text = a
        .body
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| a.body.to_string());
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split('{').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Resident memory of a process, KiB (`VmRSS` in `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// How much a node's resident memory may grow during a Redis outage under the tests' load:
/// the notification queue is bounded (16 MiB by default, far less in these tests), so growth
/// beyond it would be a pile-up.
const OUTAGE_RSS_GROWTH_KIB: u64 = 64 * 1024;

/// Asserts that no node grew by more than [`OUTAGE_RSS_GROWTH_KIB`] since `before`.
fn assert_rss_bounded(cl: &Cluster, before: &[u64; 3]) {
    for (node, was) in [&cl.api, &cl.a, &cl.b].iter().zip(before) {
        let now = rss_kib(node.pid());
        assert!(
            now <= was + OUTAGE_RSS_GROWTH_KIB,
            "RSS grew from {was} KiB to {now} KiB during the outage"
        );
    }
}

fn rss_all(cl: &Cluster) -> [u64; 3] {
    [
        rss_kib(cl.api.pid()),
        rss_kib(cl.a.pid()),
        rss_kib(cl.b.pid()),
    ]
}

#[async_std::test]
async fn a_push_through_the_api_node_reaches_clients_on_either_connector() -> anyhow::Result<()> {
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let cl = Cluster::start(&mongo.url(), &redis.url());
    let mut on_a = connect(Lib::Node, &cl.a, "alice", 0, false);
    let mut on_b = connect(Lib::Python, &cl.b, "bob", 0, false);
    let mut audit = Audit::default();
    audit.push_ok(&cl.api.api, &["alice", "bob"], 5).await;
    audit.push_ok(&cl.api.api, &["bob"], 2).await;
    audit.settle("alice", &mut [&mut on_a]);
    audit.settle("bob", &mut [&mut on_b]);
    assert!(cl.a.logged("herald started: role=connector node=conn-a"));
    Ok(())
}

#[async_std::test]
async fn a_client_moving_from_a_to_b_gets_its_backlog_there() -> anyhow::Result<()> {
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let cl = Cluster::start(&mongo.url(), &redis.url());
    let mut audit = Audit::default();
    let mut first = connect(Lib::Node, &cl.a, "mover", 0, false);
    audit.push_ok(&cl.api.api, &["mover"], 3).await;
    assert_eq!(first.messages(3).len(), 3);
    // Its acks are in the store once the oldest unacked is none.
    until_oldest_unacked(&cl.api.api, "mover", None).await;
    first.send(json!({"cmd": "disconnect"}));
    first.wait_for("disconnect");
    // Offline: the backlog grows.
    audit.push_ok(&cl.api.api, &["mover"], 5).await;
    let mut second = connect(Lib::Python, &cl.b, "mover", 0, false);
    let backlog = second.messages(5);
    let ids: Vec<u64> = backlog.iter().filter_map(|m| m["id"].as_u64()).collect();
    assert_eq!(
        ids,
        vec![4, 5, 6, 7, 8],
        "the backlog on B: acked ones never again"
    );
    audit.push_ok(&cl.api.api, &["mover"], 2).await;
    audit.settle("mover", &mut [&mut first, &mut second]);
    Ok(())
}

#[async_std::test]
async fn a_newer_login_on_b_kicks_the_older_on_a() -> anyhow::Result<()> {
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let cl = Cluster::start(&mongo.url(), &redis.url());
    let mut audit = Audit::default();
    let mut old = connect(Lib::Node, &cl.a, "kim", 0, false);
    let mut other_slot = connect(Lib::Node, &cl.a, "kim", 1, false);
    audit.push_ok(&cl.api.api, &["kim"], 2).await;
    old.messages(2);
    until_oldest_unacked(&cl.api.api, "kim", None).await;
    let mut new = connect(Lib::Python, &cl.b, "kim", 0, false);
    let kicked = old.wait_for("kicked");
    assert_eq!(kicked["data"], json!({"reason": "replaced"}));
    old.wait_for("disconnect");
    audit.push_ok(&cl.api.api, &["kim"], 3).await;
    audit.settle("kim", &mut [&mut old, &mut new]);
    // The other slot is another session: not kicked, it got everything.
    audit.settle("kim", &mut [&mut other_slot]);
    assert!(!other_slot.seen.iter().any(|e| e["ev"] == "kicked"));
    // The old one received nothing after its kick.
    let after_kick = old
        .seen
        .iter()
        .skip_while(|e| e["ev"] != "kicked")
        .filter(|e| e["ev"] == "message")
        .count();
    assert_eq!(after_kick, 0);
    Ok(())
}

#[async_std::test]
async fn killing_a_connector_with_unacked_messages_loses_none() -> anyhow::Result<()> {
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let mut cl = Cluster::start(&mongo.url(), &redis.url());
    let mut audit = Audit::default();
    // Manual acks: it holds six messages and acknowledges none.
    let mut on_a = connect(Lib::Node, &cl.a, "holder", 0, true);
    audit.push_ok(&cl.api.api, &["holder"], 6).await;
    assert_eq!(on_a.messages(6).len(), 6);
    cl.a.kill9();
    on_a.wait_for("disconnect");
    let mut on_b = connect(Lib::Python, &cl.b, "holder", 0, false);
    let again: Vec<u64> = on_b
        .messages(6)
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(
        again,
        (1..=6).collect::<Vec<_>>(),
        "all six, redelivered on B"
    );
    audit.push_ok(&cl.api.api, &["holder"], 2).await;
    audit.settle("holder", &mut [&mut on_a, &mut on_b]);
    Ok(())
}

#[async_std::test]
async fn delivery_resumes_after_redis_restarts_under_load() -> anyhow::Result<()> {
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let cl = Cluster::start(&mongo.url(), &redis.url());
    let mut x = connect(Lib::Node, &cl.a, "x", 0, false);
    let mut y = connect(Lib::Python, &cl.b, "y", 0, false);

    let pusher = Pusher::start(&cl.api.api, &["x", "y"]);
    pusher.until_answered(20).await;
    redis.stop().await?;
    pusher.until_answered(10).await;
    redis.start_again().await?;
    pusher.until_answered(20).await;
    // Redis is coordination only: the store took every push while it was down.
    let mut audit = pusher.finish().await;
    // Ten pushes were answered while Redis was stopped (`until_answered(10)` between the stop
    // and the start): the outage overlapped the pushes by construction. Whether their
    // notifications then waited in the bounded queue, failed or were dropped depends on
    // timing; every one of them must reach the clients (the audit below).
    audit.settle("x", &mut [&mut x]);
    audit.settle("y", &mut [&mut y]);
    assert!(audit.sent_to("x").len() >= 50);

    // The restarted Redis counts generations from zero again; the sessions renewed their
    // claims when their nodes resynced, so a newer login still replaces the older one.
    a_newer_login_on_b_replaces(&cl, &mut audit, Lib::Python, "x", &mut x).await;
    Ok(())
}

#[async_std::test]
async fn with_mongodb_stopped_pushes_answer_503_and_recovery_is_automatic() -> anyhow::Result<()> {
    let (redis, mongo) = (Redis::start().await?, Mongo::start_durable().await?);
    let cl = Cluster::start(&mongo.url(), &redis.url());
    let mut audit = Audit::default();
    let mut online = connect(Lib::Node, &cl.a, "m1", 0, false);
    audit.push_ok(&cl.api.api, &["m1", "late"], 3).await;
    online.messages(3);
    until_oldest_unacked(&cl.api.api, "m1", None).await;

    mongo.stop().await?;
    let status = audit.push(&cl.api.api, &["m1"]).await;
    assert_eq!(status, 503, "a push the store cannot take");
    until_status(&cl.api.api, "/healthy", 503, WAIT).await;
    // A session that starts during the outage waits for its backlog.
    let mut late = connect(Lib::Python, &cl.b, "late", 0, false);

    mongo.start_again().await?;
    until_status(&cl.api.api, "/healthy", 200, Duration::from_secs(60)).await;
    audit.push_ok(&cl.api.api, &["m1", "late"], 3).await;
    audit.settle("m1", &mut [&mut online]);
    audit.settle("late", &mut [&mut late]);
    Ok(())
}

#[async_std::test]
async fn a_redis_cluster_coordinates_clients_spread_across_connectors() -> anyhow::Result<()> {
    let redis = RedisCluster::start()?;
    let mongo = Mongo::start().await?;
    let cl = Cluster::start(&mongo.url(), &redis.url());
    let names: Vec<String> = (0..9).map(|i| format!("spread{i}")).collect();
    let mut sessions: Vec<Client> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let node = if i % 2 == 0 { &cl.a } else { &cl.b };
            let lib = [Lib::Python, Lib::Node, Lib::NodeV2, Lib::NodeV1][i % 4];
            connect(lib, node, name, 0, false)
        })
        .collect();
    let to: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut audit = Audit::default();
    audit.push_ok(&cl.api.api, &to, 4).await;
    for (name, session) in names.iter().zip(sessions.iter_mut()) {
        audit.settle(name, &mut [session]);
    }
    // Their keys live on every master (hash tags spread the clients over the slots).
    for port in redis.ports() {
        assert!(
            keys_on(*port) > 0,
            "master {port} holds no key of these clients"
        );
    }
    // A kick across nodes, through the cluster: spread0 is on A, its newer login on B.
    a_newer_login_on_b_replaces(&cl, &mut audit, Lib::Node, "spread0", &mut sessions[0]).await;
    Ok(())
}

/// Starts `it/clients/many.js` on `connector` for `clients` (commit mode), expecting `expect`
/// messages each; returns once every client got its first (empty) batch, with the line
/// reader of its final report.
fn many(
    connector: &Herald,
    clients: &[String],
    expect: usize,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let auths: Vec<Value> = clients
        .iter()
        .map(|c| {
            let mut a = connector.auth(c, 0);
            a["mode"] = json!("commit");
            a
        })
        .collect();
    let mut child = std::process::Command::new("node")
        .arg(herald_it::clients_dir().join("many.js"))
        .arg(json!({"url": connector.connector, "auths": auths, "expect": expect}).to_string())
        .env("NODE_PATH", herald_it::test_env().join("node_modules"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn many.js");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let ready = lines.next().expect("a line").expect("readable");
    assert_eq!(ready, r#"{"ready":true}"#, "{clients:?}");
    (child, lines)
}

#[async_std::test]
async fn two_api_nodes_pushing_to_the_same_clients_keep_ids_unique_and_ordered()
-> anyhow::Result<()> {
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let cl = Cluster::start(&mongo.url(), &redis.url());
    let mut more = ClusterNodes::new(&mongo.url(), &redis.url(), None);
    let api2 = more.start("api", "api-2");
    let names: Vec<String> = (0..50).map(|i| format!("shared{i}")).collect();
    const PER_NODE: usize = 10;
    let (on_a, on_b) = names.split_at(25);
    let mut runs = [
        many(&cl.a, on_a, 2 * PER_NODE),
        many(&cl.b, on_b, 2 * PER_NODE),
    ];
    let to: Vec<&str> = names.iter().map(String::as_str).collect();
    // Both API nodes at once, each with all its pushes in flight together.
    let node_pushes = |api: &str, node: u64| {
        let (api, to) = (api.to_owned(), to.clone());
        futures::future::join_all((0..PER_NODE as u64).map(move |k| {
            let (api, to) = (api.clone(), to.clone());
            async move {
                let seq = node * 100 + k;
                let body = json!({"send_id": "it", "recv_id": to, "data": {"seq": seq}});
                push(&api, body).await
            }
        }))
    };
    let (one, two) =
        futures::future::join(node_pushes(&cl.api.api, 1), node_pushes(&api2.api, 2)).await;
    for answer in one.iter().chain(&two) {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["send"], json!(50), "{}", answer.body);
    }
    for (child, lines) in &mut runs {
        let report: Value = serde_json::from_str(&lines.next().expect("a report")?)?;
        assert!(child.wait()?.success(), "{report}");
        for (client, ids) in report["received"].as_object().expect("received") {
            let ids: Vec<u64> = ids
                .as_array()
                .expect("ids")
                .iter()
                .map(|i| i.as_u64().expect("an id"))
                .collect();
            assert_eq!(ids.len(), 2 * PER_NODE, "{client}: {ids:?}");
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "{client}: ids in order, none twice: {ids:?}"
            );
        }
    }
    Ok(())
}

#[async_std::test]
async fn a_sentinel_failover_under_load_loses_nothing_and_the_newest_login_still_wins()
-> anyhow::Result<()> {
    let mut sentinel = RedisSentinel::start()?;
    let mongo = Mongo::start().await?;
    let cl = Cluster::start(&mongo.url(), &sentinel.url());
    let mut x = connect(Lib::Node, &cl.a, "x", 0, false);
    let mut y = connect(Lib::Python, &cl.b, "y", 0, false);

    let pusher = Pusher::start(&cl.api.api, &["x", "y"]);
    pusher.until_answered(20).await;
    let before = rss_all(&cl);
    let old = sentinel.master_port()?;
    sentinel.kill(old)?;
    // Pushes keep being answered while Sentinel has no master to offer.
    pusher.until_answered(10).await;
    sentinel.until_master_moves(old, Duration::from_secs(60))?;
    pusher.until_answered(20).await;
    assert_rss_bounded(&cl, &before);
    // The old master comes back, empty: Sentinel makes it a replica of the new one.
    sentinel.restart(old)?;
    sentinel.until_replica(old, Duration::from_secs(60))?;
    pusher.until_answered(20).await;
    let mut audit = pusher.finish().await;
    audit.settle("x", &mut [&mut x]);
    audit.settle("y", &mut [&mut y]);
    // The API node followed the master (connectors serve no /metrics: what they received
    // above shows that they followed it too).
    assert!(metric(&cl.api.api, "herald_broker_failovers_total").await >= 1.0);
    assert_eq!(metric(&cl.api.api, "herald_broker_up").await, 1.0);

    // Claims go to the new master: a newer login on B still replaces the older on A.
    a_newer_login_on_b_replaces(&cl, &mut audit, Lib::Python, "x", &mut x).await;
    Ok(())
}

#[async_std::test]
async fn a_redis_cluster_master_killed_under_load_its_replica_takes_over_and_nothing_is_lost()
-> anyhow::Result<()> {
    let mut redis = RedisCluster::start_with_replicas()?;
    let mongo = Mongo::start().await?;
    let cl = Cluster::start(&mongo.url(), &redis.url());
    let names: Vec<String> = (0..6).map(|i| format!("ha{i}")).collect();
    let mut sessions: Vec<Client> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let node = if i % 2 == 0 { &cl.a } else { &cl.b };
            connect([Lib::Node, Lib::Python][i % 2], node, name, 0, false)
        })
        .collect();
    let to: Vec<&str> = names.iter().map(String::as_str).collect();
    let pusher = Pusher::start(&cl.api.api, &to);
    pusher.until_answered(20).await;
    // Kill the master holding the most keys of these clients.
    let victim = redis
        .masters()?
        .into_iter()
        .max_by_key(|port| keys_on(*port))
        .expect("three masters");
    let before = rss_all(&cl);
    redis.kill(victim)?;
    pusher.until_answered(10).await;
    redis.until_failed_over(victim, Duration::from_secs(60))?;
    pusher.until_answered(30).await;
    assert_rss_bounded(&cl, &before);
    let audit = pusher.finish().await;
    for (name, session) in names.iter().zip(sessions.iter_mut()) {
        audit.settle(name, &mut [session]);
    }
    Ok(())
}

#[async_std::test]
async fn a_paused_redis_keeps_memory_bounded_counts_drops_and_delivery_resumes()
-> anyhow::Result<()> {
    let redis = RedisProcess::start()?;
    let mongo = Mongo::start().await?;
    // A small bound, so that the pause outlasts it many times over.
    let max_pending = 20;
    let cl = Cluster::start_with(
        &mongo.url(),
        &redis.url(),
        Some(&format!("[broker]\nmax_pending = {max_pending}\n")),
    );
    let mut x = connect(Lib::Node, &cl.a, "x", 0, false);
    let mut y = connect(Lib::Python, &cl.b, "y", 0, false);

    let pusher = Pusher::start(&cl.api.api, &["x", "y"]);
    pusher.until_answered(20).await;
    let before = rss_all(&cl);
    redis.signal("STOP")?;
    // Two notifications a push: the bound fills within the first few pushes of the pause.
    pusher.until_answered(4 * max_pending).await;
    let dropped = metric(&cl.api.api, "herald_broker_notifications_dropped_total").await;
    assert!(dropped > 0.0, "nothing dropped: the bound never filled");
    assert!(metric(&cl.api.api, "herald_broker_pending").await <= max_pending as f64);
    // The node is degraded, not down: it still takes pushes.
    let mut last = None;
    let degraded = herald_it::poll_until(WAIT, async || {
        let url = format!("{}/healthy?timeout=200", cl.api.api);
        let a = http("GET", &url, None, &[]).await;
        let degraded =
            a.status == 200 && a.body["degraded"].as_array().is_some_and(|d| !d.is_empty());
        last = Some((a.status, a.body));
        degraded
    });
    assert!(degraded.await, "/healthy: {last:?}");
    assert_rss_bounded(&cl, &before);
    redis.signal("CONT")?;
    pusher.until_answered(20).await;
    let audit = pusher.finish().await;
    // What was dropped reaches the clients through the resync every node makes.
    audit.settle("x", &mut [&mut x]);
    audit.settle("y", &mut [&mut y]);
    until_status(&cl.api.api, "/healthy", 200, WAIT).await;
    assert!(metric(&cl.api.api, "herald_broker_notifications_dropped_total").await >= dropped);
    Ok(())
}
