//! Broker over Redis, standalone and cluster (the redis crate).
//!
//! [`RedisBroker`] implements [`herald_core::ports::Broker`] as DESIGN.md lays it out. Every
//! key and channel of one client carries the hash tag `{<client>}`, so a Redis Cluster keeps
//! them on one shard:
//! - `herald:n:{c}`: the notify channel; payload = the client's new last message id, or the
//!   message itself in its wire JSON (which names the id) when that is at most 16 KiB.
//! - `herald:g:{c}:<slot>`: the generation counter of a slot (`INCR`).
//! - `herald:s:{c}`: the claim channel; payload `<slot>:<generation>:<node>`.
//!
//! Standalone Redis (`redis://host:port`) uses `PUBLISH`/`SUBSCRIBE`; a cluster
//! (`redis+cluster://h1:p1,h2:p2`) uses sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`). Each node
//! holds one subscriber connection (RESP3, one per shard in a cluster) that multiplexes every
//! channel of its sessions, and one command connection.
//!
//! The notifications of one push ([`Broker::notify_messages`]) are pipelined: one pipeline
//! per MiB of payload on a server; on a cluster one per hash slot (a pipeline cannot cross
//! slots), every slot at once.
//!
//! When the subscriber connection drops, the broker reconnects with exponential backoff,
//! subscribes to every channel again and then emits [`BrokerEvent::Resync`]. Malformed
//! payloads are logged and dropped.
//!
//! [`BrokerEvent::Resync`]: herald_core::ports::BrokerEvent::Resync
//! [`Broker::notify_messages`]: herald_core::ports::Broker::notify_messages

mod broker;
mod config;
mod error;
mod keys;
mod runtime;
mod sentinel;
mod stats;

pub use broker::RedisBroker;
pub use config::{
    DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_BYTES, RedisBrokerConfig, SentinelTopology, Topology,
};
pub use error::RedisBrokerError;
pub use runtime::{Runtime, Task};
pub use stats::{BrokerReport, BrokerStats};
