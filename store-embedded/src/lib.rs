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
//!   short at the end of the log (a torn tail: no intact record after it) is dropped on open
//!   with a warning. Compaction and the conversion of an earlier version's database write a
//!   new file and rename it into place only when it is complete and synced.
//! - **Damage is never silent**: a record that is cut short or fails its checksum with an
//!   intact record after it cannot be a crash's doing. Opening stops with
//!   [`EmbeddedError::Damaged`], naming the file and the byte offset, and changes no file.
//!   [`EmbeddedConfig::recover_damaged_log`] opens it anyway (see "Damage" below).
//! - **Ids never go back**: see "Ids" below.
//! - **Retention without rewrites**: the per-client cap applies as messages are appended;
//!   [`purge`](herald_core::MessageStore::purge) removes expired messages from the index in
//!   steps of [`PURGE_BATCH`] queues and serves other requests between them. A cap lowered
//!   between runs applies when the store opens.
//! - Passes herald-core's contract suite (`cargo test -p herald-store-embedded`), and a model
//!   test against herald-core's in-memory store with compactions and restarts.
//!
//! ## Damage
//!
//! Opening replays the log record by record. At a record that is cut short or whose checksum
//! does not match, it looks for the next intact record (a frame whose length fits, whose kind
//! is known and whose checksum matches), byte by byte:
//!
//! - none: a torn tail, what a crash during the last write leaves. It is cut off with a
//!   warning, and ids go on above the high-water mark (the record may have been synced before
//!   a disk damaged it).
//! - one: damage. Without the recovery option opening fails, and nothing is written (not the
//!   log, not the mark). With it, replay resumes at the intact record, as often as needed, and
//!   each skip is logged (offset, length, reason). The damaged file is kept under a second name,
//!   [`EmbeddedConfig::DAMAGED_PREFIX`]`<n>` (a hard link: no copy), with `<n>.txt` listing
//!   what was skipped; then the live state is written to a new log, as a compaction does, so
//!   the next open finds it whole. What the skipped bytes held is lost: their pushes, their
//!   acknowledgements (those messages are delivered again).
//!
//! A power loss (not a process crash: the page cache survives that) during a large write can
//! persist its pages out of order, leaving an intact record after a missing one within the
//! last, unsynced write. That is refused as damage too: the log cannot tell it apart. None of
//! it was acknowledged, so the recovery loses nothing acknowledged there.
//!
//! ## Ids
//!
//! No queue ever hands out an id twice, whatever was lost:
//!
//! - **The high-water mark** ([`EmbeddedConfig::IDS_FILE`], 20 bytes with a CRC-32) holds an
//!   id no queue went above. Before a batch hands out an id above it, the thread raises it to
//!   that id plus [`ID_RESERVE`] (written to a new file, synced, renamed, directory synced),
//!   and only then writes the batch; so every id ever answered is at or below the mark, which
//!   lives outside the log and is not touched by damage to it.
//! - **The floor**: when replay lost bytes (torn tail or recovery), the floor is set to the
//!   mark (or the highest id found, if higher), the mark is raised above it first, then the
//!   floor is recorded in the log (a floor record, see `record.rs`): every queue's last
//!   id becomes at least the floor, and a queue first seen later (one whose records were all
//!   lost) starts above it. Compaction writes the floor first in the new log.
//! - **The cap is not fooled by the jump**: the ids a queue with kept messages skipped are
//!   remembered (and written by compaction), and the cap does not count them, so the first push
//!   after a recovery does not push out the messages it kept.
//! - If the mark file itself is missing or damaged: with an intact log it is rebuilt from the
//!   log (every id handed out is in it); with lost bytes too (or a log of an earlier version
//!   with a torn tail) nothing bounds the lost ids, so they jump [`UNPROVEN_JUMP`] above the
//!   highest id found, and an error is logged.
//!
//! The webhook outbox (events waiting to be POSTed) is a small log of its own,
//! [`EmbeddedConfig::OUTBOX_FILE`], with the same framing and damage rules, served by its own
//! thread (see `outbox.rs`).
//!
//! The store is the data directory's [`EmbeddedConfig::LOG_FILE`], locked by
//! [`EmbeddedConfig::LOCK_FILE`]: one process at a time may open it. A directory written by
//! an earlier version (redb, [`EmbeddedConfig::LEGACY_DB_FILE`]) is converted on open.

mod config;
mod error;
mod migrate;
mod outbox;
mod queues;
mod record;
mod store;

pub use config::EmbeddedConfig;
pub use error::EmbeddedError;
pub use store::{EmbeddedStore, ID_RESERVE, LAZY_ACKS_FOR, MAX_BATCH, PURGE_BATCH, UNPROVEN_JUMP};
