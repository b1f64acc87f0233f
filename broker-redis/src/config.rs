//! Where the Redis broker connects, how it behaves when Redis goes away, and how much it may
//! hold while it does.

use std::time::Duration;

use crate::RedisBrokerError;

/// A standalone server, a cluster, or a master found through Sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server: `redis://host:port[/db]` (plain pub/sub).
    Standalone(String),
    /// A Redis Cluster, given by some of its nodes as `redis://host:port` each (sharded
    /// pub/sub).
    Cluster(Vec<String>),
    /// A master watched by Sentinel (plain pub/sub on whichever server is master now).
    Sentinel(SentinelTopology),
}

/// How to find the master through Sentinel and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelTopology {
    /// The sentinels as `redis://[user:password@]host:port` (their own credentials), asked
    /// in this order.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under.
    pub master_name: String,
    /// `user:password@` or `:password@` for the master and its replicas, or empty.
    pub userinfo: String,
    /// The database number on the master.
    pub db: u32,
}

impl std::fmt::Debug for SentinelTopology {
    /// Never prints credentials: the sentinel addresses without them, the master's name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<&str> = self
            .sentinels
            .iter()
            .map(|s| s.rsplit('@').next().unwrap_or(s))
            .map(|s| s.trim_start_matches("redis://"))
            .collect();
        write!(f, "Sentinel({} via {})", self.master_name, hosts.join(","))
    }
}

impl SentinelTopology {
    /// The URL of the master at `host:port` (RESP3, the master's credentials and database).
    pub(crate) fn master_url(&self, host: &str, port: u16) -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        format!(
            "redis://{}{host}:{port}/{}?protocol=resp3",
            self.userinfo, self.db
        )
    }
}

/// How to reach Redis, how to reconnect, and how much may wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBrokerConfig {
    /// The server, cluster or Sentinel-watched master.
    pub topology: Topology,
    /// How long connecting may take before it counts as failed.
    pub connection_timeout: Duration,
    /// How long a command may wait for its answer.
    pub response_timeout: Duration,
    /// The first wait before reconnecting; it doubles after each failed attempt.
    pub reconnect_min: Duration,
    /// The longest wait between two reconnection attempts.
    pub reconnect_max: Duration,
    /// Most notifications waiting for Redis (queued or sent without an answer yet); past it a
    /// notification is dropped and counted (the store holds its message; a resync delivers
    /// it once Redis answers again).
    pub max_pending: usize,
    /// Most payload bytes of the notifications waiting for Redis; past it likewise.
    pub max_pending_bytes: usize,
    /// How long this node counts as alive after its last liveness beat (`herald:node:<node>`,
    /// beaten every third of it): the client view hides sessions of a node silent longer.
    pub node_ttl: Duration,
}

/// `max_pending` unless set: a few seconds of a busy node's notifications.
pub const DEFAULT_MAX_PENDING: usize = 10_000;

/// `max_pending_bytes` unless set.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 16 << 20;

/// `node_ttl` unless set.
pub const DEFAULT_NODE_TTL: Duration = Duration::from_secs(30);

impl RedisBrokerConfig {
    /// A configuration from a URL:
    /// - `redis://[user:password@]host:port[/db]` for one server;
    /// - `redis+cluster://h1:p1,h2:p2,...` for a cluster (any of its nodes; the rest are
    ///   discovered);
    /// - `redis+sentinel://[user:password@]s1:p1,s2:p2,.../<master-name>[/db]
    ///   [?sentinel_username=u&sentinel_password=p]` for a master watched by Sentinel: the
    ///   credentials before `@` are the master's, the query's are the sentinels' own (none
    ///   unless given).
    ///
    /// The rest is [`RedisBrokerConfig::new`]'s defaults.
    ///
    /// # Errors
    /// When the URL has another scheme, names no host, or (Sentinel) names no master or has
    /// an unknown option.
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
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            Topology::Sentinel(parse_sentinel(rest).map_err(|r| invalid(&r))?)
        } else if url.starts_with("rediss+sentinel://") {
            return Err(invalid(
                "TLS is not built into this broker (the redis crate's TLS features are off): \
                 reach TLS-only servers through a local TLS tunnel",
            ));
        } else if let Some(rest) = url.strip_prefix("redis://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(invalid("expected redis://host:port"));
            }
            Topology::Standalone(url.to_string())
        } else {
            return Err(invalid(
                "expected redis://host:port, redis+cluster://host:port[,host:port...] or \
                 redis+sentinel://host:port[,host:port...]/<master-name>",
            ));
        };
        Ok(RedisBrokerConfig::new(topology))
    }

    /// A configuration for `topology` with the defaults: 5 s to connect, 5 s per command;
    /// reconnection backoff from 50 ms to 2 s; [`DEFAULT_MAX_PENDING`] notifications and
    /// [`DEFAULT_MAX_PENDING_BYTES`] waiting.
    pub fn new(topology: Topology) -> RedisBrokerConfig {
        RedisBrokerConfig {
            topology,
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            max_pending: DEFAULT_MAX_PENDING,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            node_ttl: DEFAULT_NODE_TTL,
        }
    }

    /// Sets the longest wait between two reconnection attempts (at least the first wait).
    #[must_use]
    pub fn with_reconnect_max(mut self, max: Duration) -> Self {
        self.reconnect_max = max.max(self.reconnect_min);
        self
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

    /// Sets the bound on notifications waiting for Redis: a count and payload bytes (each at
    /// least 1).
    #[must_use]
    pub fn with_max_pending(mut self, count: usize, bytes: usize) -> Self {
        self.max_pending = count.max(1);
        self.max_pending_bytes = bytes.max(1);
        self
    }

    /// Sets how long this node counts as alive after its last liveness beat (at least 30 ms).
    #[must_use]
    pub fn with_node_ttl(mut self, ttl: Duration) -> Self {
        self.node_ttl = ttl.max(Duration::from_millis(30));
        self
    }
}

/// Parses what follows `redis+sentinel://`.
fn parse_sentinel(rest: &str) -> Result<SentinelTopology, String> {
    const FORM: &str = "expected redis+sentinel://[user:password@]host:port[,host:port...]/\
                        <master-name>[/db][?sentinel_username=u&sentinel_password=p]";
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, q),
        None => (rest, ""),
    };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (format!("{u}@"), r),
        None => (String::new(), rest),
    };
    let mut parts = rest.split('/');
    let hosts = parts.next().unwrap_or_default();
    let master_name = parts.next().unwrap_or_default().to_string();
    let db = match parts.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<u32>()
            .map_err(|_| format!("database {db:?} is not a number; {FORM}"))?,
    };
    if parts.next().is_some() {
        return Err(FORM.to_string());
    }
    if master_name.is_empty() {
        return Err(format!("no master name; {FORM}"));
    }
    let (mut s_user, mut s_password) = (String::new(), String::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_username", v)) => s_user = v.to_string(),
            Some(("sentinel_password", v)) => s_password = v.to_string(),
            _ => {
                let name = pair.split('=').next().unwrap_or_default();
                return Err(format!("unknown option {name:?}; {FORM}"));
            }
        }
    }
    let s_userinfo = if s_user.is_empty() && s_password.is_empty() {
        String::new()
    } else {
        format!("{s_user}:{s_password}@")
    };
    let sentinels: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{s_userinfo}{h}"))
        .collect();
    if sentinels.is_empty() {
        return Err(format!("no sentinel address; {FORM}"));
    }
    Ok(SentinelTopology {
        sentinels,
        master_name,
        userinfo,
        db,
    })
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
    fn sentinel_urls_name_the_sentinels_the_master_and_both_credentials() {
        let c = RedisBrokerConfig::from_url(
            "redis+sentinel://:pw@h1:26379,h2:26380/cache/2?sentinel_password=sp",
        )
        .unwrap();
        let Topology::Sentinel(s) = c.topology else {
            panic!("a sentinel topology")
        };
        assert_eq!(
            s.sentinels,
            vec![
                "redis://:sp@h1:26379".to_string(),
                "redis://:sp@h2:26380".to_string()
            ]
        );
        assert_eq!(s.master_name, "cache");
        assert_eq!(s.db, 2);
        assert_eq!(
            s.master_url("10.0.0.5", 6380),
            "redis://:pw@10.0.0.5:6380/2?protocol=resp3"
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("pw") && !shown.contains("sp@"), "{shown}");

        let c = RedisBrokerConfig::from_url("redis+sentinel://h1:26379/m").unwrap();
        let Topology::Sentinel(s) = c.topology else {
            panic!("a sentinel topology")
        };
        assert_eq!(s.sentinels, vec!["redis://h1:26379".to_string()]);
        assert_eq!(s.master_url("::1", 1), "redis://[::1]:1/0?protocol=resp3");

        for bad in [
            "redis+sentinel://h1:26379",
            "redis+sentinel://h1:26379/",
            "redis+sentinel:///m",
            "redis+sentinel://h1:1/m/x",
            "redis+sentinel://h1:1/m/0/extra",
            "redis+sentinel://h1:1/m?tls=1",
            "rediss+sentinel://h1:1/m",
        ] {
            assert!(RedisBrokerConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn setters_set() {
        let c = RedisBrokerConfig::from_url("redis://h:1")
            .unwrap()
            .with_connection_timeout(Duration::from_secs(1))
            .with_response_timeout(Duration::from_secs(2))
            .with_reconnect_backoff(Duration::from_millis(10), Duration::from_millis(5))
            .with_max_pending(0, 7);
        assert_eq!(c.connection_timeout, Duration::from_secs(1));
        assert_eq!(c.response_timeout, Duration::from_secs(2));
        assert_eq!(c.reconnect_min, Duration::from_millis(10));
        assert_eq!(c.reconnect_max, Duration::from_millis(10));
        assert_eq!((c.max_pending, c.max_pending_bytes), (1, 7));
    }
}
