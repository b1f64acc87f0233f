//! The webhook keys (`webhook.*`, issue 14 step 2).

use toml::Value;

use super::{Initial, Key, Kind, MS_MAX, int, ms, secs, text, webhook};

/// Webhooks.
pub(super) const WEBHOOK: &[Key] = &[
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
        help: "most events per POST (a node sends one batch at a time: this bounds its rate)",
        doc: "most events in one POST; a node sends one batch at a time, so this bounds how many events a node sends per second (about 10,000/s at 1,000 measured, 600/s at 100; see operations.md, \"The webhook outbox\")",
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
    Key {
        path: "webhook.expired_every_ms",
        env: "HERALD_WEBHOOK_EXPIRED_EVERY_MS",
        kind: Kind::Int {
            min: 100,
            max: 3_600_000,
        },
        help: "how often a node looks for pushes whose time to live ran out (their expired events)",
        doc: "how often each node serving the REST API looks for pushes whose time to live ran out, to record their `expired` events (the events carry the expiry time, so this only delays them); not at all when `webhook.events` leaves `expired` out",
        default: Initial::Value(|| ms(webhook().expired_every)),
        flag: None,
    },
    Key {
        path: "webhook.max_answer_bytes",
        env: "HERALD_WEBHOOK_MAX_ANSWER_BYTES",
        kind: Kind::Int {
            min: 0,
            max: 16 << 20,
        },
        help: "most bytes of a receiver's answer read; past it the connection is not reused",
        doc: "most bytes of a receiver's answer body the sender reads (and drops) so that its connection can carry the next POST; a longer answer still counts by its status, but its connection is closed and a new one opened (logged as a warning)",
        default: Initial::Value(|| int(webhook().max_answer)),
        flag: None,
    },
];
