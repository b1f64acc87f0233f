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

use clap::Parser;
use herald_store_mongo::MongoConfig;
use toml::{Table, Value};

/// What a key's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any non-empty string.
    Str,
    /// A `host:port` socket address.
    Addr,
    /// A whole number within bounds.
    Int { min: i64, max: i64 },
    /// `true` or `false`.
    Bool,
    /// A list of non-empty strings (in the environment: comma-separated).
    StrList,
    /// One of the given words.
    Word(&'static [&'static str]),
}

/// One configuration key: its dotted path in the file, its environment variable, its type.
struct Key {
    path: &'static str,
    env: &'static str,
    kind: Kind,
    help: &'static str,
}

const MS_MAX: i64 = 24 * 3600 * 1000;

/// Every configuration key Herald knows. `herald --help` and docs/configuration.md list them.
const KEYS: &[Key] = &[
    Key {
        path: "role",
        env: "HERALD_ROLE",
        kind: Kind::Word(&["all", "connector", "api"]),
        help: "what this node serves",
    },
    Key {
        path: "node_id",
        env: "HERALD_NODE_ID",
        kind: Kind::Str,
        help: "this node's name in claims, logs and metrics (default: host name + port)",
    },
    Key {
        path: "api.listen",
        env: "HERALD_API_LISTEN",
        kind: Kind::Addr,
        help: "REST API listen address",
    },
    Key {
        path: "api.keys",
        env: "HERALD_API_KEY",
        kind: Kind::StrList,
        help: "publish API keys (Authorization: Bearer <key>)",
    },
    Key {
        path: "api.max_body",
        env: "HERALD_API_MAX_BODY",
        kind: Kind::Int {
            min: 1024,
            max: 64 << 20,
        },
        help: "largest accepted request body, bytes",
    },
    Key {
        path: "api.max_answer",
        env: "HERALD_API_MAX_ANSWER",
        kind: Kind::Int {
            min: 64 << 10,
            max: 1 << 30,
        },
        help: "largest /queues answer, bytes: messages stop before it and `more` says some remain",
    },
    Key {
        path: "api.max_listed_errors",
        env: "HERALD_API_MAX_LISTED_ERRORS",
        kind: Kind::Int {
            min: 1,
            max: 10_000,
        },
        help: "problems listed in an error answer; the rest are counted in one last line",
    },
    Key {
        path: "connector.listen",
        env: "HERALD_CONNECTOR_LISTEN",
        kind: Kind::Addr,
        help: "Socket.IO listen address",
    },
    Key {
        path: "connector.window",
        env: "HERALD_WINDOW",
        kind: Kind::Int { min: 1, max: 4096 },
        help: "in-flight messages per session in ack mode",
    },
    Key {
        path: "connector.ping_interval_ms",
        env: "HERALD_CONNECTOR_PING_INTERVAL_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "Engine.IO ping interval",
    },
    Key {
        path: "connector.ping_timeout_ms",
        env: "HERALD_CONNECTOR_PING_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "Engine.IO ping timeout",
    },
    Key {
        path: "connector.connect_timeout_ms",
        env: "HERALD_CONNECTOR_CONNECT_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time a client has to send its Socket.IO CONNECT",
    },
    Key {
        path: "connector.max_payload",
        env: "HERALD_CONNECTOR_MAX_PAYLOAD",
        kind: Kind::Int {
            min: 1024,
            max: 64 << 20,
        },
        help: "largest accepted Engine.IO payload, bytes",
    },
    Key {
        path: "connector.max_queue_bytes",
        env: "HERALD_CONNECTOR_MAX_QUEUE_BYTES",
        kind: Kind::Int {
            min: 64 << 10,
            max: 1 << 30,
        },
        help: "most bytes waiting to be sent to one client before its session is closed",
    },
    Key {
        path: "connector.close_timeout_ms",
        env: "HERALD_CONNECTOR_CLOSE_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time an ending session's client has to answer the close before its socket is dropped",
    },
    Key {
        path: "connector.cors_origins",
        env: "HERALD_CONNECTOR_CORS_ORIGINS",
        kind: Kind::StrList,
        help: "web origins whose pages may use Socket.IO with credentials; [\"*\"] = any page, without credentials",
    },
    Key {
        path: "connector.cors_max_age_secs",
        env: "HERALD_CONNECTOR_CORS_MAX_AGE_SECS",
        kind: Kind::Int {
            min: 0,
            max: 86_400,
        },
        help: "how long a browser may reuse a CORS preflight answer",
    },
    Key {
        path: "auth.secret",
        env: "HERALD_SECRET",
        kind: Kind::Str,
        help: "HMAC/JWT secret for client auth (default: generated once into <data_dir>/secret on a single node)",
    },
    Key {
        path: "auth.legacy",
        env: "HERALD_LEGACY_AUTH",
        kind: Kind::Bool,
        help: "accept the seed's x-nbb-* headers",
    },
    Key {
        path: "auth.hmac",
        env: "HERALD_AUTH_HMAC",
        kind: Kind::Bool,
        help: "accept HMAC connect auth",
    },
    Key {
        path: "auth.jwt",
        env: "HERALD_AUTH_JWT",
        kind: Kind::Bool,
        help: "accept JWT connect auth",
    },
    Key {
        path: "auth.max_skew_secs",
        env: "HERALD_AUTH_MAX_SKEW_SECS",
        kind: Kind::Int {
            min: 1,
            max: 86_400,
        },
        help: "largest accepted age (now - ts) of a signature",
    },
    Key {
        path: "auth.max_future_skew_secs",
        env: "HERALD_AUTH_MAX_FUTURE_SKEW_SECS",
        kind: Kind::Int {
            min: 0,
            max: 86_400,
        },
        help: "largest accepted ts - now of a signature (a client clock ahead of the server's)",
    },
    Key {
        path: "store.data_dir",
        env: "HERALD_DATA_DIR",
        kind: Kind::Str,
        help: "embedded store location",
    },
    Key {
        path: "store.mongo",
        env: "HERALD_MONGO",
        kind: Kind::Str,
        help: "MongoDB URL; when set, queues live in MongoDB instead of the embedded store",
    },
    Key {
        path: "store.recover_damaged_log",
        env: "HERALD_STORE_RECOVER_DAMAGED_LOG",
        kind: Kind::Bool,
        help: "open an embedded log damaged before its end: skip the damaged bytes, keep every intact record (docs/operations.md)",
    },
    Key {
        path: "store.mongo_known_counters",
        env: "HERALD_STORE_MONGO_KNOWN_COUNTERS",
        kind: Kind::Int {
            min: 0,
            max: 100_000_000,
        },
        help: "clients whose id counters a node remembers (about 100 bytes each): a push to them costs no counter read",
    },
    Key {
        path: "broker.redis",
        env: "HERALD_REDIS",
        kind: Kind::Str,
        help: "Redis URL (redis:// or redis+cluster://h1,h2); when set, nodes coordinate through Redis",
    },
    Key {
        path: "retention.cap",
        env: "HERALD_RETENTION_CAP",
        kind: Kind::Int {
            min: 1,
            max: i64::MAX,
        },
        help: "messages kept per client",
    },
    Key {
        path: "retention.ttl_secs",
        env: "HERALD_RETENTION_TTL_SECS",
        kind: Kind::Int {
            min: 1,
            max: 10 * 365 * 86_400,
        },
        help: "default message time to live",
    },
    Key {
        path: "http.max_head",
        env: "HERALD_HTTP_MAX_HEAD",
        kind: Kind::Int {
            min: 1024,
            max: 1 << 20,
        },
        help: "largest HTTP request head (request line and headers), bytes; larger is answered 431",
    },
    Key {
        path: "http.head_timeout_ms",
        env: "HERALD_HTTP_HEAD_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time an HTTP request head may take to arrive (408 and close after it)",
    },
    Key {
        path: "http.body_timeout_ms",
        env: "HERALD_HTTP_BODY_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time an HTTP request body may take to arrive (408 and close after it)",
    },
    Key {
        path: "http.idle_timeout_ms",
        env: "HERALD_HTTP_IDLE_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time a kept-alive HTTP connection may wait for its next request",
    },
    Key {
        path: "http.write_timeout_ms",
        env: "HERALD_HTTP_WRITE_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time an HTTP answer may take to be written (a client that does not read)",
    },
    Key {
        path: "http.max_connections",
        env: "HERALD_HTTP_MAX_CONNECTIONS",
        kind: Kind::Int {
            min: 0,
            max: 100_000_000,
        },
        help: "connections per listener (WebSockets included); more are answered 503; 0 = derived from RLIMIT_NOFILE",
    },
    Key {
        path: "log.level",
        env: "HERALD_LOG_LEVEL",
        kind: Kind::Word(&["error", "warn", "info", "debug", "trace"]),
        help: "log level",
    },
];

/// Command-line flags. Each one is the twin of a key in `KEYS` (see `Flags::to_overrides`).
/// No `Debug`: they may hold the secret and API keys.
#[derive(Default, Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: a push server with durable, ordered, acknowledged per-client queues.",
    after_help = "Every key can also be set in the TOML file given by --config and by its \
                  HERALD_* environment variable; flags override the environment, which \
                  overrides the file. Run `herald --print-keys` to list every key."
)]
pub struct Flags {
    /// The TOML configuration file [env: HERALD_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What this node serves: all, connector or api [env: HERALD_ROLE]
    #[arg(long)]
    pub role: Option<String>,
    /// REST API listen address, host:port (port 0 = any free port) [env: HERALD_API_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<String>,
    /// Socket.IO listen address; the same as --api-listen serves both on one port [env: HERALD_CONNECTOR_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub connector_listen: Option<String>,
    /// Embedded store location [env: HERALD_DATA_DIR]
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<String>,
    /// HMAC/JWT secret for client auth [env: HERALD_SECRET]
    #[arg(long, value_name = "S")]
    pub secret: Option<String>,
    /// A publish API key; repeat for several [env: HERALD_API_KEY, comma-separated]
    #[arg(long = "api-key", value_name = "K")]
    pub api_keys: Vec<String>,
    /// Accept the seed's x-nbb-* headers [env: HERALD_LEGACY_AUTH]
    #[arg(long)]
    pub legacy_auth: bool,
    /// Use Redis (redis:// or redis+cluster://h1,h2,..) [env: HERALD_REDIS]
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Use MongoDB instead of the embedded store [env: HERALD_MONGO]
    #[arg(long, value_name = "URL")]
    pub mongo: Option<String>,
    /// Open an embedded log that is damaged before its end: skip the damaged bytes, keep every intact record, set the damaged file aside (once, after reading docs/operations.md) [env: HERALD_STORE_RECOVER_DAMAGED_LOG]
    #[arg(long)]
    pub recover_damaged_log: bool,
    /// This node's name in claims, logs and metrics [env: HERALD_NODE_ID]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// In-flight messages per session in ack mode [env: HERALD_WINDOW]
    #[arg(long, value_name = "N")]
    pub window: Option<String>,
    /// Log level: error, warn, info, debug, trace [env: HERALD_LOG_LEVEL]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Print every configuration key with its environment variable, then exit
    #[arg(long)]
    pub print_keys: bool,
}

impl Flags {
    /// The flags that were given, as `(key path, raw value)` pairs.
    fn to_overrides(&self) -> Vec<(&'static str, RawValue)> {
        let mut out = Vec::new();
        let mut one = |path: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((path, RawValue::Text(v.clone())));
            }
        };
        one("role", &self.role);
        one("api.listen", &self.api_listen);
        one("connector.listen", &self.connector_listen);
        one("store.data_dir", &self.data_dir);
        one("auth.secret", &self.secret);
        one("broker.redis", &self.redis);
        one("store.mongo", &self.mongo);
        one("node_id", &self.node_id);
        one("connector.window", &self.window);
        one("log.level", &self.log_level);
        if !self.api_keys.is_empty() {
            out.push(("api.keys", RawValue::List(self.api_keys.clone())));
        }
        if self.legacy_auth {
            out.push(("auth.legacy", RawValue::Text("true".into())));
        }
        if self.recover_damaged_log {
            out.push(("store.recover_damaged_log", RawValue::Text("true".into())));
        }
        out
    }
}

/// A value from the environment or a flag, before it is checked against its key's kind.
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
    /// MongoDB: clients whose id counters a node remembers.
    pub mongo_known_counters: usize,
    /// How nodes coordinate.
    pub broker: BrokerChoice,
    /// Messages kept per client.
    pub retention_cap: u64,
    /// Default message time to live.
    pub retention_ttl: Duration,
    /// Log level.
    pub log_level: log::LevelFilter,
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
            .field("mongo_known_counters", &self.mongo_known_counters)
            .field("broker", &self.broker)
            .field("retention_cap", &self.retention_cap)
            .field("retention_ttl", &self.retention_ttl)
            .field("log_level", &self.log_level)
            .finish()
    }
}

impl Config {
    /// Builds the configuration from the flags, the file they name (or `HERALD_CONFIG`) and
    /// the given environment.
    ///
    /// # Errors
    /// The first [`ConfigError`] found: unreadable file, unknown key, bad value, or a
    /// combination refused (a non-loopback API address without a key).
    pub fn load(
        flags: &Flags,
        env: &BTreeMap<String, String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let mut table = Table::new();
        let mut sources: BTreeMap<&'static str, String> = BTreeMap::new();

        let file = flags
            .config
            .clone()
            .or_else(|| env.get("HERALD_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let parsed: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::File {
                    path: shown.clone(),
                    reason: e.message().to_string(),
                })?;
            flatten_file(&parsed, "", &mut table, &mut sources, &shown)?;
        }

        let known_env: Vec<&str> = KEYS.iter().map(|k| k.env).collect();
        for (name, value) in env {
            if let Some(key) = KEYS.iter().find(|k| k.env == name.as_str()) {
                let raw = if key.kind == Kind::StrList {
                    RawValue::List(value.split(',').map(|s| s.trim().to_owned()).collect())
                } else {
                    RawValue::Text(value.clone())
                };
                let v = convert(key, raw, &format!("environment variable {name}"))?;
                table.insert(key.path.into(), v);
                sources.insert(key.path, format!("environment variable {name}"));
            } else if name.starts_with("HERALD_")
                && name != "HERALD_CONFIG"
                && !is_foreign_herald_var(name)
                && !known_env.contains(&name.as_str())
            {
                warnings.push(format!(
                    "ignoring unknown environment variable {name} (run `herald --print-keys`)"
                ));
            }
        }

        for (path, raw) in flags.to_overrides() {
            let key = key(path);
            let flag = format!("flag --{}", flag_name(path));
            let v = convert(key, raw, &flag)?;
            table.insert(path.into(), v);
            sources.insert(path, flag);
        }

        let config = Config::from_flat(&table, &sources)?;
        Ok((config, warnings))
    }

    /// Builds the configuration from checked, flattened key-values.
    fn from_flat(
        t: &Table,
        sources: &BTreeMap<&'static str, String>,
    ) -> Result<Config, ConfigError> {
        let s = |p: &str| t.get(p).and_then(Value::as_str).map(str::to_owned);
        let i = |p: &str, d: i64| t.get(p).and_then(Value::as_integer).unwrap_or(d);
        let b = |p: &str, d: bool| t.get(p).and_then(Value::as_bool).unwrap_or(d);
        let addr = |p: &str, d: &str| -> SocketAddr {
            s(p).and_then(|v| v.parse().ok())
                .unwrap_or_else(|| d.parse().expect("default addresses parse"))
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
        let data_dir = PathBuf::from(s("store.data_dir").unwrap_or_else(|| "./herald-data".into()));
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
                    || url.starts_with("redis+cluster://"))
                {
                    return Err(bad(
                        "broker.redis",
                        format!(
                            "expected a redis://, rediss:// or redis+cluster:// URL, found {:?}",
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
        let api_listen = addr("api.listen", "127.0.0.1:3000");
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
            None => vec!["*".to_owned()],
        };
        check_cors_origins(&cors_origins).map_err(|e| bad("connector.cors_origins", e))?;
        let ping_interval = Duration::from_millis(i("connector.ping_interval_ms", 25_000) as u64);
        let ping_timeout = Duration::from_millis(i("connector.ping_timeout_ms", 20_000) as u64);
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
            api_max_body: i("api.max_body", 1 << 20) as usize,
            api_max_answer: i("api.max_answer", 4 << 20) as usize,
            api_max_listed_errors: i("api.max_listed_errors", 20) as usize,
            connector_listen: addr("connector.listen", "127.0.0.1:3001"),
            window: i("connector.window", 64) as usize,
            ping_interval,
            ping_timeout,
            connect_timeout: Duration::from_millis(i("connector.connect_timeout_ms", 45_000) as u64),
            max_payload: i("connector.max_payload", 1_000_000) as usize,
            max_queue_bytes: i("connector.max_queue_bytes", 16 << 20) as usize,
            close_timeout: Duration::from_millis(i("connector.close_timeout_ms", 3_000) as u64),
            cors_origins,
            cors_max_age: Duration::from_secs(i("connector.cors_max_age_secs", 600) as u64),
            secret,
            legacy_auth: b("auth.legacy", false),
            hmac_auth: b("auth.hmac", true),
            jwt_auth: b("auth.jwt", true),
            max_skew: Duration::from_secs(i("auth.max_skew_secs", 900) as u64),
            max_future_skew: Duration::from_secs(i("auth.max_future_skew_secs", 60) as u64),
            store,
            data_dir,
            recover_damaged_log: b("store.recover_damaged_log", false),
            mongo_known_counters: i(
                "store.mongo_known_counters",
                MongoConfig::new("").known_counters as i64,
            ) as usize,
            broker,
            retention_cap: i("retention.cap", 10_000) as u64,
            retention_ttl: Duration::from_secs(i("retention.ttl_secs", 7 * 86_400) as u64),
            log_level,
            http_max_head: i("http.max_head", 8 << 10) as usize,
            http_head_timeout: Duration::from_millis(i("http.head_timeout_ms", 10_000) as u64),
            http_body_timeout: Duration::from_millis(i("http.body_timeout_ms", 30_000) as u64),
            http_idle_timeout: Duration::from_millis(i("http.idle_timeout_ms", 60_000) as u64),
            http_write_timeout: Duration::from_millis(i("http.write_timeout_ms", 30_000) as u64),
            http_max_connections: match i("http.max_connections", 0) {
                0 => None,
                n => Some(n as usize),
            },
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

/// Variables with the `HERALD_` prefix that belong to Herald's tools, not to the server.
fn is_foreign_herald_var(name: &str) -> bool {
    [
        "HERALD_IT_",
        "HERALD_TEST_",
        "HERALD_SIM_",
        "HERALD_BENCH_",
        "HERALD_CLI_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// `connector.cors_origins` is `["*"]` alone, or origins as browsers send them:
/// `http(s)://host[:port]`, no path, no trailing slash (a browser's `Origin` never has one, so
/// such an entry would match nothing).
fn check_cors_origins(origins: &[String]) -> Result<(), String> {
    if origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            return Err(
                "\"*\" (any page, without credentials) cannot be listed with origins (which get \
                 credentials): use [\"*\"] alone or list the origins"
                    .into(),
            );
        }
        return Ok(());
    }
    for o in origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let valid = rest.is_some_and(|host| {
            !host.is_empty()
                && !host.contains(['/', '?', '#', ' ', '*'])
                && host == host.to_ascii_lowercase()
        });
        if !valid {
            return Err(format!(
                "expected an origin like https://app.example.com or http://localhost:8080 \
                 (lower case, no path, no trailing slash), found {o:?}"
            ));
        }
    }
    Ok(())
}

/// How an error names where a key's value came from.
fn origin_text(origin: &str) -> String {
    if origin.is_empty() {
        "not set".to_owned()
    } else {
        format!("from {origin}")
    }
}

fn key(path: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.path == path)
        .expect("flags only name declared keys")
}

fn flag_name(path: &str) -> String {
    match path {
        "connector.window" => "window".into(),
        "store.data_dir" => "data-dir".into(),
        "auth.secret" => "secret".into(),
        "broker.redis" => "redis".into(),
        "store.mongo" => "mongo".into(),
        "api.keys" => "api-key".into(),
        "auth.legacy" => "legacy-auth".into(),
        "store.recover_damaged_log" => "recover-damaged-log".into(),
        other => other.replace(['.', '_'], "-"),
    }
}

/// Walks the file's tables, checking every key against [`KEYS`] and flattening to dotted paths.
fn flatten_file(
    t: &Table,
    prefix: &str,
    out: &mut Table,
    sources: &mut BTreeMap<&'static str, String>,
    file: &str,
) -> Result<(), ConfigError> {
    for (name, value) in t {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Value::Table(inner) = value {
            if KEYS.iter().any(|k| k.path.starts_with(&format!("{path}."))) {
                flatten_file(inner, &path, out, sources, file)?;
                continue;
            }
            return Err(ConfigError::UnknownKey(path));
        }
        let Some(key) = KEYS.iter().find(|k| k.path == path) else {
            return Err(ConfigError::UnknownKey(path));
        };
        let source = format!("file {file}");
        let v = check(key, value.clone(), &source)?;
        out.insert(key.path.into(), v);
        sources.insert(key.path, source);
    }
    Ok(())
}

/// Turns an environment or flag value into a checked TOML value of the key's kind.
fn convert(key: &Key, raw: RawValue, source: &str) -> Result<Value, ConfigError> {
    let v = match (key.kind, raw) {
        (Kind::StrList, RawValue::List(l)) => {
            Value::Array(l.into_iter().map(Value::String).collect())
        }
        (Kind::StrList, RawValue::Text(s)) => Value::Array(vec![Value::String(s)]),
        (Kind::Int { .. }, RawValue::Text(s)) => match s.trim().parse::<i64>() {
            Ok(n) => Value::Integer(n),
            Err(_) => {
                return Err(bad_value(
                    key,
                    source,
                    format!(
                        "expected a whole number, found {}",
                        shown(key, &Value::String(s))
                    ),
                ));
            }
        },
        (Kind::Bool, RawValue::Text(s)) => match s.trim() {
            "true" | "1" | "yes" | "on" => Value::Boolean(true),
            "false" | "0" | "no" | "off" => Value::Boolean(false),
            _ => {
                return Err(bad_value(
                    key,
                    source,
                    format!(
                        "expected true or false, found {}",
                        shown(key, &Value::String(s))
                    ),
                ));
            }
        },
        (_, RawValue::Text(s)) => Value::String(s),
        (_, RawValue::List(l)) => Value::String(l.join(",")),
    };
    check(key, v, source)
}

fn bad_value(key: &Key, source: &str, reason: String) -> ConfigError {
    ConfigError::BadValue {
        key: key.path.into(),
        origin: source.into(),
        reason,
    }
}

/// Keys whose values are secrets: never shown, not even in an error about them.
const SECRET_KEYS: [&str; 2] = ["auth.secret", "api.keys"];

/// Keys holding a URL that may carry a password.
const URL_KEYS: [&str; 2] = ["store.mongo", "broker.redis"];

/// A URL without the user and password it may carry, for logs and error messages:
/// `mongodb://***@host/db`. Everything before the last `@` (after the scheme) is hidden.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// A value as an error message may show it: secrets hidden, URLs without their password.
fn shown(key: &Key, v: &Value) -> String {
    if SECRET_KEYS.contains(&key.path) {
        return format!("{} (value hidden: it is a secret)", v.type_str());
    }
    match v.as_str() {
        Some(s) if URL_KEYS.contains(&key.path) => format!("{} {:?}", v.type_str(), redact_url(s)),
        _ if URL_KEYS.contains(&key.path) => v.type_str().to_owned(),
        _ => format!("{} {v}", v.type_str()),
    }
}

/// Checks one value against its key's kind.
fn check(key: &Key, v: Value, source: &str) -> Result<Value, ConfigError> {
    let found = || format!("found {}", shown(key, &v));
    match key.kind {
        Kind::Str => match v.as_str() {
            Some(s) if !s.is_empty() => Ok(v),
            _ => Err(bad_value(
                key,
                source,
                format!("expected a non-empty string, {}", found()),
            )),
        },
        Kind::Addr => match v.as_str().map(str::parse::<SocketAddr>) {
            Some(Ok(_)) => Ok(v),
            _ => Err(bad_value(
                key,
                source,
                format!(
                    "expected host:port with an IP address (e.g. 127.0.0.1:3000), {}",
                    found()
                ),
            )),
        },
        Kind::Int { min, max } => match v.as_integer() {
            Some(n) if (min..=max).contains(&n) => Ok(v),
            _ => Err(bad_value(
                key,
                source,
                format!("expected a whole number from {min} to {max}, {}", found()),
            )),
        },
        Kind::Bool => match v.as_bool() {
            Some(_) => Ok(v),
            None => Err(bad_value(
                key,
                source,
                format!("expected true or false, {}", found()),
            )),
        },
        Kind::StrList => match v.as_array() {
            Some(a) if a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty())) => Ok(v),
            _ => Err(bad_value(
                key,
                source,
                format!("expected a list of non-empty strings, {}", found()),
            )),
        },
        Kind::Word(words) => match v.as_str() {
            Some(s) if words.contains(&s) => Ok(v),
            _ => Err(bad_value(
                key,
                source,
                format!("expected one of {}, {}", words.join(", "), found()),
            )),
        },
    }
}

/// Every key with its environment variable and meaning, one per line (`herald --print-keys`).
pub fn describe_keys() -> String {
    KEYS.iter()
        .map(|k| format!("{:<32} {:<36} {}\n", k.path, k.env, k.help))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn load(args: &[&str], e: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut argv = vec!["herald"];
        argv.extend_from_slice(args);
        let flags = Flags::try_parse_from(argv).expect("flags parse");
        Config::load(&flags, &env(e)).map(|(c, _)| c)
    }

    fn file(text: &str) -> tempfile_path::TempFile {
        tempfile_path::TempFile::new(text)
    }

    /// A file removed on drop, without a dependency.
    mod tempfile_path {
        pub struct TempFile(pub std::path::PathBuf);
        impl TempFile {
            pub fn new(text: &str) -> TempFile {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "herald-config-test-{}-{}.toml",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&p, text).unwrap();
                TempFile(p)
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_run_one_node_with_no_external_service() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.role, Role::All);
        assert_eq!(c.api_listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(c.connector_listen, "127.0.0.1:3001".parse().unwrap());
        assert_eq!(c.store, StoreChoice::Embedded("./herald-data".into()));
        assert_eq!(c.broker, BrokerChoice::InProcess);
        assert_eq!(c.window, 64);
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.ping_timeout, Duration::from_secs(20));
        assert_eq!(c.max_queue_bytes, 16 << 20);
        assert_eq!(c.close_timeout, Duration::from_secs(3));
        assert_eq!(c.retention_cap, 10_000);
        assert_eq!(c.retention_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(c.api_max_body, 1 << 20);
        assert_eq!(c.http_max_head, 8 << 10);
        assert_eq!(c.http_head_timeout, Duration::from_secs(10));
        assert_eq!(c.http_body_timeout, Duration::from_secs(30));
        assert_eq!(c.http_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.http_write_timeout, Duration::from_secs(30));
        assert_eq!(c.http_max_connections, None);
    }

    #[test]
    fn an_error_about_a_key_that_was_not_set_says_so() {
        let err = load(&["--api-listen", "0.0.0.0:3000"], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`api.keys` (not set)"), "{msg}");
        assert!(!msg.contains("default"), "{msg}");
    }

    #[test]
    fn cors_origins_are_any_page_by_default_and_checked_when_listed() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.cors_origins, vec!["*"]);
        assert_eq!(c.cors_max_age, Duration::from_secs(600));
        let env = [(
            "HERALD_CONNECTOR_CORS_ORIGINS",
            "https://app.example.com,http://localhost:8080",
        )];
        let c = load(&[], &env).unwrap();
        assert_eq!(
            c.cors_origins,
            vec!["https://app.example.com", "http://localhost:8080"]
        );
        for bad in [
            "*,https://a.example",
            "https://a.example/",
            "a.example",
            "HTTPS://A.example",
        ] {
            let err = load(&[], &[("HERALD_CONNECTOR_CORS_ORIGINS", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("connector.cors_origins"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn http_limits_come_from_the_file_and_the_environment() {
        let f = file("[http]\nmax_head = 16384\nmax_connections = 100\n");
        let path = f.0.to_str().unwrap();
        let c = load(
            &["--config", path],
            &[("HERALD_HTTP_BODY_TIMEOUT_MS", "500")],
        )
        .unwrap();
        assert_eq!(c.http_max_head, 16384);
        assert_eq!(c.http_max_connections, Some(100));
        assert_eq!(c.http_body_timeout, Duration::from_millis(500));
        assert!(load(&[], &[("HERALD_HTTP_MAX_HEAD", "10")]).is_err());
    }

    #[test]
    fn flags_override_env_which_overrides_the_file() {
        let f = file("[connector]\nwindow = 8\n[api]\nlisten = \"127.0.0.1:4000\"\n");
        let path = f.0.to_str().unwrap();
        let c = load(&["--config", path], &[]).unwrap();
        assert_eq!(c.window, 8);
        assert_eq!(c.api_listen.port(), 4000);
        let c = load(&["--config", path], &[("HERALD_WINDOW", "16")]).unwrap();
        assert_eq!(c.window, 16);
        let c = load(
            &["--config", path, "--window", "32"],
            &[("HERALD_WINDOW", "16")],
        )
        .unwrap();
        assert_eq!(c.window, 32);
        let c = load(&[], &[("HERALD_CONFIG", path)]).unwrap();
        assert_eq!(c.window, 8);
    }

    #[test]
    fn unknown_keys_stop_start_up_with_their_name() {
        let f = file("[connector]\nwindoww = 8\n");
        let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
        assert_eq!(err, ConfigError::UnknownKey("connector.windoww".into()));
        let f = file("colour = \"red\"\n");
        let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
        assert_eq!(err, ConfigError::UnknownKey("colour".into()));
        let f = file("[nope]\nx = 1\n");
        let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
        assert_eq!(err, ConfigError::UnknownKey("nope".into()));
    }

    #[test]
    fn bad_values_name_the_key_and_the_source() {
        let f = file("[connector]\nwindow = \"many\"\n");
        let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("connector.window") && msg.contains("whole number"),
            "{msg}"
        );
        let err = load(&[], &[("HERALD_WINDOW", "0")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("HERALD_WINDOW") && msg.contains("from 1 to 4096"),
            "{msg}"
        );
        let err = load(&["--api-listen", "localhost"], &[]).unwrap_err();
        assert!(err.to_string().contains("--api-listen"), "{err}");
        let err = load(&["--role", "boss"], &[]).unwrap_err();
        assert!(err.to_string().contains("all, connector, api"), "{err}");
        let err = load(&[], &[("HERALD_LEGACY_AUTH", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn bad_toml_is_a_file_error() {
        let f = file("[connector\n");
        let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
        let err = load(&["--config", "/nonexistent/herald.toml"], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
    }

    #[test]
    fn public_api_without_a_key_is_refused() {
        let err = load(&["--api-listen", "0.0.0.0:3000"], &[]).unwrap_err();
        assert!(err.to_string().contains("API key"), "{err}");
        let c = load(
            &[
                "--api-listen",
                "0.0.0.0:3000",
                "--api-key",
                "k1",
                "--api-key",
                "k2",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.api_keys, vec!["k1", "k2"]);
        let c = load(
            &["--api-listen", "0.0.0.0:3000"],
            &[("HERALD_API_KEY", "a, b")],
        )
        .unwrap();
        assert_eq!(c.api_keys, vec!["a", "b"]);
    }

    #[test]
    fn cluster_settings_are_checked_together() {
        let err = load(&["--redis", "redis://127.0.0.1"], &[]).unwrap_err();
        assert!(err.to_string().contains("auth.secret"), "{err}");
        let err = load(&["--redis", "redis://127.0.0.1", "--secret", "s"], &[]).unwrap_err();
        assert!(err.to_string().contains("--mongo"), "{err}");
        let err = load(&["--role", "connector", "--secret", "s"], &[]).unwrap_err();
        assert!(err.to_string().contains("needs Redis"), "{err}");
        let c = load(
            &[
                "--role",
                "connector",
                "--secret",
                "s",
                "--redis",
                "redis+cluster://a:1,b:2",
                "--mongo",
                "mongodb://m",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.role, Role::Connector);
        assert_eq!(
            c.broker,
            BrokerChoice::Redis("redis+cluster://a:1,b:2".into())
        );
        assert_eq!(c.store, StoreChoice::Mongo("mongodb://m".into()));
        let err = load(&["--mongo", "http://x"], &[]).unwrap_err();
        assert!(err.to_string().contains("mongodb://"), "{err}");
        let err = load(&["--node-id", "a:b"], &[]).unwrap_err();
        assert!(err.to_string().contains("node_id"), "{err}");
    }

    #[test]
    fn unknown_herald_env_vars_are_warned_not_fatal() {
        let flags = Flags::try_parse_from(["herald"]).unwrap();
        let (_, warnings) = Config::load(
            &flags,
            &env(&[
                ("HERALD_WINDOWW", "3"),
                ("HERALD_IT_REDIS_IMAGE", "x"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("HERALD_WINDOWW"));
    }

    #[test]
    fn single_port_when_both_addresses_match() {
        let c = load(
            &[
                "--api-listen",
                "127.0.0.1:3005",
                "--connector-listen",
                "127.0.0.1:3005",
            ],
            &[],
        )
        .unwrap();
        assert!(c.single_port());
        let c = load(
            &[
                "--api-listen",
                "127.0.0.1:0",
                "--connector-listen",
                "127.0.0.1:0",
            ],
            &[],
        )
        .unwrap();
        assert!(!c.single_port(), "port 0 twice means two free ports");
    }

    #[test]
    fn the_log_recovery_is_off_unless_asked_for() {
        assert!(!load(&[], &[]).unwrap().recover_damaged_log);
        assert!(
            load(&["--recover-damaged-log"], &[])
                .unwrap()
                .recover_damaged_log
        );
        let on = [("HERALD_STORE_RECOVER_DAMAGED_LOG", "true")];
        assert!(load(&[], &on).unwrap().recover_damaged_log);
        let f = file("[store]\nrecover_damaged_log = true\n");
        assert!(
            load(&["--config", f.0.to_str().unwrap()], &[])
                .unwrap()
                .recover_damaged_log
        );
        let err = load(&[], &[("HERALD_STORE_RECOVER_DAMAGED_LOG", "maybe")]).unwrap_err();
        assert!(
            err.to_string().contains("store.recover_damaged_log"),
            "{err}"
        );
    }

    #[test]
    fn answer_error_and_skew_bounds_have_defaults_and_keys() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.api_max_answer, 4 << 20);
        assert_eq!(c.api_max_listed_errors, 20);
        assert_eq!(c.max_future_skew, Duration::from_secs(60));
        assert_eq!(c.max_skew, Duration::from_secs(900));
        let f = file(
            "[api]\nmax_answer = 100000\nmax_listed_errors = 3\n[auth]\nmax_future_skew_secs = 0\n",
        );
        let c = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap();
        assert_eq!(
            (c.api_max_answer, c.api_max_listed_errors, c.max_future_skew),
            (100_000, 3, Duration::ZERO)
        );
        let c = load(&[], &[("HERALD_AUTH_MAX_FUTURE_SKEW_SECS", "5")]).unwrap();
        assert_eq!(c.max_future_skew, Duration::from_secs(5));
        let err = load(&[], &[("HERALD_API_MAX_ANSWER", "10")]).unwrap_err();
        assert!(err.to_string().contains("api.max_answer"), "{err}");
    }

    #[test]
    fn errors_about_secrets_never_show_them() {
        let err = load(&[], &[("HERALD_API_KEY", "k-secret,,")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("api.keys") && !msg.contains("k-secret"),
            "{msg}"
        );
        let f = file("[auth]\nsecret = [\"s-secret\"]\n");
        let msg = load(&["--config", f.0.to_str().unwrap()], &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("auth.secret") && !msg.contains("s-secret"),
            "{msg}"
        );
        for (flag, url) in [
            ("--mongo", "mongo://u:pw-secret@db"),
            ("--redis", "http://:pw-secret@cache:6379"),
            ("--mongo", "u:pw-secret@db"),
        ] {
            let msg = load(&[flag, url, "--secret", "s"], &[])
                .unwrap_err()
                .to_string();
            assert!(!msg.contains("pw-secret") && msg.contains("***@"), "{msg}");
        }
        assert_eq!(redact_url("redis://:p@h:1/0"), "redis://***@h:1/0");
        let c = load(
            &[
                "--secret",
                "s-secret",
                "--api-key",
                "k-secret",
                "--role",
                "connector",
                "--redis",
                "redis://:pw-secret@r",
                "--mongo",
                "mongodb://u:pw-secret@m",
            ],
            &[],
        )
        .unwrap();
        let debug = format!("{c:?}");
        for s in ["s-secret", "k-secret", "pw-secret"] {
            assert!(!debug.contains(s), "{debug}");
        }
        assert!(debug.contains("mongodb://***@m"), "{debug}");
        assert_eq!(redact_url("mongodb://h/db"), "mongodb://h/db");
    }

    #[test]
    fn every_key_has_a_unique_env_twin() {
        let mut seen = std::collections::BTreeSet::new();
        for k in KEYS {
            assert!(k.env.starts_with("HERALD_"), "{}", k.env);
            assert!(seen.insert(k.env), "duplicate {}", k.env);
        }
        assert!(describe_keys().contains("HERALD_API_LISTEN"));
    }
}
