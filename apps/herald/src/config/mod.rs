//! Configuration: defaults, overridden by the TOML file (`--config`), overridden by
//! `HERALD_*` environment variables, overridden by command-line flags.
//!
//! Every key is declared once in `KEYS` with its type and its environment variable, so that
//! the file, the environment and the flags are checked the same way: an unknown key or a bad
//! value stops start-up with the key's name and the reason. Unknown `HERALD_*` environment
//! variables are only warned about, because other tools (the test harness) share the prefix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use crate::logging::LogFormat;
use crate::shutdown::ShutdownLimits;

mod check;
mod flags;
mod keys;
mod load;
mod print;

use check::check_cors_origins;
pub use check::redact_url;
pub use flags::Flags;
use keys::{Initial, KEYS};
pub use print::{describe_keys, keys_markdown};

/// A value from the environment or a flag, before it is checked against its key's kind.
#[derive(Clone)]
enum RawValue {
    Text(String),
    List(Vec<String>),
}

/// A configuration problem, naming the key and the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read or is not TOML.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why it could not be used.
        reason: String,
    },
    /// A key that Herald does not know.
    #[error("unknown configuration key `{0}` (run `herald --print-keys` for the list)")]
    UnknownKey(String),
    /// A key whose value is not acceptable.
    #[error("configuration key `{key}` ({}): {reason}", origin_text(.origin))]
    BadValue {
        /// The key's dotted path.
        key: String,
        /// Where the value came from: the file, an environment variable or a flag; empty
        /// when the key was not set.
        origin: String,
        /// What was expected and what was found.
        reason: String,
    },
}

/// What this node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// REST API and Socket.IO connector.
    All,
    /// Socket.IO only.
    Connector,
    /// REST API only.
    Api,
}

impl Role {
    /// Whether this node serves the REST API.
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }
    /// Whether this node serves Socket.IO clients.
    pub fn serves_connector(self) -> bool {
        matches!(self, Role::All | Role::Connector)
    }
    /// The role's name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Connector => "connector",
            Role::Api => "api",
        }
    }
}

/// Where the embedded store lives, or the MongoDB URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded store under this directory.
    Embedded(PathBuf),
    /// MongoDB at this URL.
    Mongo(String),
}

/// In-process broker (single node) or Redis.
#[derive(Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// The in-process broker: one node only.
    InProcess,
    /// Redis at this URL (`redis://` or `redis+cluster://`).
    Redis(String),
}

/// What `herald --version` shows: the package version and the git commit it was built from
/// (`unknown` when built without git history, see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HERALD_GIT_COMMIT"),
    ")"
);

/// The checked configuration of one node. Its `Debug` hides the secret and the API keys and
/// shows URLs without their password, so printing it can never leak them.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// What this node serves.
    pub role: Role,
    /// The node's name; `None` = host name + port, decided once the listeners are bound.
    pub node_id: Option<String>,
    /// REST API listen address.
    pub api_listen: SocketAddr,
    /// Publish API keys; empty = no key needed (allowed only on a loopback address).
    pub api_keys: Vec<String>,
    /// Largest accepted request body, bytes.
    pub api_max_body: usize,
    /// Largest `/queues` answer, bytes (one message always comes, whatever its size).
    pub api_max_answer: usize,
    /// Problems listed in an error answer before one line counts the rest.
    pub api_max_listed_errors: usize,
    /// How long an `Idempotency-Key` is remembered, and how long a claim not finished holds.
    pub api_idempotency: herald_core::IdempotencyTimes,
    /// Socket.IO listen address.
    pub connector_listen: SocketAddr,
    /// In-flight messages per session in ack mode.
    pub window: usize,
    /// Engine.IO ping interval.
    pub ping_interval: Duration,
    /// Engine.IO ping timeout.
    pub ping_timeout: Duration,
    /// Time a client has to send CONNECT.
    pub connect_timeout: Duration,
    /// Largest Engine.IO payload, bytes.
    pub max_payload: usize,
    /// Most bytes waiting to be sent to one client before its session is closed.
    pub max_queue_bytes: usize,
    /// Time an ending session's goodbye may take before its socket is dropped.
    pub close_timeout: Duration,
    /// Web origins whose pages may use Socket.IO with credentials; `["*"]` = any page,
    /// without credentials.
    pub cors_origins: Vec<String>,
    /// How long a browser may reuse a CORS preflight answer.
    pub cors_max_age: Duration,
    /// Client auth secret; `None` = generated once into the data directory (single node only).
    pub secret: Option<String>,
    /// Accept legacy headers.
    pub legacy_auth: bool,
    /// Accept HMAC auth.
    pub hmac_auth: bool,
    /// Accept JWT auth.
    pub jwt_auth: bool,
    /// Largest accepted signature age.
    pub max_skew: Duration,
    /// Largest accepted signature time ahead of the server's clock.
    pub max_future_skew: Duration,
    /// Where queues live.
    pub store: StoreChoice,
    /// The embedded store's directory (also where a generated secret is kept).
    pub data_dir: PathBuf,
    /// Open an embedded log damaged before its end anyway (skipping the damaged bytes).
    pub recover_damaged_log: bool,
    /// The embedded store: how many copies of pushes keep their records in memory.
    pub receipts_max_copies: usize,
    /// The embedded store: how many idempotency claims are kept in memory.
    pub idempotency_max_keys: usize,
    /// MongoDB: clients whose id counters a node remembers.
    pub mongo_known_counters: usize,
    /// MongoDB: how long a read waits for a missing id before passing it.
    pub mongo_settle: Duration,
    /// How nodes coordinate.
    pub broker: BrokerChoice,
    /// Most notifications waiting for Redis.
    pub broker_max_pending: usize,
    /// Most payload bytes of the notifications waiting for Redis.
    pub broker_max_pending_bytes: usize,
    /// Time connecting to Redis (or a sentinel) may take.
    pub broker_connect_timeout: Duration,
    /// Time a Redis command may wait for its answer.
    pub broker_response_timeout: Duration,
    /// Longest wait between two attempts to reach Redis again.
    pub broker_reconnect_max: Duration,
    /// How long a node counts as alive after its last liveness beat in Redis.
    pub broker_node_ttl: Duration,
    /// Messages kept per client.
    pub retention_cap: u64,
    /// Default message time to live.
    pub retention_ttl: Duration,
    /// How often retention runs.
    pub retention_every: Duration,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Log format: readable lines or femme's JSON.
    pub log_format: LogFormat,
    /// Largest HTTP request head, bytes.
    pub http_max_head: usize,
    /// Time an HTTP request head may take to arrive.
    pub http_head_timeout: Duration,
    /// Time an HTTP request body may take to arrive.
    pub http_body_timeout: Duration,
    /// Time a kept-alive HTTP connection may wait for its next request.
    pub http_idle_timeout: Duration,
    /// Time an HTTP answer may take to be written.
    pub http_write_timeout: Duration,
    /// Connections per listener; `None` = derived from `RLIMIT_NOFILE` at start-up.
    pub http_max_connections: Option<usize>,
    /// How long a stopping node waits for its sessions and its store writes.
    pub shutdown: ShutdownLimits,
    /// The `[webhook]` section.
    pub webhook: crate::webhook::WebhookConfig,
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Embedded(dir) => f.debug_tuple("Embedded").field(dir).finish(),
            StoreChoice::Mongo(url) => f.debug_tuple("Mongo").field(&redact_url(url)).finish(),
        }
    }
}

impl std::fmt::Debug for BrokerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerChoice::InProcess => f.write_str("InProcess"),
            BrokerChoice::Redis(url) => f.debug_tuple("Redis").field(&redact_url(url)).finish(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { "<hidden>" } else { "<none>" };
        f.debug_struct("Config")
            .field("role", &self.role)
            .field("node_id", &self.node_id)
            .field("api_listen", &self.api_listen)
            .field(
                "api_keys",
                &format_args!("<{} hidden>", self.api_keys.len()),
            )
            .field("api_max_body", &self.api_max_body)
            .field("api_max_answer", &self.api_max_answer)
            .field("api_max_listed_errors", &self.api_max_listed_errors)
            .field("api_idempotency", &self.api_idempotency)
            .field("connector_listen", &self.connector_listen)
            .field("window", &self.window)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_payload", &self.max_payload)
            .field("secret", &hidden(self.secret.is_some()))
            .field("legacy_auth", &self.legacy_auth)
            .field("hmac_auth", &self.hmac_auth)
            .field("jwt_auth", &self.jwt_auth)
            .field("max_skew", &self.max_skew)
            .field("max_future_skew", &self.max_future_skew)
            .field("store", &self.store)
            .field("data_dir", &self.data_dir)
            .field("receipts_max_copies", &self.receipts_max_copies)
            .field("idempotency_max_keys", &self.idempotency_max_keys)
            .field("mongo_known_counters", &self.mongo_known_counters)
            .field("mongo_settle", &self.mongo_settle)
            .field("broker", &self.broker)
            .field("retention_cap", &self.retention_cap)
            .field("retention_ttl", &self.retention_ttl)
            .field("retention_every", &self.retention_every)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("shutdown", &self.shutdown)
            .field("webhook", &self.webhook)
            .finish()
    }
}

impl Config {
    /// Builds the configuration from checked, flattened key-values.
    fn from_flat(
        t: &Table,
        sources: &BTreeMap<&'static str, String>,
    ) -> Result<Config, ConfigError> {
        // A key not set takes its declared default (from the config struct of the crate whose
        // setting it is); only keys declared without one stay unset.
        let mut t = t.clone();
        for key in KEYS {
            if let Initial::Value(default) = key.default
                && !t.contains_key(key.path)
            {
                t.insert(key.path.into(), default());
            }
        }
        let t = &t;
        let s = |p: &str| t.get(p).and_then(Value::as_str).map(str::to_owned);
        let i = |p: &str| t.get(p).and_then(Value::as_integer).unwrap_or(0);
        let b = |p: &str| t.get(p).and_then(Value::as_bool).unwrap_or(false);
        let size = |p: &str| usize::try_from(i(p)).unwrap_or(0);
        let ms = |p: &str| Duration::from_millis(u64::try_from(i(p)).unwrap_or(0));
        let secs = |p: &str| Duration::from_secs(u64::try_from(i(p)).unwrap_or(0));
        // Checked against Kind::Addr, the default included.
        let addr = |p: &str| -> SocketAddr {
            s(p).and_then(|v| v.parse().ok())
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
        };
        let bad = |key: &str, reason: String| ConfigError::BadValue {
            key: key.into(),
            origin: sources.get(key).cloned().unwrap_or_default(),
            reason,
        };

        let role = match s("role").as_deref() {
            Some("connector") => Role::Connector,
            Some("api") => Role::Api,
            _ => Role::All,
        };
        let data_dir = PathBuf::from(s("store.data_dir").unwrap_or_default());
        let store = match s("store.mongo") {
            Some(url) => {
                if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
                    return Err(bad(
                        "store.mongo",
                        format!(
                            "expected a mongodb:// or mongodb+srv:// URL, found {:?}",
                            redact_url(&url)
                        ),
                    ));
                }
                StoreChoice::Mongo(url)
            }
            None => StoreChoice::Embedded(data_dir.clone()),
        };
        let broker = match s("broker.redis") {
            Some(url) => {
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+cluster://")
                    || url.starts_with("redis+sentinel://"))
                {
                    return Err(bad(
                        "broker.redis",
                        format!(
                            "expected a redis://, rediss://, redis+cluster:// or \
                             redis+sentinel:// URL, found {:?}",
                            redact_url(&url)
                        ),
                    ));
                }
                BrokerChoice::Redis(url)
            }
            None => BrokerChoice::InProcess,
        };
        let node_id = s("node_id");
        if let Some(id) = &node_id {
            herald_core::NodeId::new(id).map_err(|e| bad("node_id", e.to_string()))?;
        }
        let api_listen = addr("api.listen");
        let api_keys: Vec<String> = t
            .get("api.keys")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if role.serves_api() && api_keys.is_empty() && !api_listen.ip().is_loopback() {
            return Err(bad(
                "api.keys",
                format!(
                    "the REST API would listen on non-loopback address {api_listen} with no API \
                     key: anyone could push. Set an API key (--api-key, HERALD_API_KEY or \
                     api.keys) or listen on 127.0.0.1"
                ),
            ));
        }
        let distributed = matches!(store, StoreChoice::Mongo(_))
            || matches!(broker, BrokerChoice::Redis(_))
            || role != Role::All;
        let secret = s("auth.secret");
        if secret.is_none() && distributed && role.serves_connector() {
            return Err(bad(
                "auth.secret",
                "a node of a cluster (MongoDB, Redis or a split role) needs the shared client \
                 auth secret: set --secret, HERALD_SECRET or auth.secret"
                    .into(),
            ));
        }
        if matches!(broker, BrokerChoice::InProcess) && role != Role::All {
            return Err(bad(
                "role",
                format!(
                    "role {} needs Redis to reach the other nodes: set --redis",
                    role.as_str()
                ),
            ));
        }
        if matches!(store, StoreChoice::Embedded(_)) && matches!(broker, BrokerChoice::Redis(_)) {
            return Err(bad(
                "store.mongo",
                "with Redis (several nodes) the queues must be shared: set --mongo".into(),
            ));
        }
        let cors_origins = match t.get("connector.cors_origins").and_then(Value::as_array) {
            Some(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            None => Vec::new(),
        };
        check_cors_origins(&cors_origins).map_err(|e| bad("connector.cors_origins", e))?;
        let webhook = webhook_config(t, &bad)?;
        let log_level = match s("log.level").as_deref() {
            Some("error") => log::LevelFilter::Error,
            Some("warn") => log::LevelFilter::Warn,
            Some("debug") => log::LevelFilter::Debug,
            Some("trace") => log::LevelFilter::Trace,
            _ => log::LevelFilter::Info,
        };
        Ok(Config {
            role,
            node_id,
            api_listen,
            api_keys,
            api_max_body: size("api.max_body"),
            api_max_answer: size("api.max_answer"),
            api_max_listed_errors: size("api.max_listed_errors"),
            api_idempotency: herald_core::IdempotencyTimes {
                ttl: secs("api.idempotency_ttl_secs"),
                lease: ms("api.idempotency_lease_ms"),
            },
            connector_listen: addr("connector.listen"),
            window: size("connector.window"),
            ping_interval: ms("connector.ping_interval_ms"),
            ping_timeout: ms("connector.ping_timeout_ms"),
            connect_timeout: ms("connector.connect_timeout_ms"),
            max_payload: size("connector.max_payload"),
            max_queue_bytes: size("connector.max_queue_bytes"),
            close_timeout: ms("connector.close_timeout_ms"),
            cors_origins,
            cors_max_age: secs("connector.cors_max_age_secs"),
            secret,
            legacy_auth: b("auth.legacy"),
            hmac_auth: b("auth.hmac"),
            jwt_auth: b("auth.jwt"),
            max_skew: secs("auth.max_skew_secs"),
            max_future_skew: secs("auth.max_future_skew_secs"),
            store,
            data_dir,
            recover_damaged_log: b("store.recover_damaged_log"),
            receipts_max_copies: size("store.receipts_max_copies"),
            idempotency_max_keys: size("store.idempotency_max_keys"),
            mongo_known_counters: size("store.mongo_known_counters"),
            mongo_settle: ms("store.mongo_settle_ms"),
            broker,
            broker_max_pending: size("broker.max_pending"),
            broker_max_pending_bytes: size("broker.max_pending_bytes"),
            broker_connect_timeout: ms("broker.connect_timeout_ms"),
            broker_response_timeout: ms("broker.response_timeout_ms"),
            broker_reconnect_max: ms("broker.reconnect_max_ms"),
            broker_node_ttl: ms("broker.node_ttl_ms"),
            retention_cap: u64::try_from(i("retention.cap")).unwrap_or(1),
            retention_ttl: secs("retention.ttl_secs"),
            retention_every: secs("retention.purge_every_secs"),
            log_level,
            log_format: match s("log.format").as_deref() {
                Some("json") => LogFormat::Json,
                _ => LogFormat::Text,
            },
            http_max_head: size("http.max_head"),
            http_head_timeout: ms("http.head_timeout_ms"),
            http_body_timeout: ms("http.body_timeout_ms"),
            http_idle_timeout: ms("http.idle_timeout_ms"),
            http_write_timeout: ms("http.write_timeout_ms"),
            // 0 (the default) derives the limit from RLIMIT_NOFILE.
            http_max_connections: Some(size("http.max_connections")).filter(|&n| n != 0),
            shutdown: ShutdownLimits {
                sessions: ms("shutdown.sessions_ms"),
                writes: ms("shutdown.writes_ms"),
            },
            webhook,
        })
    }

    /// Whether REST and Socket.IO share one listener: the same address for both, with a fixed
    /// port (`:0` for both means two listeners on two free ports).
    pub fn single_port(&self) -> bool {
        self.role == Role::All
            && self.api_listen == self.connector_listen
            && self.api_listen.port() != 0
    }
}

/// The `[webhook]` keys, checked: a URL needs a secret, `events` names known kinds, the
/// retry bounds are in order and a lease outlasts a POST.
fn webhook_config(
    t: &Table,
    bad: &dyn Fn(&str, String) -> ConfigError,
) -> Result<crate::webhook::WebhookConfig, ConfigError> {
    use herald_core::EventKind;
    let d = crate::webhook::WebhookConfig::default();
    let s = |p: &str| t.get(p).and_then(Value::as_str).map(str::to_owned);
    let i = |p: &str| t.get(p).and_then(Value::as_integer).map(|v| v as u64);
    let ms = |p: &str, d: Duration| i(p).map_or(d, Duration::from_millis);
    let url = match s("webhook.url") {
        Some(u) => Some(crate::webhook::parse_url(&u).map_err(|e| bad("webhook.url", e))?),
        None => None,
    };
    let secret = s("webhook.secret");
    if url.is_some() && secret.is_none() {
        return Err(bad(
            "webhook.secret",
            "webhook.url is set, so every request must be signed: set webhook.secret (or \
             HERALD_WEBHOOK_SECRET)"
                .into(),
        ));
    }
    let events = match t.get("webhook.events").and_then(Value::as_array) {
        Some(list) => {
            let mut kinds = Vec::new();
            for v in list {
                let name = v.as_str().unwrap_or_default();
                let kind = EventKind::parse(name).ok_or_else(|| {
                    bad(
                        "webhook.events",
                        format!(
                            "expected any of delivered, acked, expired, recalled, found {name:?}"
                        ),
                    )
                })?;
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            kinds
        }
        None => d.events.clone(),
    };
    let c = crate::webhook::WebhookConfig {
        url,
        secret,
        events,
        batch_max: i("webhook.batch_max").map_or(d.batch_max, |v| v as usize),
        batch_delay: ms("webhook.batch_delay_ms", d.batch_delay),
        timeout: ms("webhook.timeout_ms", d.timeout),
        retry_min: ms("webhook.retry_min_ms", d.retry_min),
        retry_max: ms("webhook.retry_max_ms", d.retry_max),
        max_age: i("webhook.max_age_secs").map_or(d.max_age, Duration::from_secs),
        max_outbox: i("webhook.max_outbox").unwrap_or(d.max_outbox),
        lease: ms("webhook.lease_ms", d.lease),
        expired_every: ms("webhook.expired_every_ms", d.expired_every),
        max_answer: i("webhook.max_answer_bytes").map_or(d.max_answer, |v| v as usize),
    };
    if c.retry_min > c.retry_max {
        return Err(bad(
            "webhook.retry_min_ms",
            format!(
                "{} ms is above webhook.retry_max_ms ({} ms)",
                c.retry_min.as_millis(),
                c.retry_max.as_millis()
            ),
        ));
    }
    if c.lease <= c.timeout {
        return Err(bad(
            "webhook.lease_ms",
            format!(
                "{} ms must be longer than webhook.timeout_ms ({} ms): another node would send \
                 a batch whose POST is still under way",
                c.lease.as_millis(),
                c.timeout.as_millis()
            ),
        ));
    }
    Ok(c)
}

/// How an error names where a key's value came from.
fn origin_text(origin: &str) -> String {
    if origin.is_empty() {
        "not set".to_owned()
    } else {
        format!("from {origin}")
    }
}

#[cfg(test)]
mod tests;
