//! The store keys (`store.*`) and the queues' retention (`retention.*`).

use herald_core::Retention;
use toml::Value;

use super::{Flag, Initial, Key, Kind, int, mongo, ms, secs, text};

/// The store: embedded or MongoDB.
pub(super) const STORE: &[Key] = &[
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
        doc: "a `mongodb://` or `mongodb+srv://` URL: queues in MongoDB, shared by every node; the URL's `maxPoolSize` (driver default 10) is also how many session reads (backlogs, history) a node sends at once, the others wait their turn in a queue; its `serverSelectionTimeoutMS` (Herald's default 5000) is how long a command waits for a reachable server before it fails (a push then answers 503)",
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
        path: "store.idempotency_max_keys",
        env: "HERALD_STORE_IDEMPOTENCY_MAX_KEYS",
        kind: Kind::Int {
            min: 1,
            max: 1_000_000_000,
        },
        help: "embedded store: Idempotency-Key claims kept in memory (about 250 bytes each); the oldest are forgotten beyond it",
        doc: r#"embedded store: how many `Idempotency-Key` claims are kept in memory, about 250 bytes each with a 36-character key; beyond it the oldest are forgotten before `api.idempotency_ttl_secs` (a retry with a forgotten key is stored again). MongoDB keeps every claim for its time to live"#,
        default: Initial::Value(|| int(herald_core::books::DEFAULT_MAX_KEYS)),
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
];

/// How long and how many messages queues keep.
pub(super) const RETENTION: &[Key] = &[
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
        path: "retention.purge_every_secs",
        env: "HERALD_RETENTION_PURGE_EVERY_SECS",
        kind: Kind::Int {
            min: 1,
            max: 86_400,
        },
        help: "how often retention drops expired messages and forgets old push records",
        doc: "how often each node runs retention: expired messages and those past `retention.cap` leave the queues, push records and idempotency keys past their time are forgotten (reads never return an expired message in between); each run is counted in `herald_retention_*`",
        default: Initial::Value(|| secs(crate::driver::RETENTION_EVERY)),
        flag: None,
    },
];
