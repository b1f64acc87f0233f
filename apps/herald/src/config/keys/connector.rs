//! The Socket.IO connector keys (`connector.*`) and the client authentication keys
//! (`auth.*`).

use toml::Value;

use super::{Flag, Initial, Key, Kind, MS_MAX, auth, hub, int, list, ms, secs, socketio, text};

/// The Socket.IO connector.
pub(super) const CONNECTOR: &[Key] = &[
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
];

/// Client authentication.
pub(super) const AUTH: &[Key] = &[
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
];
