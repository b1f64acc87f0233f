//! Where the database lives and what it keeps.

use std::path::PathBuf;

use herald_core::Retention;

/// The embedded store's configuration: a directory and a retention policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The data directory; created if missing. The database is the file
    /// [`EmbeddedConfig::DB_FILE`] in it.
    pub path: PathBuf,
    /// The per-client cap and the default time to live.
    pub retention: Retention,
}

impl EmbeddedConfig {
    /// The database file's name inside [`EmbeddedConfig::path`].
    pub const DB_FILE: &'static str = "herald.redb";

    /// A configuration for the data directory `path`, with the default retention
    /// (10 000 messages per client, 7 days).
    pub fn new(path: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            path: path.into(),
            retention: Retention::default(),
        }
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

    /// The database file: [`EmbeddedConfig::DB_FILE`] inside the data directory.
    pub fn db_file(&self) -> PathBuf {
        self.path.join(Self::DB_FILE)
    }
}

impl Default for EmbeddedConfig {
    /// `./herald-data`, DESIGN.md's default data directory, with the default retention.
    fn default() -> Self {
        EmbeddedConfig::new("herald-data")
    }
}
