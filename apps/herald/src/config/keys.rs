//! Every configuration key, declared once ([`KEYS`]): path, environment variable, kind,
//! meaning, default and flag. `herald --print-keys` lists them with their defaults, and
//! `herald --print-keys --markdown` writes the table of docs/configuration.md from them
//! (`scripts/config-docs.sh` puts it in place; a test checks the file holds it).

use std::time::Duration;

use herald_broker_redis::{RedisBrokerConfig, Topology};
use herald_core::auth::AuthConfig;
use herald_core::{HubConfig, NodeId, Retention};
use herald_socketio::ServerConfig;
use herald_socketio::http1::HttpLimits;
use herald_store_mongo::MongoConfig;
use toml::Value;

use crate::api;
use crate::shutdown::ShutdownLimits;

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
/// variable, its type, what it means, its default and its command-line flag if it has one.
/// The file's schema, the environment, the flags (`herald --help`), the defaults of
/// [`super::Config`], `herald --print-keys` and the table of docs/configuration.md all derive
/// from [`KEYS`].
pub(super) struct Key {
    pub(super) path: &'static str,
    pub(super) env: &'static str,
    pub(super) kind: Kind,
    /// One line, for `--help` and `--print-keys`.
    pub(super) help: &'static str,
    /// The meaning column of docs/configuration.md (Markdown).
    pub(super) doc: &'static str,
    pub(super) default: Initial,
    pub(super) flag: Option<Flag>,
}

/// A key's value when nothing sets it.
#[derive(Clone, Copy)]
pub(super) enum Initial {
    /// This value, taken from the config struct of the crate whose setting it is (those
    /// structs are where defaults are written), or written here for the app's own keys.
    Value(fn() -> Value),
    /// No value: the key stays unset, and this says what happens then.
    Unset(&'static str),
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn int(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> Value {
    Value::Integer(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> Value {
    Value::Integer(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| text(s)).collect())
}

fn hub() -> HubConfig {
    HubConfig::new(NodeId::new("defaults").expect("a valid node id"))
}

fn socketio() -> ServerConfig {
    ServerConfig::default()
}

fn auth() -> AuthConfig {
    AuthConfig::new(Vec::new())
}

fn http() -> HttpLimits {
    HttpLimits::default()
}

fn mongo() -> MongoConfig {
    MongoConfig::new("")
}

fn webhook() -> crate::webhook::WebhookConfig {
    crate::webhook::WebhookConfig::default()
}

fn redis() -> RedisBrokerConfig {
    RedisBrokerConfig::new(Topology::Standalone(String::new()))
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
        doc: "what this node serves: Socket.IO (`connector`), REST (`api`) or both",
        default: Initial::Value(|| text("all")),
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
        doc: "1–128 printable ASCII, no space or `:`: this node's name in claims, logs and the `node` label of metrics",
        default: Initial::Unset("host name `_` connector port (`_pid<N>` when the port is 0)"),
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
        doc: "REST listen address; port 0 picks a free port",
        default: Initial::Value(|| text("127.0.0.1:3000")),
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
        doc: "when set, every REST route but `/healthy` needs `Authorization: Bearer <key>` (401 otherwise)",
        default: Initial::Unset("none"),
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
        doc: "larger request bodies get 413",
        default: Initial::Value(|| int(api::DEFAULT_MAX_BODY)),
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
        doc: r#"largest `GET /queues` answer: messages stop before it and `"more":true` says some remain (one message always comes, whatever its size)"#,
        default: Initial::Value(|| int(api::DEFAULT_MAX_ANSWER)),
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
        doc: "problems listed in an error answer; one last line `... and N more` counts the rest",
        default: Initial::Value(|| int(api::DEFAULT_MAX_LISTED_ERRORS)),
        flag: None,
    },
    Key {
        path: "api.idempotency_ttl_secs",
        env: "HERALD_API_IDEMPOTENCY_TTL_SECS",
        kind: Kind::Int {
            min: 1,
            max: 30 * 24 * 3600,
        },
        help: "how long a POST /push Idempotency-Key is remembered, seconds",
        doc: "how long a `POST /push` `Idempotency-Key` is remembered: a repeat within it stores nothing and gets the first answer (`Idempotent-Replayed: true`)",
        default: Initial::Value(|| secs(api::DEFAULT_IDEMPOTENCY.ttl)),
        flag: None,
    },
    Key {
        path: "api.idempotency_lease_ms",
        env: "HERALD_API_IDEMPOTENCY_LEASE_MS",
        kind: Kind::Int {
            min: 1000,
            max: 3_600_000,
        },
        help: "a claimed Idempotency-Key whose push never finished may be retried after this, ms",
        doc: "a claimed `Idempotency-Key` whose push never finished (its node died) may be taken over by a retry after this; until then a repeat gets 409",
        default: Initial::Value(|| ms(api::DEFAULT_IDEMPOTENCY.lease)),
        flag: None,
    },
    Key {
        path: "connector.listen",
        env: "HERALD_CONNECTOR_LISTEN",
        kind: Kind::Addr,
        help: "Socket.IO listen address",
        doc: "Socket.IO listen address",
        default: Initial::Value(|| text("127.0.0.1:3001")),
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
        doc: "messages in flight per session in ack mode",
        default: Initial::Value(|| int(hub().window)),
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
        doc: "Engine.IO `pingInterval`",
        default: Initial::Value(|| ms(socketio().ping_interval)),
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
        doc: "Engine.IO `pingTimeout`",
        default: Initial::Value(|| ms(socketio().ping_timeout)),
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
        doc: "time a client has to send its Socket.IO CONNECT",
        default: Initial::Value(|| ms(socketio().connect_timeout)),
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
        doc: "Engine.IO `maxPayload`; larger messages close the session",
        default: Initial::Value(|| int(socketio().max_payload)),
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
        doc: "most bytes waiting to be sent to one client (deliveries not yet written, and the session's own packets: pings, pongs, CONNECT answers and refusals), each packet counted as its size + 64; past it the session is closed and its unacknowledged messages are redelivered on the next connection. One delivery larger than this still goes when nothing else waits. Keep it above a few deliveries (`api.max_body` × the messages a batch can hold) so that only a client that stops reading reaches it. The same bound holds what a client sent that its session has not handled yet: past it the server stops reading that client's WebSocket until the session catches up (a polling POST gets 400 and the session closes)",
        default: Initial::Value(|| int(socketio().queue_bytes)),
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
        doc: "when a session ends (timeout, kick, shutdown, queue over its bound, transport error), the time its last packets, the WebSocket close frame and the client's answer may take; then the socket is closed whatever the client does",
        default: Initial::Value(|| ms(socketio().close_timeout)),
        flag: None,
    },
    Key {
        path: "connector.cors_origins",
        env: "HERALD_CONNECTOR_CORS_ORIGINS",
        kind: Kind::StrList,
        help: "web origins whose pages may use Socket.IO with credentials; [\"*\"] = any page, without credentials",
        doc: r#"`["*"]` alone, or origins `http(s)://host[:port]` (lower case, no path): web pages of other origins that may use the Socket.IO port (CORS, see docs/protocol.md "Browsers"): `*` = any page, without credentials; listed origins get their own origin back with credentials (`withCredentials` polling, socket.io 2.x browser clients); `[]` = no CORS header (same-origin pages only)"#,
        default: Initial::Value(|| list(&socketio().cors_origins)),
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
        doc: "how long a browser may reuse a CORS preflight answer (`Access-Control-Max-Age`; browsers cap it, Chromium at 2 h)",
        default: Initial::Value(|| secs(socketio().cors_max_age)),
        flag: None,
    },
    Key {
        path: "auth.secret",
        env: "HERALD_SECRET",
        kind: Kind::Str,
        help: "HMAC/JWT secret for client auth (default: generated once into <data_dir>/secret on a single node)",
        doc: "the HMAC / JWT / legacy secret",
        default: Initial::Unset("generated (single node)"),
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
        doc: "accept the seed's `x-nbb-authid` / `x-nbb-sign` headers",
        default: Initial::Value(|| Value::Boolean(auth().legacy)),
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
        doc: "accept HMAC connect auth",
        default: Initial::Value(|| Value::Boolean(auth().hmac)),
        flag: None,
    },
    Key {
        path: "auth.jwt",
        env: "HERALD_AUTH_JWT",
        kind: Kind::Bool,
        help: "accept JWT connect auth",
        doc: "accept JWT (HS256) connect auth",
        default: Initial::Value(|| Value::Boolean(auth().jwt)),
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
        doc: "largest accepted age (`now − ts`) of an HMAC or legacy signature",
        default: Initial::Value(|| secs(auth().max_skew)),
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
        doc: "largest accepted `ts − now` (a client clock ahead of the server's); a signature is replayable from `ts − this` to `ts + max_skew_secs`, so keep it short",
        default: Initial::Value(|| secs(auth().max_future_skew)),
        flag: None,
    },
    Key {
        path: "store.data_dir",
        env: "HERALD_DATA_DIR",
        kind: Kind::Str,
        help: "embedded store location",
        doc: "a path: the embedded store (`herald.log`, `herald.ids`, `herald.lock`) and a generated secret",
        default: Initial::Value(|| text("./herald-data")),
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
        doc: "a `mongodb://` or `mongodb+srv://` URL: queues in MongoDB, shared by every node; the URL's `maxPoolSize` (driver default 10) is also how many session reads (backlogs, history) a node sends at once, the others wait their turn in a queue",
        default: Initial::Unset("none"),
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
        doc: "open an embedded log that is damaged before its end: skip the damaged bytes, keep every intact record, set the damaged file aside; use once, see [operations.md](operations.md#a-damaged-log)",
        default: Initial::Value(|| Value::Boolean(false)),
        flag: Some(Flag {
            long: "recover-damaged-log",
            value_name: "",
        }),
    },
    Key {
        path: "store.receipts_max_copies",
        env: "HERALD_STORE_RECEIPTS_MAX_COPIES",
        kind: Kind::Int {
            min: 1,
            max: 1_000_000_000,
        },
        help: "embedded store: copies of pushes whose records (status, receipts, recall) stay in memory, about 50 bytes each; the oldest pushes' records are forgotten beyond it",
        doc: r#"embedded store: how many copies of pushes keep their records (receipts, `GET /push/<id>`, recall) in memory, about 50 bytes per copy plus about 200 per push; beyond it the oldest pushes' records are forgotten (their status and recall answer 404, their messages are still delivered). MongoDB keeps records for the messages' time to live plus a day"#,
        default: Initial::Value(|| int(herald_core::books::DEFAULT_MAX_COPIES)),
        flag: None,
    },
    Key {
        path: "store.mongo_known_counters",
        env: "HERALD_STORE_MONGO_KNOWN_COUNTERS",
        kind: Kind::Int {
            min: 0,
            max: 100_000_000,
        },
        help: "clients whose id counters a node remembers (about 100 bytes each): a push to them costs no counter read",
        doc: r#"MongoDB store: clients whose id counters a node remembers (about 100 bytes each); a push to a remembered client costs no counter read, a forgotten one costs one `find` per batch (see operations.md, "Round trips")"#,
        default: Initial::Value(|| int(mongo().known_counters)),
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
        doc: r#"MongoDB store: how long a session's read waits for an id missing between stored messages (with several API nodes, an insert still on its way) before counting it as a hole; longer than an insert of your largest push can take (see operations.md, "Ids and holes")"#,
        default: Initial::Value(|| ms(mongo().settle)),
        flag: None,
    },
    Key {
        path: "broker.redis",
        env: "HERALD_REDIS",
        kind: Kind::Str,
        help: "Redis URL (redis://, redis+cluster://h1,h2 or redis+sentinel://s1,s2/<master>); when set, nodes coordinate through Redis",
        doc: "`redis://[user:pw@]host:port[/db]`, `redis+cluster://h1:p1,h2:p2`, `redis+sentinel://[user:pw@]s1:p1,s2:p2/<master>[/db][?sentinel_username=u&sentinel_password=p]`: coordination through Redis: notifications and one session per client and slot. With Sentinel the credentials before `@` are the master's, the query's the sentinels' own; the master is looked up through the sentinels in order and followed across failovers. TLS is not built in (`rediss+sentinel://` is refused): use a TLS tunnel. See [operations.md](operations.md#redis-deployments-and-failover)",
        default: Initial::Unset("none"),
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
        doc: "notifications waiting for Redis (queued, or sent and not yet answered); past it a notification is dropped and counted (`herald_broker_notifications_dropped_total`): the store holds its message and the resync once Redis answers delivers it. `POST /push` never waits for Redis",
        default: Initial::Value(|| int(redis().max_pending)),
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
        doc: "channel and payload bytes of those notifications (a notification carries its message up to 16 KiB); past it likewise",
        default: Initial::Value(|| int(redis().max_pending_bytes)),
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
        doc: "time connecting to Redis, or asking a sentinel for the master, may take",
        default: Initial::Value(|| ms(redis().connection_timeout)),
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
        doc: "time a Redis command may wait for its answer: what a paused or partitioned server costs a claim or a batch of notifications before it counts as failed (the batch is counted in `herald_broker_notifications_failed_total` and a resync is owed)",
        default: Initial::Value(|| ms(redis().response_timeout)),
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
        doc: "longest wait between two attempts to reach Redis again (or the master, with Sentinel); the first wait is 50 ms, doubling",
        default: Initial::Value(|| ms(redis().reconnect_max)),
        flag: None,
    },
    Key {
        path: "broker.node_ttl_ms",
        env: "HERALD_BROKER_NODE_TTL_MS",
        kind: Kind::Int {
            min: 300,
            max: MS_MAX,
        },
        help: "how long a node counts as alive after its last liveness beat in Redis (beaten every third of it): the client view hides the sessions of a node silent longer",
        doc: "how long a node counts as alive after its last liveness beat in Redis (beaten every third of it): the client view (`GET /clients/<id>`) hides the sessions of a node silent longer",
        default: Initial::Value(|| ms(redis().node_ttl)),
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
        doc: "messages kept per client; older ones are dropped",
        default: Initial::Value(|| {
            Value::Integer(i64::try_from(Retention::default().cap).unwrap_or(i64::MAX))
        }),
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
        doc: "time to live of a message without its own `ttl`",
        default: Initial::Value(|| secs(Retention::default().ttl)),
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
        doc: "largest HTTP request head (request line and header fields) on both listeners; larger gets 431 and the connection closes",
        default: Initial::Value(|| int(http().max_head)),
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
        doc: "time a request head may take to arrive (for a new connection: from the accept); then 408 and close",
        default: Initial::Value(|| ms(http().head_timeout)),
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
        doc: "time a request body may take to arrive; then 408 and close",
        default: Initial::Value(|| ms(http().body_timeout)),
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
        doc: "time a kept-alive connection may wait for its next request; then it is closed",
        default: Initial::Value(|| ms(http().idle_timeout)),
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
        doc: "time an answer may take to be written (a client that does not read); then the connection is closed",
        default: Initial::Value(|| ms(http().write_timeout)),
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
        doc: "0 = derived (below). connections per listener, upgraded WebSockets included; more are answered 503 and closed. Start-up raises the soft `RLIMIT_NOFILE` to the hard limit; all listeners together never hold more than that limit less 64 and 1/64 of it (kept for the store, the broker and the process). Derived per-listener limit: that total less, with two listeners, a headroom (1/64 of it, at least 16) left to the other one — so a full Socket.IO port never takes `/healthy` with it (256 descriptors: 172 per listener; 20,000: 19,318)",
        default: Initial::Value(|| Value::Integer(0)),
        flag: None,
    },
    Key {
        path: "log.level",
        env: "HERALD_LOG_LEVEL",
        kind: Kind::Word(&["error", "warn", "info", "debug", "trace"]),
        help: "log level",
        doc: "log level",
        default: Initial::Value(|| text("info")),
        flag: Some(Flag {
            long: "log-level",
            value_name: "LEVEL",
        }),
    },
    Key {
        path: "log.format",
        env: "HERALD_LOG_FORMAT",
        kind: Kind::Word(&["text", "json"]),
        help: "log format: readable lines, or JSON (femme: one object per line in release builds)",
        doc: "`text`: one readable line per record (UTC time with milliseconds, level, target, message). `json`: femme, as release builds logged before this key: one JSON object per line (`level` a number, `time` in epoch milliseconds, `msg`) in release builds; femme picks by build profile, so a debug build writes its pretty lines instead",
        default: Initial::Value(|| text("text")),
        flag: Some(Flag {
            long: "log-format",
            value_name: "FORMAT",
        }),
    },
    Key {
        path: "shutdown.sessions_ms",
        env: "HERALD_SHUTDOWN_SESSIONS_MS",
        kind: Kind::Int {
            min: 0,
            max: MS_MAX,
        },
        help: "time a stopping node gives its sessions to receive their close and end",
        doc: "on SIGTERM or SIGINT, the time every session gets to receive its close and end; then the node stops anyway (a warning counts the sessions left)",
        default: Initial::Value(|| ms(ShutdownLimits::default().sessions)),
        flag: None,
    },
    Key {
        path: "shutdown.writes_ms",
        env: "HERALD_SHUTDOWN_WRITES_MS",
        kind: Kind::Int {
            min: 0,
            max: MS_MAX,
        },
        help: "time a stopping node gives the store writes under way (pushes' appends, acknowledgements) to finish",
        doc: "then the time the store writes under way (pushes' appends, acknowledgements) get to finish; keep both together within your orchestrator's grace period (`docker stop`: 10 s, Kubernetes: 30 s by default)",
        default: Initial::Value(|| ms(ShutdownLimits::default().writes)),
        flag: None,
    },
    // --- webhooks (issue 14 step 2) ---
    Key {
        path: "webhook.url",
        env: "HERALD_WEBHOOK_URL",
        kind: Kind::Str,
        help: "where webhook events are POSTed (http://); unset = webhooks off",
        doc: "where webhook events are POSTed (see [rest-api.md](rest-api.md#webhooks)): an `http://` URL with a host (`https://` is refused: the built-in HTTP client has no TLS; put a TLS-terminating proxy on localhost); nodes serving the REST API (`all`, `api`) send them; unset: webhooks off",
        default: Initial::Unset("none (webhooks off)"),
        flag: None,
    },
    Key {
        path: "webhook.secret",
        env: "HERALD_WEBHOOK_SECRET",
        kind: Kind::Str,
        help: "HMAC-SHA256 secret of the x-herald-signature header (required with webhook.url)",
        doc: "the HMAC-SHA256 key of the `x-herald-signature` header, required with `webhook.url` (start-up is refused without it); share it with the receiver only",
        default: Initial::Unset("none"),
        flag: None,
    },
    Key {
        path: "webhook.events",
        env: "HERALD_WEBHOOK_EVENTS",
        kind: Kind::StrList,
        help: "event types recorded: delivered, acked, expired, recalled",
        doc: "which facts become events (any of `delivered`, `acked`, `expired`, `recalled`); others are not recorded at all",
        default: Initial::Value(|| {
            Value::Array(webhook().events.iter().map(|k| text(k.as_str())).collect())
        }),
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
        doc: "most events in one POST",
        default: Initial::Value(|| int(webhook().batch_max)),
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
        doc: "how often each sending node looks for due events (one outbox query, three store commands when some are due): the longest a new event waits to be batched; after a full batch the next is sent at once",
        default: Initial::Value(|| ms(webhook().batch_delay)),
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
        doc: "time a POST may take, answer included; past it the attempt counts as failed and is retried",
        default: Initial::Value(|| ms(webhook().timeout)),
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
        doc: "wait after a batch's first failed attempt; doubled per further failure, with \"equal jitter\" (between half and all of it)",
        default: Initial::Value(|| ms(webhook().retry_min)),
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
        doc: "longest wait between two attempts (at least `webhook.retry_min_ms`)",
        default: Initial::Value(|| ms(webhook().retry_max)),
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
        doc: "an event older than this (from its `ts`) is dropped instead of sent, counted in `herald_webhook_events_dropped_max_age_total` and logged",
        default: Initial::Value(|| secs(webhook().max_age)),
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
        doc: "most events waiting in the outbox (cluster-wide with MongoDB); past it new events are dropped, counted in `herald_webhook_events_dropped_outbox_full_total` and logged as a warning (see [operations.md](operations.md#the-webhook-outbox))",
        default: Initial::Value(|| {
            Value::Integer(i64::try_from(webhook().max_outbox).unwrap_or(i64::MAX))
        }),
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
        doc: "how long a batch is reserved for the node sending it (longer than `webhook.timeout_ms`); a node that dies mid-send leaves its batch to another node after this",
        default: Initial::Value(|| ms(webhook().lease)),
        flag: None,
    },
];
