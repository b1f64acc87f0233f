//! The broker keys (`broker.*`): Redis and its limits.

use super::{Flag, Initial, Key, Kind, MS_MAX, int, ms, redis};

/// The broker.
pub(super) const BROKER: &[Key] = &[
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
];
