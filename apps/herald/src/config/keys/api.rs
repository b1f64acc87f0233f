//! The REST API keys (`api.*`).

use super::{Flag, Initial, Key, Kind, int, ms, secs, text};
use crate::api;

/// The REST API.
pub(super) const API: &[Key] = &[
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
];
