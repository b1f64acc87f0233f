//! Test harness for the adapters and the end-to-end tests: the real services they talk to,
//! the real `herald` binary, and the official Socket.IO clients.
//!
//! - [`Herald`] runs the `herald` binary on free loopback ports and reads its log;
//!   [`Client`] runs a real client (npm `socket.io-client` or PyPI `python-socketio`, see
//!   [`Lib`]) driven by JSON lines; [`http`] and [`push`] talk to the REST API.
//!   [`start_refused`] runs it when its start-up is expected to be refused.
//! - [`RawHttp`] writes exact bytes to a listener and reads answers as they were framed (the
//!   hostile-client suite); [`run_client`] runs the HTTP client scripts in `it/clients/`
//!   (`node-fetch`, `undici`, Python `requests`).
//! - [`curl`] and [`python`] (with `requests`) are the real HTTP clients of the hostile-client
//!   tests; [`workspace_bin`] and [`run_with_env`] run the other binaries as a user would.
//! - [`open_websocket`], [`text_frame`], [`closed_within`] and [`open_fds`] play clients that
//!   go silent on plain TCP and watch what the server keeps for them.
//! - [`wait_until`] and [`poll_until`] (with [`try_wait_until`] and [`try_poll_until`] for a
//!   condition that can fail) and [`exit_within`] are the one way tests wait: polling a
//!   condition up to a limit.
//! - [`AsyncStd`] is the runtime the adapters' tests hand them ([`herald_core::Runtime`]): the
//!   binary's own, from `herald-runtime`.
//! - [`Redis::start`] and [`Mongo::start`] run Redis and a MongoDB-wire server in containers
//!   (testcontainers) with their port mapped to `127.0.0.1`, and return loopback URLs.
//! - [`herald_image`], [`Container`], [`Volume`] and [`Compose`] run Herald's own container
//!   image and the compose cluster of `deploy/compose.yaml` through the `docker` and compose
//!   command-line tools (see the `docker` module for the images they take).
//! - [`Receiver`] is a webhook receiver (a tide server) that records what Herald POSTs;
//!   [`assert_signed`] checks a request's signature as the docs tell receivers to.
//! - [`RedisCluster::start`] runs a 3-master Redis Cluster of `redis-server` processes on free
//!   loopback ports; [`RedisSentinel::start`] a master, its replica and three sentinels.
//!
//! Images come from the environment:
//! - `HERALD_IT_REDIS_IMAGE` (default [`DEFAULT_REDIS_IMAGE`], built by
//!   `scripts/setup/50-images.sh`); the official `redis:7` works as well.
//! - `HERALD_IT_MONGO_IMAGE` (default [`DEFAULT_MONGO_IMAGE`], SecantusDB, same script); the
//!   official `mongo:8` works as well.
//!
//! The wait condition and the command are chosen by image ([`ImageKind`]). No registry is
//! reachable where CI runs, and testcontainers pulls any image it does not find: build the
//! local images first (`scripts/test.sh` does).
//!
//! Tests talk to loopback only: ports are published on `127.0.0.1`, never on every interface,
//! and container addresses on the Docker bridge are never used.

mod cluster;
mod containers;
mod docker;
mod nodes;
mod process;
mod raw_socket;
pub mod receipts;
mod refused;
mod sentinel;
mod tools;
mod wait;
mod webhooks;
mod wire;

pub use cluster::RedisCluster;
pub use containers::{ImageKind, Mongo, Redis, image_from_env};
pub use docker::{
    Compose, Container, DEFAULT_LB_IMAGE, Volume, docker, herald_image, lb_image, unique_name,
    wait_healthy, workspace_dir,
};
pub use herald_runtime::AsyncStd;
pub use nodes::ClusterNodes;
pub use process::{
    Answer, Client, Herald, Lib, SECRET, TempDir, WAIT, clients_dir, herald_bin, hmac_auth, http,
    metric, push, push_keyed, test_env, unix_secs,
};
pub use raw_socket::{closed_within, open_fds, open_websocket, text_frame};
pub use refused::{Stopped, start_refused};
pub use sentinel::{MASTER_NAME, RedisProcess, RedisSentinel};
pub use tools::{
    Raw, assert_no_secret, config_file, curl, curl_output, curl_with_input, output_text, python,
    run_with_env, workspace_bin,
};
pub use wait::{exit_within, poll_until, try_poll_until, try_wait_until, wait_until};
pub use webhooks::{Got, HOOK_SECRET, Receiver, assert_signed};
pub use wire::{RawAnswer, RawHttp, run_client};

/// The Redis image used when `HERALD_IT_REDIS_IMAGE` is not set.
pub const DEFAULT_REDIS_IMAGE: &str = "herald-test/redis:7.0";

/// The MongoDB-wire image used when `HERALD_IT_MONGO_IMAGE` is not set.
pub const DEFAULT_MONGO_IMAGE: &str = "herald-test/secantusdb:0.7.0b3";

/// The environment variable naming the Redis image.
pub const REDIS_IMAGE_VAR: &str = "HERALD_IT_REDIS_IMAGE";

/// The environment variable naming the MongoDB-wire image.
pub const MONGO_IMAGE_VAR: &str = "HERALD_IT_MONGO_IMAGE";

/// A free TCP port on `127.0.0.1` at the time of the call (the OS picks it; it is released at
/// once, so a racing process could take it: callers retry on a bind failure).
///
/// # Errors
/// When no port can be bound on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}
