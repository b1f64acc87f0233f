//! Why the Redis broker could not be set up.

use herald_core::ports::BrokerError;

/// Why a [`crate::RedisBroker`] could not be configured or connected.
#[derive(Debug, thiserror::Error)]
pub enum RedisBrokerError {
    /// The URL is not `redis://host:port` or `redis+cluster://h1:p1,h2:p2`.
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What was expected.
        reason: String,
    },
    /// No sentinel named a reachable master.
    #[error("sentinel: {0}")]
    NoMaster(String),
    /// The redis client failed (connecting, or a command).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A failed Redis call, as the `Broker` port reports it.
pub(crate) fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}
