//! Every configuration key, declared once ([`KEYS`]): path, environment variable, kind,
//! meaning and flag.

/// What a key's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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

/// One configuration key, declared once: its dotted path in the file, its environment
/// variable, its type, what it means, and its command-line flag if it has one. The file's
/// schema, the environment, the flags (`herald --help`), `herald --print-keys` and the check
/// of docs/configuration.md all derive from [`KEYS`].
pub(super) struct Key {
    pub(super) path: &'static str,
    pub(super) env: &'static str,
    pub(super) kind: Kind,
    pub(super) help: &'static str,
    pub(super) flag: Option<Flag>,
}

/// The command-line flag of a key.
pub(super) struct Flag {
    /// `--<long>`.
    pub(super) long: &'static str,
    /// The value's placeholder in `--help`; empty for a switch (a [`Kind::Bool`] key set to
    /// `true` by the flag alone). A [`Kind::StrList`] key's flag may be repeated.
    pub(super) value_name: &'static str,
}

pub(super) const MS_MAX: i64 = 24 * 3600 * 1000;

/// Every configuration key Herald knows. `herald --help` and docs/configuration.md list them.
pub(super) const KEYS: &[Key] = &[
    Key {
        path: "role",
        env: "HERALD_ROLE",
        kind: Kind::Word(&["all", "connector", "api"]),
        help: "what this node serves",
        flag: Some(Flag {
            long: "role",
            value_name: "ROLE",
        }),
    },
    Key {
        path: "node_id",
        env: "HERALD_NODE_ID",
        kind: Kind::Str,
        help: "this node's name in claims, logs and metrics (default: host name + port)",
        flag: Some(Flag {
            long: "node-id",
            value_name: "ID",
        }),
    },
    Key {
        path: "api.listen",
        env: "HERALD_API_LISTEN",
        kind: Kind::Addr,
        help: "REST API listen address",
        flag: Some(Flag {
            long: "api-listen",
            value_name: "ADDR",
        }),
    },
    Key {
        path: "api.keys",
        env: "HERALD_API_KEY",
        kind: Kind::StrList,
        help: "publish API keys (Authorization: Bearer <key>)",
        flag: Some(Flag {
            long: "api-key",
            value_name: "K",
        }),
    },
    Key {
        path: "api.max_body",
        env: "HERALD_API_MAX_BODY",
        kind: Kind::Int {
            min: 1024,
            max: 64 << 20,
        },
        help: "largest accepted request body, bytes",
        flag: None,
    },
    Key {
        path: "api.max_answer",
        env: "HERALD_API_MAX_ANSWER",
        kind: Kind::Int {
            min: 64 << 10,
            max: 1 << 30,
        },
        help: "largest /queues answer, bytes: messages stop before it and `more` says some remain",
        flag: None,
    },
    Key {
        path: "api.max_listed_errors",
        env: "HERALD_API_MAX_LISTED_ERRORS",
        kind: Kind::Int {
            min: 1,
            max: 10_000,
        },
        help: "problems listed in an error answer; the rest are counted in one last line",
        flag: None,
    },
    Key {
        path: "connector.listen",
        env: "HERALD_CONNECTOR_LISTEN",
        kind: Kind::Addr,
        help: "Socket.IO listen address",
        flag: Some(Flag {
            long: "connector-listen",
            value_name: "ADDR",
        }),
    },
    Key {
        path: "connector.window",
        env: "HERALD_WINDOW",
        kind: Kind::Int { min: 1, max: 4096 },
        help: "in-flight messages per session in ack mode",
        flag: Some(Flag {
            long: "window",
            value_name: "N",
        }),
    },
    Key {
        path: "connector.ping_interval_ms",
        env: "HERALD_CONNECTOR_PING_INTERVAL_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "Engine.IO ping interval",
        flag: None,
    },
    Key {
        path: "connector.ping_timeout_ms",
        env: "HERALD_CONNECTOR_PING_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "Engine.IO ping timeout",
        flag: None,
    },
    Key {
        path: "connector.connect_timeout_ms",
        env: "HERALD_CONNECTOR_CONNECT_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time a client has to send its Socket.IO CONNECT",
        flag: None,
    },
    Key {
        path: "connector.max_payload",
        env: "HERALD_CONNECTOR_MAX_PAYLOAD",
        kind: Kind::Int {
            min: 1024,
            max: 64 << 20,
        },
        help: "largest accepted Engine.IO payload, bytes",
        flag: None,
    },
    Key {
        path: "connector.max_queue_bytes",
        env: "HERALD_CONNECTOR_MAX_QUEUE_BYTES",
        kind: Kind::Int {
            min: 64 << 10,
            max: 1 << 30,
        },
        help: "most bytes waiting to be sent to one client before its session is closed",
        flag: None,
    },
    Key {
        path: "connector.close_timeout_ms",
        env: "HERALD_CONNECTOR_CLOSE_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time an ending session's client has to answer the close before its socket is dropped",
        flag: None,
    },
    Key {
        path: "connector.cors_origins",
        env: "HERALD_CONNECTOR_CORS_ORIGINS",
        kind: Kind::StrList,
        help: "web origins whose pages may use Socket.IO with credentials; [\"*\"] = any page, without credentials",
        flag: None,
    },
    Key {
        path: "connector.cors_max_age_secs",
        env: "HERALD_CONNECTOR_CORS_MAX_AGE_SECS",
        kind: Kind::Int {
            min: 0,
            max: 86_400,
        },
        help: "how long a browser may reuse a CORS preflight answer",
        flag: None,
    },
    Key {
        path: "auth.secret",
        env: "HERALD_SECRET",
        kind: Kind::Str,
        help: "HMAC/JWT secret for client auth (default: generated once into <data_dir>/secret on a single node)",
        flag: Some(Flag {
            long: "secret",
            value_name: "S",
        }),
    },
    Key {
        path: "auth.legacy",
        env: "HERALD_LEGACY_AUTH",
        kind: Kind::Bool,
        help: "accept the seed's x-nbb-* headers",
        flag: Some(Flag {
            long: "legacy-auth",
            value_name: "",
        }),
    },
    Key {
        path: "auth.hmac",
        env: "HERALD_AUTH_HMAC",
        kind: Kind::Bool,
        help: "accept HMAC connect auth",
        flag: None,
    },
    Key {
        path: "auth.jwt",
        env: "HERALD_AUTH_JWT",
        kind: Kind::Bool,
        help: "accept JWT connect auth",
        flag: None,
    },
    Key {
        path: "auth.max_skew_secs",
        env: "HERALD_AUTH_MAX_SKEW_SECS",
        kind: Kind::Int {
            min: 1,
            max: 86_400,
        },
        help: "largest accepted age (now - ts) of a signature",
        flag: None,
    },
    Key {
        path: "auth.max_future_skew_secs",
        env: "HERALD_AUTH_MAX_FUTURE_SKEW_SECS",
        kind: Kind::Int {
            min: 0,
            max: 86_400,
        },
        help: "largest accepted ts - now of a signature (a client clock ahead of the server's)",
        flag: None,
    },
    Key {
        path: "store.data_dir",
        env: "HERALD_DATA_DIR",
        kind: Kind::Str,
        help: "embedded store location",
        flag: Some(Flag {
            long: "data-dir",
            value_name: "PATH",
        }),
    },
    Key {
        path: "store.mongo",
        env: "HERALD_MONGO",
        kind: Kind::Str,
        help: "MongoDB URL; when set, queues live in MongoDB instead of the embedded store",
        flag: Some(Flag {
            long: "mongo",
            value_name: "URL",
        }),
    },
    Key {
        path: "store.recover_damaged_log",
        env: "HERALD_STORE_RECOVER_DAMAGED_LOG",
        kind: Kind::Bool,
        help: "open an embedded log damaged before its end: skip the damaged bytes, keep every intact record (docs/operations.md)",
        flag: Some(Flag {
            long: "recover-damaged-log",
            value_name: "",
        }),
    },
    Key {
        path: "store.mongo_known_counters",
        env: "HERALD_STORE_MONGO_KNOWN_COUNTERS",
        kind: Kind::Int {
            min: 0,
            max: 100_000_000,
        },
        help: "clients whose id counters a node remembers (about 100 bytes each): a push to them costs no counter read",
        flag: None,
    },
    Key {
        path: "store.mongo_settle_ms",
        env: "HERALD_STORE_MONGO_SETTLE_MS",
        kind: Kind::Int {
            min: 100,
            max: 600_000,
        },
        help: "how long a read waits for an id missing between stored messages (an insert of another API node still on its way) before it counts as a hole",
        flag: None,
    },
    Key {
        path: "broker.redis",
        env: "HERALD_REDIS",
        kind: Kind::Str,
        help: "Redis URL (redis://, redis+cluster://h1,h2 or redis+sentinel://s1,s2/<master>); when set, nodes coordinate through Redis",
        flag: Some(Flag {
            long: "redis",
            value_name: "URL",
        }),
    },
    Key {
        path: "broker.max_pending",
        env: "HERALD_BROKER_MAX_PENDING",
        kind: Kind::Int {
            min: 1,
            max: 100_000_000,
        },
        help: "notifications waiting for Redis; past it one is dropped and counted (a resync delivers its message)",
        flag: None,
    },
    Key {
        path: "broker.max_pending_bytes",
        env: "HERALD_BROKER_MAX_PENDING_BYTES",
        kind: Kind::Int {
            min: 64 << 10,
            max: 1 << 30,
        },
        help: "payload bytes of the notifications waiting for Redis; past it likewise",
        flag: None,
    },
    Key {
        path: "broker.connect_timeout_ms",
        env: "HERALD_BROKER_CONNECT_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time connecting to Redis (or asking a sentinel) may take",
        flag: None,
    },
    Key {
        path: "broker.response_timeout_ms",
        env: "HERALD_BROKER_RESPONSE_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time a Redis command may wait for its answer (a paused or partitioned server)",
        flag: None,
    },
    Key {
        path: "broker.reconnect_max_ms",
        env: "HERALD_BROKER_RECONNECT_MAX_MS",
        kind: Kind::Int {
            min: 50,
            max: MS_MAX,
        },
        help: "longest wait between two attempts to reach Redis again (the first is 50 ms, doubling)",
        flag: None,
    },
    Key {
        path: "retention.cap",
        env: "HERALD_RETENTION_CAP",
        kind: Kind::Int {
            min: 1,
            max: i64::MAX,
        },
        help: "messages kept per client",
        flag: None,
    },
    Key {
        path: "retention.ttl_secs",
        env: "HERALD_RETENTION_TTL_SECS",
        kind: Kind::Int {
            min: 1,
            max: 10 * 365 * 86_400,
        },
        help: "default message time to live",
        flag: None,
    },
    Key {
        path: "http.max_head",
        env: "HERALD_HTTP_MAX_HEAD",
        kind: Kind::Int {
            min: 1024,
            max: 1 << 20,
        },
        help: "largest HTTP request head (request line and headers), bytes; larger is answered 431",
        flag: None,
    },
    Key {
        path: "http.head_timeout_ms",
        env: "HERALD_HTTP_HEAD_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time an HTTP request head may take to arrive (408 and close after it)",
        flag: None,
    },
    Key {
        path: "http.body_timeout_ms",
        env: "HERALD_HTTP_BODY_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time an HTTP request body may take to arrive (408 and close after it)",
        flag: None,
    },
    Key {
        path: "http.idle_timeout_ms",
        env: "HERALD_HTTP_IDLE_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time a kept-alive HTTP connection may wait for its next request",
        flag: None,
    },
    Key {
        path: "http.write_timeout_ms",
        env: "HERALD_HTTP_WRITE_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: MS_MAX,
        },
        help: "time an HTTP answer may take to be written (a client that does not read)",
        flag: None,
    },
    Key {
        path: "http.max_connections",
        env: "HERALD_HTTP_MAX_CONNECTIONS",
        kind: Kind::Int {
            min: 0,
            max: 100_000_000,
        },
        help: "connections per listener (WebSockets included); more are answered 503; 0 = derived from RLIMIT_NOFILE",
        flag: None,
    },
    Key {
        path: "log.level",
        env: "HERALD_LOG_LEVEL",
        kind: Kind::Word(&["error", "warn", "info", "debug", "trace"]),
        help: "log level",
        flag: Some(Flag {
            long: "log-level",
            value_name: "LEVEL",
        }),
    },
    // --- webhooks (issue 14 step 2) ---
    Key {
        path: "webhook.url",
        env: "HERALD_WEBHOOK_URL",
        kind: Kind::Str,
        help: "where webhook events are POSTed (http://); unset = webhooks off",
        flag: None,
    },
    Key {
        path: "webhook.secret",
        env: "HERALD_WEBHOOK_SECRET",
        kind: Kind::Str,
        help: "HMAC-SHA256 secret of the x-herald-signature header (required with webhook.url)",
        flag: None,
    },
    Key {
        path: "webhook.events",
        env: "HERALD_WEBHOOK_EVENTS",
        kind: Kind::StrList,
        help: "event types recorded: delivered, acked, expired, recalled",
        flag: None,
    },
    Key {
        path: "webhook.batch_max",
        env: "HERALD_WEBHOOK_BATCH_MAX",
        kind: Kind::Int {
            min: 1,
            max: 10_000,
        },
        help: "most events per POST",
        flag: None,
    },
    Key {
        path: "webhook.batch_delay_ms",
        env: "HERALD_WEBHOOK_BATCH_DELAY_MS",
        kind: Kind::Int {
            min: 10,
            max: 60_000,
        },
        help: "how often the sender looks for due events (the longest an event waits for a batch)",
        flag: None,
    },
    Key {
        path: "webhook.timeout_ms",
        env: "HERALD_WEBHOOK_TIMEOUT_MS",
        kind: Kind::Int {
            min: 100,
            max: 600_000,
        },
        help: "time a webhook POST may take, answer included; then it counts as failed",
        flag: None,
    },
    Key {
        path: "webhook.retry_min_ms",
        env: "HERALD_WEBHOOK_RETRY_MIN_MS",
        kind: Kind::Int {
            min: 10,
            max: MS_MAX,
        },
        help: "first wait after a failed POST (doubling, with jitter)",
        flag: None,
    },
    Key {
        path: "webhook.retry_max_ms",
        env: "HERALD_WEBHOOK_RETRY_MAX_MS",
        kind: Kind::Int {
            min: 10,
            max: MS_MAX,
        },
        help: "longest wait between two attempts",
        flag: None,
    },
    Key {
        path: "webhook.max_age_secs",
        env: "HERALD_WEBHOOK_MAX_AGE_SECS",
        kind: Kind::Int {
            min: 1,
            max: 30 * 86_400,
        },
        help: "events older than this are dropped (counted) instead of sent",
        flag: None,
    },
    Key {
        path: "webhook.max_outbox",
        env: "HERALD_WEBHOOK_MAX_OUTBOX",
        kind: Kind::Int {
            min: 1,
            max: 1_000_000_000,
        },
        help: "most events waiting in the outbox; past it new events are dropped (counted, logged)",
        flag: None,
    },
    Key {
        path: "webhook.lease_ms",
        env: "HERALD_WEBHOOK_LEASE_MS",
        kind: Kind::Int {
            min: 200,
            max: MS_MAX,
        },
        help: "how long a batch is reserved for the node sending it (longer than webhook.timeout_ms)",
        flag: None,
    },
];
