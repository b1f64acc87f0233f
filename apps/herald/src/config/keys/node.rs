//! The node-wide keys: the node's role and name, the HTTP/1 limits of both listeners,
//! logging and the graceful stop.

use toml::Value;

use super::{Flag, Initial, Key, Kind, MS_MAX, http, int, ms, text};
use crate::shutdown::ShutdownLimits;

/// What the node serves and its name.
pub(super) const NODE: &[Key] = &[
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
];

/// The HTTP/1 limits of both listeners.
pub(super) const HTTP: &[Key] = &[
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
];

/// Logging.
pub(super) const LOG: &[Key] = &[
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
];

/// The graceful stop.
pub(super) const SHUTDOWN: &[Key] = &[
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
];
