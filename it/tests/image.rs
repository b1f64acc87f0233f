//! Herald's container image, run as an operator runs it: `docker run` with both ports
//! published, a push through the REST port received by the official Socket.IO client through
//! the Socket.IO port, the image's HEALTHCHECK, `docker stop` within its grace period, and the
//! queues kept in the `/data` volume for a new container.
//!
//! The image is built by `scripts/images/build-herald.sh` from the tested binary (or taken
//! from `HERALD_IT_HERALD_IMAGE`), see `it/src/docker.rs`.

use std::time::Duration;

use herald_it::{
    Client, Container, Lib, Volume, WAIT, herald_image, hmac_auth, push_keyed, unix_secs,
};
use serde_json::{Value, json};

const KEY: &str = "image-test-key";
const SECRET: &str = "image-test-secret";

/// `docker run` of the image on `volume`, both ports published on loopback.
fn run(volume: &Volume) -> Container {
    let image = herald_image();
    let data = format!("{}:/data", volume.name);
    Container::run(
        "image",
        &[
            "-p",
            "127.0.0.1::3000",
            "-p",
            "127.0.0.1::3001",
            "-v",
            &data,
            "-e",
            &format!("HERALD_API_KEY={KEY}"),
            "-e",
            &format!("HERALD_SECRET={SECRET}"),
            // The image checks every 10 s; the test need not wait that long.
            "--health-interval",
            "500ms",
            &image,
        ],
    )
    .expect("docker run")
}

/// The REST and Socket.IO URLs of a started container, once `/healthy` answers 200.
fn urls(c: &Container) -> (String, String) {
    let api = format!("http://127.0.0.1:{}", c.host_port(3000).expect("REST port"));
    let socket = format!(
        "http://127.0.0.1:{}",
        c.host_port(3001).expect("Socket.IO port")
    );
    assert!(
        herald_it::wait_healthy(&api, WAIT),
        "the container's /healthy never answered 200; its log:\n{}",
        c.logs()
    );
    (api, socket)
}

async fn push(api: &str, to: &str, data: Value) {
    let body = json!({ "send_id": "image-test", "recv_id": [to], "data": data });
    let a = push_keyed(api, KEY, body).await;
    assert_eq!(a.status, 200, "push answered {a:?}");
}

fn client(socket: &str, who: &str) -> Client {
    let mut c = Client::start(
        Lib::Node,
        json!({ "url": socket, "auth": hmac_auth(SECRET, who, 0, unix_secs()) }),
    );
    c.wait_for("connect");
    c
}

fn data_of(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["data"].clone()).collect()
}

/// `herald --version`: the package version and the commit HEAD names (`unknown` without git),
/// from the binary and from the image built of it.
#[test]
fn version_names_the_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(herald_it::workspace_dir())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    // As apps/herald/build.rs decides: git's commit only in Herald's own work tree.
    let ours = git(&["rev-parse", "--show-toplevel"]).is_some_and(|top| {
        std::path::Path::new(&top)
            .join("apps/herald/build.rs")
            .exists()
    });
    let commit = ours
        .then(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .flatten()
        .unwrap_or_else(|| "unknown".to_owned());
    let expected = format!("herald {} (commit {commit})", env!("CARGO_PKG_VERSION"));
    let out = std::process::Command::new(herald_it::herald_bin())
        .arg("--version")
        .output()
        .expect("herald --version");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected,
        "(after a commit, `cargo build -p herald` first)"
    );
    let image = herald_image();
    let shown = herald_it::docker(&["run", "--rm", &image, "--version"]).expect("docker run");
    assert_eq!(shown, expected, "the image's binary");
}

#[async_std::test]
async fn the_image_serves_stops_cleanly_and_keeps_its_queues_in_the_volume() {
    let volume = Volume::create("data").expect("docker volume create");
    let first = run(&volume);
    let (api, socket) = urls(&first);

    // The node runs as the image's non-root user.
    let uid = herald_it::docker(&[
        "exec",
        &first.name,
        "/bin/bash",
        "-c",
        "while read -r k v _; do if [[ $k == Uid: ]]; then echo $v; fi; done </proc/1/status",
    ])
    .expect("docker exec");
    assert_eq!(uid, "10001", "herald (PID 1) runs as uid {uid}");

    // Online delivery: REST port in, Socket.IO port out.
    let mut online = client(&socket, "u-online");
    push(&api, "u-online", json!({ "n": 1 })).await;
    assert_eq!(data_of(&online.messages(1)), [json!({ "n": 1 })]);

    // A backlog for a client that is not connected, to be found by the next container.
    push(&api, "u-later", json!({ "n": 2 })).await;
    push(&api, "u-later", json!({ "n": 3 })).await;

    // The image's HEALTHCHECK (GET /healthy through bash) reports healthy.
    assert!(
        herald_it::wait_until(WAIT, || first
            .inspect("{{.State.Health.Status}}")
            .is_ok_and(|s| s == "healthy")),
        "health status {:?}; log:\n{}",
        first.inspect("{{json .State.Health}}"),
        first.logs()
    );

    // `docker stop`: SIGTERM, and herald exits 0 on its own (a kill after the grace period
    // would be exit code 137); the connected client is told to go.
    herald_it::docker(&["stop", "--time", "10", &first.name]).expect("docker stop");
    let state = first
        .inspect("{{.State.ExitCode}} {{.State.OOMKilled}}")
        .unwrap();
    assert_eq!(state, "0 false", "herald's exit; log:\n{}", first.logs());
    online.wait_for("disconnect");
    drop(first);

    // A new container on the same volume: the backlog is there, in order, and the acknowledged
    // message is not delivered again.
    let second = run(&volume);
    let (_api, socket) = urls(&second);
    let mut later = client(&socket, "u-later");
    assert_eq!(
        data_of(&later.messages(2)),
        [json!({ "n": 2 }), json!({ "n": 3 })]
    );
    let mut again = client(&socket, "u-online");
    let extra: Vec<Value> = again
        .drain_for(Duration::from_millis(500))
        .into_iter()
        .filter(|e| e["ev"] == "message")
        .collect();
    assert!(
        extra.is_empty(),
        "acknowledged message delivered again: {extra:?}"
    );
}
