//! The compose cluster of `deploy/compose.yaml`, brought up with the local images: Redis, a
//! MongoDB-wire server, one API node and two connectors behind HAProxy. One push through the
//! API node reaches clients on both connectors (cross-node delivery); one connector is stopped
//! (`compose stop`, SIGTERM) and its clients reconnect through the balancer to the other and
//! get their backlog. The project is taken down with its volumes at the end.
//!
//! Images: `HERALD_IT_HERALD_IMAGE` (or built from the tested binary), `HERALD_IT_REDIS_IMAGE`,
//! `HERALD_IT_MONGO_IMAGE`, `HERALD_IT_LB_IMAGE`; see `it/src/docker.rs` and `it/src/lib.rs`.

use std::time::{Duration, Instant};

use herald_it::{
    Client, Compose, DEFAULT_MONGO_IMAGE, DEFAULT_REDIS_IMAGE, Lib, MONGO_IMAGE_VAR,
    REDIS_IMAGE_VAR, WAIT, free_port, herald_image, hmac_auth, image_from_env, lb_image,
    push_keyed, unix_secs, wait_healthy,
};
use serde_json::{Value, json};

const KEY: &str = "compose-test-key";
const SECRET: &str = "compose-test-secret";

/// Clients connected through the balancer: round robin puts half on each connector.
const CLIENTS: usize = 4;

async fn push(api: &str, to: &[String], data: Value) {
    let body = json!({ "send_id": "compose-test", "recv_id": to, "data": data });
    let a = push_keyed(api, KEY, body).await;
    assert_eq!(a.status, 200, "push answered {a:?}");
}

/// What one client saw: its data values in order, and how many times it (re)connected.
#[derive(Default, Debug)]
struct Seen {
    data: Vec<Value>,
    connects: usize,
    disconnects: usize,
}

/// Reads every client's events until `done` holds for all of them (or fails after `WAIT`).
fn watch(clients: &mut [Client], seen: &mut [Seen], done: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !seen.iter().all(&done) {
        assert!(Instant::now() < deadline, "clients saw {seen:#?}");
        for (c, s) in clients.iter_mut().zip(seen.iter_mut()) {
            for e in c.drain_for(Duration::from_millis(20)) {
                match e["ev"].as_str() {
                    Some("connect") => s.connects += 1,
                    Some("disconnect") => s.disconnects += 1,
                    Some("message") => s.data.extend(
                        e["batch"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|m| m["data"].clone()),
                    ),
                    _ => {}
                }
            }
        }
    }
}

#[async_std::test]
async fn the_compose_cluster_delivers_across_nodes_and_survives_a_connector_stop() {
    let herald = herald_image();
    let redis = image_from_env(REDIS_IMAGE_VAR, DEFAULT_REDIS_IMAGE);
    let mongo = image_from_env(MONGO_IMAGE_VAR, DEFAULT_MONGO_IMAGE);
    let lb = lb_image();
    let api_port = free_port().unwrap().to_string();
    let socket_port = free_port().unwrap().to_string();
    let cluster = Compose::new(
        "compose",
        &[
            ("HERALD_IMAGE", &herald),
            ("REDIS_IMAGE", &redis),
            ("MONGO_IMAGE", &mongo),
            ("LB_IMAGE", &lb),
            ("HERALD_SECRET", SECRET),
            ("HERALD_API_KEY", KEY),
            ("API_PORT", &api_port),
            ("SOCKET_BIND", "127.0.0.1"),
            ("SOCKET_PORT", &socket_port),
        ],
    );
    cluster.run(&["up", "-d"]).expect("compose up");
    let api = format!(
        "http://127.0.0.1:{}",
        cluster.host_port("api", 3000).unwrap()
    );
    let socket = format!(
        "http://127.0.0.1:{}",
        cluster.host_port("lb", 3001).unwrap()
    );
    // The API node, and a connector through the balancer (its /healthy on the Socket.IO port).
    assert!(
        wait_healthy(&api, WAIT) && wait_healthy(&socket, WAIT),
        "the cluster did not become healthy:\n{}",
        cluster.logs()
    );
    // Both connectors in the rotation before clients arrive: the balancer's cookie names
    // the connector that answered, and round robin alternates.
    let both = herald_it::wait_until(WAIT, || {
        let nodes: std::collections::BTreeSet<String> = (0..2)
            .filter_map(|_| herald_it::curl(&[&format!("{socket}/healthy")]).header("set-cookie"))
            .collect();
        nodes.len() == 2
    });
    assert!(both, "{}", cluster.logs());

    // Clients over polling then WebSocket (the balancer's cookie keeps a session's polling
    // requests on one connector), reconnecting by themselves, acknowledging by hand.
    let ids: Vec<String> = (0..CLIENTS).map(|i| format!("cc-{i}")).collect();
    let mut clients: Vec<Client> = ids
        .iter()
        .map(|id| {
            Client::start(
                Lib::Node,
                json!({
                    "url": socket,
                    "auth": hmac_auth(SECRET, id, 0, unix_secs()),
                    "transports": ["polling", "websocket"],
                    "withCredentials": true,
                    "reconnection": true,
                    "ackPolicy": "manual",
                }),
            )
        })
        .collect();
    let mut seen: Vec<Seen> = (0..CLIENTS).map(|_| Seen::default()).collect();
    watch(&mut clients, &mut seen, |s| s.connects == 1);

    // Cross-node delivery: one push through the API node reaches every client.
    push(&api, &ids, json!({ "n": 1 })).await;
    watch(&mut clients, &mut seen, |s| s.data.len() == 1);
    for c in &mut clients {
        c.send(json!({ "cmd": "ack" }));
        c.wait_for("acked");
    }
    // A second message, received and left unacknowledged: the backlog a moved client must
    // get again.
    push(&api, &ids, json!({ "n": 2 })).await;
    watch(&mut clients, &mut seen, |s| s.data.len() == 2);

    // Stop connector-1: its clients are told to go, reconnect through the balancer to
    // connector-2, and get their unacknowledged message again; a push during the move
    // reaches everyone.
    cluster
        .run(&["stop", "--timeout", "10", "connector-1"])
        .expect("compose stop connector-1");
    push(&api, &ids, json!({ "n": 3 })).await;
    watch(&mut clients, &mut seen, |s| {
        s.data.last() == Some(&json!({ "n": 3 })) && s.connects == s.disconnects + 1
    });
    let moved: Vec<&Seen> = seen.iter().filter(|s| s.disconnects > 0).collect();
    assert!(
        !moved.is_empty() && moved.len() < CLIENTS,
        "round robin should have put clients on both connectors: {seen:#?}"
    );
    for s in &seen {
        let first = [json!({ "n": 1 }), json!({ "n": 2 })];
        assert_eq!(s.data[..2], first, "{seen:#?}");
        if s.disconnects > 0 {
            // n = 2 again (never acknowledged), then n = 3 (pushed while it moved).
            assert!(
                s.data[2..].contains(&json!({ "n": 2 })),
                "a moved client did not get its backlog again: {seen:#?}"
            );
        } else {
            assert_eq!(s.data[2..], [json!({ "n": 3 })], "{seen:#?}");
        }
    }
    // The stopped connector exited by itself (0), not killed at the end of its grace period.
    let ps = cluster
        .run(&["ps", "-a", "connector-1"])
        .expect("compose ps");
    let ps = ps.to_lowercase();
    assert!(ps.contains("exit 0") || ps.contains("exited (0)"), "{ps}");

    // Down, volumes included; a second is enough: nothing is left to keep (and SecantusDB, as
    // PID 1, ignores SIGTERM).
    cluster
        .run(&["down", "-v", "--timeout", "1"])
        .expect("compose down");
}
