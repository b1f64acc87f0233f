//! # herald-store-embedded
//!
//! A durable [`MessageStore`](herald_core::MessageStore) on local disk: the single-node
//! default, needing no external service.
//!
//! ```no_run
//! use herald_core::Retention;
//! use herald_store_embedded::{EmbeddedConfig, EmbeddedStore};
//!
//! let store = EmbeddedStore::open(
//!     EmbeddedConfig::new("./herald-data").retention(Retention::default()),
//! )
//! .expect("the data directory is writable");
//! # drop(store);
//! ```
//!
//! ## Why redb
//!
//! [redb](https://www.redb.org) is pure Rust, ACID, with copy-on-write B-trees and a
//! checksummed commit protocol: a committed transaction survives a crash or power loss, an
//! interrupted one leaves no trace. Its ordered tables with tuple keys give the range scans
//! this store needs (`(client, id)` for unacknowledged messages, `(client, ts, id)` for
//! history, `(expires, client, id)` for TTL). fjall (an LSM tree) would write faster under
//! heavy load but adds background compaction threads and weaker read-modify-write
//! (acknowledgements); a push server's queues are small and read-mostly, so redb's simpler
//! model wins.
//!
//! ## Guarantees
//!
//! - **Durable before acknowledged**: `append` answers only after its transaction committed
//!   with redb's default durability (fsync). It is never switched off.
//! - **Group commit**: one thread owns the database; every append and ack waiting when it
//!   turns are written in one transaction, so one fsync serves many pushes.
//! - **Retention without stalls**: the per-client cap is enforced as messages are appended;
//!   [`purge`](herald_core::MessageStore::purge) removes expired messages in bounded
//!   transactions ([`PURGE_BATCH`]) and serves other requests between them. The first purge
//!   after opening also sweeps every client once for messages beyond the cap, so a cap lowered
//!   between runs applies to clients that receive nothing new.
//! - Passes herald-core's contract suite (`cargo test -p herald-store-embedded`).
//!
//! The database is one file, [`EmbeddedConfig::DB_FILE`] in the data directory; one process
//! at a time may open it.

mod config;
mod error;
mod store;

pub use config::EmbeddedConfig;
pub use error::EmbeddedError;
pub use store::{EmbeddedStore, LAZY_ACKS_FOR, MAX_BATCH, PURGE_BATCH};
