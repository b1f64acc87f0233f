//! Where the store lives and what it keeps.

use std::path::PathBuf;

use herald_core::Retention;

/// The embedded store's configuration: a directory, a retention policy, and when the log is
/// compacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The data directory; created if missing. The log is the file
    /// [`EmbeddedConfig::LOG_FILE`] in it.
    pub path: PathBuf,
    /// The per-client cap and the default time to live.
    pub retention: Retention,
    /// The smallest log, in bytes, that is compacted (when it is also mostly garbage).
    pub compact_at: u64,
    /// Open a log that is damaged before its end anyway: skip the damaged bytes, keep every
    /// intact record after them (see the crate's docs, "Damage"). Off by default: such a log
    /// is refused and left untouched.
    pub recover_damaged_log: bool,
    /// At most this many copies of pushes have their records (receipts, status, recall) kept
    /// in memory; beyond it the oldest pushes' records are forgotten (see
    /// [`herald_core::books::PushBook`]).
    pub receipts_max_copies: usize,
    /// At most this many `Idempotency-Key` claims are kept in memory; beyond it the oldest
    /// are forgotten (see [`herald_core::books::IdempotencyTable`]).
    pub idempotency_max_keys: usize,
}

/// The in-memory bounds of the index of push records and idempotency claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// [`EmbeddedConfig::receipts_max_copies`].
    pub(crate) receipts_max_copies: usize,
    /// [`EmbeddedConfig::idempotency_max_keys`].
    pub(crate) idempotency_max_keys: usize,
}

impl EmbeddedConfig {
    /// The log's name inside [`EmbeddedConfig::path`].
    pub const LOG_FILE: &'static str = "herald.log";
    /// A compaction's new log until it is complete, then renamed to [`EmbeddedConfig::LOG_FILE`].
    pub const COMPACT_FILE: &'static str = "herald.log.new";
    /// The lock file: one process at a time per data directory.
    pub const LOCK_FILE: &'static str = "herald.lock";
    /// The database of earlier versions (redb), converted to a log when found.
    pub const LEGACY_DB_FILE: &'static str = "herald.redb";
    /// The high-water mark of ids: no id above the one it holds was ever handed out.
    pub const IDS_FILE: &'static str = "herald.ids";
    /// A new high-water mark until it is synced, then renamed to [`EmbeddedConfig::IDS_FILE`].
    pub const IDS_NEW_FILE: &'static str = "herald.ids.new";
    /// A damaged log set aside by a recovery is `herald.log.damaged.<n>`, next to a
    /// `herald.log.damaged.<n>.txt` listing the bytes that were skipped.
    pub const DAMAGED_PREFIX: &'static str = "herald.log.damaged.";
    /// The webhook outbox: events waiting to be POSTed (`crate::outbox`'s file format).
    pub const OUTBOX_FILE: &'static str = "herald.outbox";
    /// The default [`EmbeddedConfig::compact_at`]: 64 MiB.
    pub const COMPACT_AT: u64 = 64 << 20;

    /// A configuration for the data directory `path`, with the default retention
    /// (10 000 messages per client, 7 days).
    pub fn new(path: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            path: path.into(),
            retention: Retention::default(),
            compact_at: Self::COMPACT_AT,
            recover_damaged_log: false,
            receipts_max_copies: herald_core::books::DEFAULT_MAX_COPIES,
            idempotency_max_keys: herald_core::books::DEFAULT_MAX_KEYS,
        }
    }

    /// Sets how many idempotency claims are kept (see
    /// [`EmbeddedConfig::idempotency_max_keys`]).
    pub fn idempotency_max_keys(mut self, keys: usize) -> EmbeddedConfig {
        self.idempotency_max_keys = keys;
        self
    }

    /// The index's bounds.
    pub(crate) fn bounds(&self) -> Bounds {
        Bounds {
            receipts_max_copies: self.receipts_max_copies,
            idempotency_max_keys: self.idempotency_max_keys,
        }
    }

    /// Sets how many copies of pushes keep their records (see
    /// [`EmbeddedConfig::receipts_max_copies`]).
    pub fn receipts_max_copies(mut self, copies: usize) -> EmbeddedConfig {
        self.receipts_max_copies = copies;
        self
    }

    /// Sets the data directory.
    pub fn path(mut self, path: impl Into<PathBuf>) -> EmbeddedConfig {
        self.path = path.into();
        self
    }

    /// Sets the retention policy.
    pub fn retention(mut self, retention: Retention) -> EmbeddedConfig {
        self.retention = retention;
        self
    }

    /// Sets the smallest log that is compacted.
    pub fn compact_at(mut self, bytes: u64) -> EmbeddedConfig {
        self.compact_at = bytes;
        self
    }

    /// Sets whether a log damaged before its end is opened anyway (see
    /// [`EmbeddedConfig::recover_damaged_log`]).
    pub fn recover_damaged_log(mut self, recover: bool) -> EmbeddedConfig {
        self.recover_damaged_log = recover;
        self
    }

    /// The high-water mark of ids.
    pub fn ids_file(&self) -> PathBuf {
        self.path.join(Self::IDS_FILE)
    }

    /// The log: [`EmbeddedConfig::LOG_FILE`] inside the data directory.
    pub fn log_file(&self) -> PathBuf {
        self.path.join(Self::LOG_FILE)
    }

    /// A compaction's unfinished log.
    pub fn compact_file(&self) -> PathBuf {
        self.path.join(Self::COMPACT_FILE)
    }

    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.path.join(Self::LOCK_FILE)
    }

    /// The webhook outbox: [`EmbeddedConfig::OUTBOX_FILE`] inside the data directory.
    pub fn outbox_file(&self) -> PathBuf {
        self.path.join(Self::OUTBOX_FILE)
    }

    /// Where an earlier version's database would be.
    pub fn legacy_db_file(&self) -> PathBuf {
        self.path.join(Self::LEGACY_DB_FILE)
    }
}

impl Default for EmbeddedConfig {
    /// `./herald-data`, DESIGN.md's default data directory, with the default retention.
    fn default() -> Self {
        EmbeddedConfig::new("herald-data")
    }
}
