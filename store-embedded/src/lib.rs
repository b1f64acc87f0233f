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
//! ## Why a log of its own
//!
//! A push to a hundred recipients is one message with a hundred ids. The earlier version kept
//! it in redb, a B-tree database: a record per recipient (each on its own page, in tables
//! keyed by client), a counter and an expiry entry per recipient, and redb rewrites every
//! page a transaction touches. That was ~10 KB written and ~28 µs of CPU per stored copy,
//! the largest single cost of a delivery. Here a push is written once, as one record with
//! its body and its recipients' ids (tens of bytes each), and an acknowledgement is a record
//! of a few ids; the queues themselves are an index in memory (40 bytes per kept message, the
//! bodies stay on disk), rebuilt from the log when the store opens. Garbage (what retention
//! dropped, acknowledgement records) is compacted away when it is more than half of a big
//! enough log. `store_bench` measures ~2 µs of CPU per stored copy and ~1 µs per
//! acknowledged one (docs/benchmarks.md).
//!
//! What it costs: memory for the index of every kept message (a million kept messages is
//! ~40 MB plus their clients), a replay of the log on start (sequential reads), and
//! compaction pauses proportional to the live data (it runs on the store thread).
//!
//! ## Guarantees
//!
//! - **Durable before acknowledged**: `append` answers only after its record was written and
//!   `fdatasync`ed. It is never switched off.
//! - **Group commit**: one thread owns the log; every append and ack waiting when it turns
//!   are written with one `write` and one sync, so one fsync serves many pushes.
//! - **Crash-safe**: records are framed with their length and a CRC-32; a record a crash cut
//!   short at the end of the log is dropped on open (it was never acknowledged). Compaction
//!   and the conversion of an earlier version's database write a new file and rename it into
//!   place only when it is complete and synced.
//! - **Retention without rewrites**: the per-client cap applies as messages are appended;
//!   [`purge`](herald_core::MessageStore::purge) removes expired messages from the index in
//!   steps of [`PURGE_BATCH`] queues and serves other requests between them. A cap lowered
//!   between runs applies when the store opens.
//! - Passes herald-core's contract suite (`cargo test -p herald-store-embedded`), and a model
//!   test against herald-core's in-memory store with compactions and restarts.
//!
//! The store is the data directory's [`EmbeddedConfig::LOG_FILE`], locked by
//! [`EmbeddedConfig::LOCK_FILE`]: one process at a time may open it. A directory written by
//! an earlier version (redb, [`EmbeddedConfig::LEGACY_DB_FILE`]) is converted on open.

mod config;
mod error;
mod migrate;
mod queues;
mod record;
mod store;

pub use config::EmbeddedConfig;
pub use error::EmbeddedError;
pub use store::{EmbeddedStore, LAZY_ACKS_FOR, MAX_BATCH, PURGE_BATCH};
