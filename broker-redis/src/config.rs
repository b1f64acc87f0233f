//! Where the Redis broker connects and how it behaves when Redis goes away.

use std::time::Duration;

use crate::RedisBrokerError;

/// A standalone server or a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server: `redis://host:port[/db]` (plain pub/sub).
    Standalone(String),
    /// A Redis Cluster, given by some of its nodes as `redis://host:port` each (sharded
    /// pub/sub).
    Cluster(Vec<String>),
}

/// How to reach Redis and how to reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBrokerConfig {
    /// The server or cluster.
    pub topology: Topology,
    /// How long connecting may take before it counts as failed.
    pub connection_timeout: Duration,
    /// How long a command may wait for its answer.
    pub response_timeout: Duration,
    /// The first wait before reconnecting; it doubles after each failed attempt.
    pub reconnect_min: Duration,
    /// The longest wait between two reconnection attempts.
    pub reconnect_max: Duration,
}

impl RedisBrokerConfig {
    /// A configuration from a URL: `redis://host:port[/db]` for one server, or
    /// `redis+cluster://h1:p1,h2:p2,...` for a cluster (any of its nodes; the rest are
    /// discovered). Timeouts: 5 s to connect, 5 s per command; reconnection backoff from 50 ms
    /// to 2 s.
    ///
    /// # Errors
    /// When the URL has another scheme or names no host.
    pub fn from_url(url: &str) -> Result<RedisBrokerConfig, RedisBrokerError> {
        let invalid = |reason: &str| RedisBrokerError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let topology = if let Some(nodes) = url.strip_prefix("redis+cluster://") {
            let nodes = nodes.split('/').next().unwrap_or_default();
            let nodes: Vec<String> = nodes
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            if nodes.is_empty() {
                return Err(invalid("expected redis+cluster://host:port[,host:port...]"));
            }
            Topology::Cluster(nodes)
        } else if let Some(rest) = url.strip_prefix("redis://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(invalid("expected redis://host:port"));
            }
            Topology::Standalone(url.to_string())
        } else {
            return Err(invalid(
                "expected redis://host:port or redis+cluster://host:port[,host:port...]",
            ));
        };
        Ok(RedisBrokerConfig {
            topology,
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
        })
    }

    /// Sets how long connecting may take.
    #[must_use]
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets how long a command may wait for its answer.
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the reconnection backoff: the first wait and the longest.
    #[must_use]
    pub fn with_reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_topology() {
        let c = RedisBrokerConfig::from_url("redis://127.0.0.1:6379").unwrap();
        assert_eq!(
            c.topology,
            Topology::Standalone("redis://127.0.0.1:6379".into())
        );
        let c =
            RedisBrokerConfig::from_url("redis+cluster://127.0.0.1:7000, 127.0.0.1:7001").unwrap();
        assert_eq!(
            c.topology,
            Topology::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into()
            ])
        );
        assert!(RedisBrokerConfig::from_url("http://x").is_err());
        assert!(RedisBrokerConfig::from_url("redis+cluster://").is_err());
        assert!(RedisBrokerConfig::from_url("redis://").is_err());
    }

    #[test]
    fn setters_set() {
        let c = RedisBrokerConfig::from_url("redis://h:1")
            .unwrap()
            .with_connection_timeout(Duration::from_secs(1))
            .with_response_timeout(Duration::from_secs(2))
            .with_reconnect_backoff(Duration::from_millis(10), Duration::from_millis(5));
        assert_eq!(c.connection_timeout, Duration::from_secs(1));
        assert_eq!(c.response_timeout, Duration::from_secs(2));
        assert_eq!(c.reconnect_min, Duration::from_millis(10));
        assert_eq!(c.reconnect_max, Duration::from_millis(10));
    }
}
