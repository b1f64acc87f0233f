//! The store's configuration ([`MongoConfig`]) and why opening it can fail ([`MongoError`]).

use std::time::Duration;

use herald_core::Retention;

/// Where the queues live and how long messages are kept.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    /// The connection string (`mongodb://...`).
    pub url: String,
    /// The database holding `messages` and `counters`.
    pub database: String,
    /// The per-client cap and default time to live.
    pub retention: Retention,
    /// How long an id missing between stored messages may still be an insert under way (see
    /// the crate docs). Longer than an insert can take; default 5 s.
    pub settle: Duration,
    /// How many clients' counters a node remembers (see the crate docs): a push to a client
    /// it remembers costs no `find`. About 100 bytes each; default 100,000.
    pub known_counters: usize,
}

impl MongoConfig {
    /// Database `herald`, default retention.
    pub fn new(url: impl Into<String>) -> MongoConfig {
        MongoConfig {
            url: url.into(),
            database: "herald".into(),
            retention: Retention::default(),
            settle: Duration::from_secs(5),
            known_counters: 100_000,
        }
    }

    /// Remembers the counters of at most `n` clients (see the crate docs).
    pub fn known_counters(mut self, n: usize) -> MongoConfig {
        self.known_counters = n;
        self
    }

    /// Waits at most `settle` for an id missing between stored messages (see the crate docs).
    pub fn settle(mut self, settle: Duration) -> MongoConfig {
        self.settle = settle;
        self
    }

    /// Uses database `name`.
    pub fn database(mut self, name: impl Into<String>) -> MongoConfig {
        self.database = name.into();
        self
    }

    /// Keeps messages per `retention`.
    pub fn retention(mut self, retention: Retention) -> MongoConfig {
        self.retention = retention;
        self
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    /// The driver failed (bad URL, unreachable server, refused command).
    #[error("mongodb: {0}")]
    Driver(#[from] mongodb::error::Error),
}
