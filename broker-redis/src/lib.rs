//! Broker over Redis: standalone, cluster, or a master watched by Sentinel (the redis crate).
//!
//! [`RedisBroker`] implements [`herald_core::ports::Broker`] as DESIGN.md lays it out. Every
//! key and channel of one client carries the hash tag `{<client>}`, so a Redis Cluster keeps
//! them on one shard:
//! - `herald:n:{c}`: the notify channel; payload = the client's new last message id, or the
//!   message itself in its wire JSON (which names the id) when that is at most 16 KiB.
//! - `herald:g:{c}:<slot>`: the generation counter of a slot (`INCR`).
//! - `herald:s:{c}`: the claim channel; payload `<slot>:<generation>:<node>`.
//! - `herald:resync`: every node listens; payload = the id of a node that lost notifications.
//! - `herald:o:{c}` and `herald:node:<node>`: the registry of sessions online and the nodes'
//!   liveness, for the client view (see `registry.rs`).
//!
//! Standalone Redis (`redis://host:port`) and Sentinel (`redis+sentinel://s1,s2/<master>`) use
//! `PUBLISH`/`SUBSCRIBE`; a cluster (`redis+cluster://h1:p1,h2:p2`) uses sharded pub/sub
//! (`SPUBLISH`/`SSUBSCRIBE`). Each node holds one subscriber connection (RESP3, one per shard
//! in a cluster) that multiplexes every channel of its sessions, and one command connection.
//!
//! **Notifications never wait for Redis.** [`Broker::notify_messages`] and its siblings put
//! them in a queue bounded by count and bytes ([`RedisBrokerConfig::max_pending`],
//! [`RedisBrokerConfig::max_pending_bytes`]; queued and in flight both count) and return; one
//! publisher task sends the queue in order, a pipeline per MiB of payload (on a cluster one
//! per hash slot, every slot at once). Past the bound a notification is dropped, counted and
//! reported as an error. A dropped notification, or a batch Redis did not take, owes a
//! resync: once Redis answers again the node publishes on `herald:resync` and every node
//! emits [`BrokerEvent::Resync`] (its sessions read their queues again: the store has every
//! message). So an outage costs delay, never a message, and never unbounded memory.
//!
//! **Reconnection.** When the subscriber connection drops, the broker reconnects with
//! exponential backoff, subscribes to every channel again and then emits
//! [`BrokerEvent::Resync`]. With Sentinel it first asks the sentinels (in order) for the
//! master, trusting an answer only when that server says `ROLE` master; a master at a new
//! address gets a fresh pair of connections (a failover, counted). A watcher subscribed to
//! `+switch-master` on one sentinel, and any failed command, make the broker look again, so
//! a failover that leaves the old connections open (a manual one) is followed too.
//! Malformed payloads are logged and dropped.
//!
//! **Runtime.** The broker runs no executor of its own choosing: the application hands
//! [`RedisBroker::connect`] a [`Runtime`](herald_core::Runtime) (spawn and sleep). [`BrokerStats`] gives the
//! application reconnections, failovers, drops, the queue and time without Redis.
//!
//! [`BrokerEvent::Resync`]: herald_core::ports::BrokerEvent::Resync
//! [`Broker::notify_messages`]: herald_core::ports::Broker::notify_messages

mod broker;
mod config;
mod error;
mod keys;
mod registry;
mod sentinel;
mod stats;

pub use broker::RedisBroker;
pub use config::{
    DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_BYTES, DEFAULT_NODE_TTL, RedisBrokerConfig,
    SentinelTopology, Topology,
};
pub use error::RedisBrokerError;
pub use stats::{BrokerReport, BrokerStats};
