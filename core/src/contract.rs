//! The contract suite: the checks every [`MessageStore`] and [`Broker`] implementation runs
//! against itself, with the real service behind it.
//!
//! Built with the cargo feature `contract` (and in core's own tests), so production builds do
//! not carry it. Adapters add `herald-core = { workspace = true, features = ["contract"] }` to
//! their dev-dependencies and call [`store_suite`] and [`broker_suite`] from a test.
//!
//! The suite owns no runtime and no clock: its functions are `async` and the adapter awaits
//! them from its own runtime. Where something must wait (a Redis broker delivers pub/sub
//! events asynchronously), the suite calls the `sleep` function the caller passes in, and
//! every wait is bounded by [`ContractConfig::timeout`]. A failed check panics with a message
//! naming the check (`contract check store::ack_per_slot failed: ...`).
//!
//! Several runs may share one real database or Redis: every check uses fresh client ids made
//! of the caller's [`ContractConfig::run_id`] and the check's name, so pick a run id that is
//! unique per run (a random number, a time stamp taken by the adapter). Store times are
//! [`ContractConfig::base_ms`] plus small offsets. An adapter whose backend also expires data
//! by the wall clock (MongoDB's TTL index) should pass a time comfortably in the future (the
//! real time plus an hour, say): the TTL check stores a message that lives 1 s from `base_ms`,
//! and with `base_ms` = now a TTL monitor pass during the run could delete it before the check
//! reads it. With a future base, the backend never deletes a run's data while it runs, and
//! cleans it up by itself later.
//!
//! [`MessageStore::purge`] works on the whole store: when other runs (or other checks' data in
//! the same database) may be purged by one pass, set [`ContractConfig::exact_purge_counts`] to
//! `false` and the suite checks purge counts as lower bounds.
//!
//! ```no_run
//! # async fn demo() {
//! use herald_core::contract::{ContractConfig, broker_suite, store_suite};
//! use herald_core::{MemoryBroker, MemoryStore};
//!
//! let cfg = ContractConfig::new("run-42", 1_764_000_000_000).expect("a valid run id");
//! store_suite(&cfg, |retention| std::future::ready(MemoryStore::new(retention))).await;
//! broker_suite(
//!     &cfg,
//!     |n| {
//!         let bus = MemoryBroker::new();
//!         std::future::ready((0..n).map(|_| bus.node()).collect::<Vec<_>>())
//!     },
//!     |_| std::future::ready(()),
//! )
//! .await;
//! # }
//! ```

use std::future::{Future, poll_fn};
use std::task::Poll;
use std::time::Duration;

use crate::ids::{ClientId, Generation, IdError, MessageId, NodeId, Slot};
use crate::message::{Message, NewMessage, Payload};
use crate::ports::{Broker, BrokerEvent, BrokerEvents, MessageStore, Retention};

/// How a contract run names its data, what time it starts at, and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractConfig {
    /// A prefix unique to this run; every client id of the run starts with it.
    pub run_id: String,
    /// The store time of the run's first message, Unix milliseconds; later ones add offsets.
    pub base_ms: u64,
    /// The longest the broker suite waits for an expected event.
    pub timeout: Duration,
    /// How long the broker suite waits before concluding that an event did not come.
    pub settle: Duration,
    /// The step between two looks at an event stream while waiting.
    pub poll_step: Duration,
    /// Whether purge counts must be exact (the store holds only this check's data) or are
    /// lower bounds (other data in the store may be purged by the same pass).
    pub exact_purge_counts: bool,
}

/// The longest suffix the suite appends to [`ContractConfig::run_id`] in a client id.
const MAX_SUFFIX: usize = 40;

impl ContractConfig {
    /// A configuration with the given run id and start time, a 5 s timeout, a 300 ms settle
    /// time, a 10 ms poll step and exact purge counts.
    ///
    /// # Errors
    /// When `run_id` could not prefix a client id: characters outside `[A-Za-z0-9_.:@-]`, or
    /// so long that the suite's suffixes would exceed [`ClientId::MAX_LEN`].
    pub fn new(run_id: &str, base_ms: u64) -> Result<ContractConfig, IdError> {
        let probe = format!("{run_id}{}", "x".repeat(MAX_SUFFIX));
        ClientId::new(&probe)?;
        Ok(ContractConfig {
            run_id: run_id.to_owned(),
            base_ms,
            timeout: Duration::from_secs(5),
            settle: Duration::from_millis(300),
            poll_step: Duration::from_millis(10),
            exact_purge_counts: true,
        })
    }

    /// Sets [`ContractConfig::exact_purge_counts`].
    pub fn exact_purge_counts(mut self, exact: bool) -> ContractConfig {
        self.exact_purge_counts = exact;
        self
    }

    /// Sets [`ContractConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> ContractConfig {
        self.timeout = timeout;
        self
    }

    /// Sets [`ContractConfig::settle`].
    pub fn settle(mut self, settle: Duration) -> ContractConfig {
        self.settle = settle;
        self
    }

    /// A client id unique to this run and `name`.
    pub(crate) fn client(&self, name: &str) -> ClientId {
        assert!(name.len() <= MAX_SUFFIX, "suffix {name:?} too long");
        ClientId::new(&format!("{}{name}", self.run_id))
            .unwrap_or_else(|e| panic!("contract suite: bad client id for {name:?}: {e}"))
    }
}

/// Panics with the name of the failed check unless `cond` holds.
macro_rules! check {
    ($name:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!("contract check {} failed: {}", $name, format!($($fmt)+));
        }
    };
}
pub(crate) use check;

/// Unwraps an operation's result, or panics naming the check and the operation.
pub(crate) fn ok<T, E: std::fmt::Display>(check: &str, what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("contract check {check} failed: {what} returned an error: {e}"))
}

pub(crate) fn slot(n: i64) -> Slot {
    Slot::new(n).unwrap_or_else(|e| panic!("contract suite: {e}"))
}

fn ids(msgs: &[Message]) -> Vec<u64> {
    msgs.iter().map(|m| m.id.0).collect()
}

fn new_message(n: u64, ttl: Option<Duration>) -> NewMessage {
    NewMessage {
        from: "contract".into(),
        channel: vec!["t1".into(), "t2".into()],
        data: Payload::from_json(&format!(r#"{{"n":{n},"s":"é\"x"}}"#))
            .unwrap_or_else(|e| panic!("contract suite: {e}")),
        ttl,
        push: None,
    }
}

/// A long default TTL, so that only the TTL checks see anything expire.
const LONG: Duration = Duration::from_secs(30 * 24 * 3600);

// ---------------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------------

/// Runs every store check against stores built by `make`, which is called once per check
/// with the [`Retention`] that check needs.
///
/// # Panics
/// When a check fails, with a message naming it.
pub async fn store_suite<S, F, Fut>(cfg: &ContractConfig, mut make: F)
where
    S: MessageStore,
    F: FnMut(Retention) -> Fut,
    Fut: Future<Output = S>,
{
    let keep = Retention {
        cap: 10_000,
        ttl: LONG,
    };
    store_ping(&make(keep).await).await;
    store_ids_in_append_order(cfg, &make(keep).await).await;
    store_batch_append(cfg, &make(keep).await).await;
    store_unacked_after_and_limit(cfg, &make(keep).await).await;
    store_ack_per_slot(cfg, &make(keep).await).await;
    store_ack_ignores_unknown_and_duplicates(cfg, &make(keep).await).await;
    store_ack_through(cfg, &make(keep).await).await;
    store_history_since_and_limit(cfg, &make(keep).await).await;
    store_ttl(
        cfg,
        &make(Retention {
            cap: 10_000,
            ttl: Duration::from_secs(60),
        })
        .await,
    )
    .await;
    store_cap(cfg, &make(Retention { cap: 3, ttl: LONG }).await).await;
}

async fn append_one<S: MessageStore>(
    check: &str,
    store: &S,
    client: &ClientId,
    msg: &NewMessage,
    now_ms: u64,
) -> MessageId {
    let r = ok(
        check,
        "append",
        store
            .append(msg, std::slice::from_ref(client), now_ms)
            .await,
    );
    check!(
        check,
        r.len() == 1,
        "append to 1 recipient gave {} results",
        r.len()
    );
    ok(
        check,
        "append (the recipient's entry)",
        r.into_iter().next().unwrap_or_else(|| unreachable!()),
    )
}

/// `ping` answers.
async fn store_ping<S: MessageStore>(store: &S) {
    ok("store::ping", "ping", store.ping().await);
}

/// Ids start at 1, increase by append order, and the stored message reads back unchanged.
async fn store_ids_in_append_order<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::ids_in_append_order";
    let a = cfg.client("-ids-a");
    let b = cfg.client("-ids-b");
    let mut got = Vec::new();
    for n in 0..5 {
        got.push(
            append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n)
                .await
                .0,
        );
    }
    check!(
        C,
        got == [1, 2, 3, 4, 5],
        "ids of 5 appends to a fresh client: {got:?}"
    );
    let first_b = append_one(C, store, &b, &new_message(9, None), cfg.base_ms + 10).await;
    check!(
        C,
        first_b == MessageId(1),
        "another client's first id: {first_b}"
    );
    let six = append_one(C, store, &a, &new_message(5, None), cfg.base_ms + 11).await;
    check!(
        C,
        six == MessageId(6),
        "a's sixth id after b's append: {six}"
    );

    let read = ok(
        C,
        "unacked",
        store
            .unacked(&a, slot(0), MessageId::ZERO, 100, cfg.base_ms + 20)
            .await,
    );
    check!(
        C,
        ids(&read) == [1, 2, 3, 4, 5, 6],
        "unacked ids: {:?}",
        ids(&read)
    );
    let expected = new_message(2, None).to_message(MessageId(3), cfg.base_ms + 2);
    check!(
        C,
        read[2] == expected,
        "message 3 read back as {:?}, expected {expected:?}",
        read[2]
    );
}

/// One append to many recipients: one result per recipient in their order, each recipient
/// in its own sequence.
async fn store_batch_append<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::batch_append";
    let b = cfg.client("-batch-b");
    append_one(C, store, &b, &new_message(0, None), cfg.base_ms).await;
    append_one(C, store, &b, &new_message(1, None), cfg.base_ms).await;
    let mut recipients: Vec<ClientId> = (0..60)
        .map(|i| cfg.client(&format!("-batch-{i}")))
        .collect();
    recipients.insert(30, b.clone());
    let msg = new_message(7, None);
    let r = ok(
        C,
        "append",
        store.append(&msg, &recipients, cfg.base_ms + 5).await,
    );
    check!(
        C,
        r.len() == recipients.len(),
        "{} results for {} recipients",
        r.len(),
        recipients.len()
    );
    for (i, (client, id)) in recipients.iter().zip(&r).enumerate() {
        let id = match id {
            Ok(id) => *id,
            Err(e) => panic!("contract check {C} failed: recipient {i} ({client}) failed: {e}"),
        };
        let want = if *client == b {
            MessageId(3)
        } else {
            MessageId(1)
        };
        check!(
            C,
            id == want,
            "recipient {i} ({client}) got id {id}, expected {want}"
        );
        let read = ok(
            C,
            "unacked",
            store
                .unacked(client, slot(0), MessageId::ZERO, 10, cfg.base_ms + 6)
                .await,
        );
        let last = read.last().map(|m| (m.id, &m.data));
        check!(
            C,
            last == Some((want, &msg.data)),
            "recipient {i} ({client}) reads {:?}",
            ids(&read)
        );
    }
    let empty = ok(
        C,
        "append to no recipient",
        store.append(&msg, &[], cfg.base_ms).await,
    );
    check!(C, empty.is_empty(), "append to no recipient gave {empty:?}");
}

/// `unacked` returns ids after the cursor, at most `limit`, oldest first.
async fn store_unacked_after_and_limit<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::unacked_after_and_limit";
    let a = cfg.client("-unacked-a");
    for n in 0..6 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    let now = cfg.base_ms + 100;
    let cases: [(u64, usize, &[u64]); 6] = [
        (0, 100, &[1, 2, 3, 4, 5, 6]),
        (2, 2, &[3, 4]),
        (2, 100, &[3, 4, 5, 6]),
        (5, 1, &[6]),
        (6, 10, &[]),
        (0, 0, &[]),
    ];
    for (after, limit, want) in cases {
        let got = ok(
            C,
            "unacked",
            store
                .unacked(&a, slot(2), MessageId(after), limit, now)
                .await,
        );
        check!(
            C,
            ids(&got) == want,
            "after {after} limit {limit}: {:?}, expected {want:?}",
            ids(&got)
        );
    }
    let none = ok(
        C,
        "unacked of an unknown client",
        store
            .unacked(
                &cfg.client("-unacked-none"),
                slot(0),
                MessageId::ZERO,
                10,
                now,
            )
            .await,
    );
    check!(C, none.is_empty(), "unknown client has {:?}", ids(&none));
}

/// `ack_through`: everything up to `through` is acknowledged for that slot alone, ids above it
/// one by one, and a lower `through` later never brings anything back.
async fn store_ack_through<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::ack_through";
    let a = cfg.client("-through-a");
    for n in 0..6 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    let now = cfg.base_ms + 100;
    let a = &a;
    let view = |s: i64| async move {
        let got = ok(
            C,
            "unacked",
            store.unacked(a, slot(s), MessageId::ZERO, 100, now).await,
        );
        ids(&got)
    };
    // The session held 1 and 2 (acknowledged now), and 4 out of order.
    ok(
        C,
        "ack_through",
        store
            .ack_through(
                a,
                slot(2),
                &[MessageId(1), MessageId(2), MessageId(4)],
                MessageId(2),
            )
            .await,
    );
    let got = view(2).await;
    check!(
        C,
        got == [3, 5, 6],
        "slot 2 sees {got:?}, expected [3, 5, 6]"
    );
    let got = view(0).await;
    check!(C, got == [1, 2, 3, 4, 5, 6], "slot 0 sees {got:?}");
    // A later session acknowledges 3 with an older view: nothing comes back.
    ok(
        C,
        "ack_through",
        store
            .ack_through(a, slot(2), &[MessageId(3)], MessageId(1))
            .await,
    );
    let got = view(2).await;
    check!(C, got == [5, 6], "slot 2 sees {got:?}, expected [5, 6]");
    // Ids at or below `through` may be recorded by `through` alone; listed, they are
    // acknowledged either way.
    ok(
        C,
        "ack_through",
        store
            .ack_through(a, slot(2), &[MessageId(5), MessageId(6)], MessageId(6))
            .await,
    );
    let got = view(2).await;
    check!(C, got.is_empty(), "slot 2 sees {got:?}, expected nothing");
    let after = ok(
        C,
        "unacked",
        store.unacked(a, slot(2), MessageId(1), 100, now).await,
    );
    check!(C, after.is_empty(), "slot 2 after 1 sees {:?}", ids(&after));
}

/// Acknowledging for one slot leaves every other slot's view alone.
async fn store_ack_per_slot<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::ack_per_slot";
    let a = cfg.client("-ackslot-a");
    for n in 0..5 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    let now = cfg.base_ms + 100;
    ok(
        C,
        "ack",
        store.ack(&a, slot(0), &[MessageId(1), MessageId(3)]).await,
    );
    ok(C, "ack", store.ack(&a, slot(15), &[MessageId(2)]).await);
    let views = [
        (0, vec![2, 4, 5]),
        (3, vec![1, 2, 3, 4, 5]),
        (15, vec![1, 3, 4, 5]),
        (1, vec![1, 2, 3, 4, 5]),
    ];
    for (s, want) in views {
        let got = ok(
            C,
            "unacked",
            store.unacked(&a, slot(s), MessageId::ZERO, 100, now).await,
        );
        check!(
            C,
            ids(&got) == want,
            "slot {s} sees {:?}, expected {want:?}",
            ids(&got)
        );
    }
    let all: Vec<MessageId> = (1..=5).map(MessageId).collect();
    ok(C, "ack", store.ack(&a, slot(3), &all).await);
    let got = ok(
        C,
        "unacked",
        store.unacked(&a, slot(3), MessageId::ZERO, 100, now).await,
    );
    check!(
        C,
        got.is_empty(),
        "slot 3 acked everything but sees {:?}",
        ids(&got)
    );
    let got = ok(
        C,
        "unacked",
        store.unacked(&a, slot(0), MessageId::ZERO, 100, now).await,
    );
    check!(
        C,
        ids(&got) == [2, 4, 5],
        "slot 0 after slot 3's acks sees {:?}",
        ids(&got)
    );
    let hist = ok(C, "history", store.history(&a, 0, 100, now).await);
    check!(
        C,
        ids(&hist) == [1, 2, 3, 4, 5],
        "history must ignore acks, got {:?}",
        ids(&hist)
    );
}

/// Unknown ids, unknown clients, duplicate and repeated acks are ignored without error.
async fn store_ack_ignores_unknown_and_duplicates<S: MessageStore>(
    cfg: &ContractConfig,
    store: &S,
) {
    const C: &str = "store::ack_ignores_unknown_and_duplicates";
    let a = cfg.client("-ackdup-a");
    for n in 0..3 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    ok(
        C,
        "ack of unknown ids",
        store
            .ack(
                &a,
                slot(0),
                &[MessageId(0), MessageId(99), MessageId(u64::MAX / 2)],
            )
            .await,
    );
    ok(
        C,
        "ack with duplicates",
        store.ack(&a, slot(0), &[MessageId(2), MessageId(2)]).await,
    );
    ok(
        C,
        "repeated ack",
        store.ack(&a, slot(0), &[MessageId(2)]).await,
    );
    ok(C, "empty ack", store.ack(&a, slot(0), &[]).await);
    ok(
        C,
        "ack of an unknown client",
        store
            .ack(&cfg.client("-ackdup-none"), slot(0), &[MessageId(1)])
            .await,
    );
    let got = ok(
        C,
        "unacked",
        store
            .unacked(&a, slot(0), MessageId::ZERO, 100, cfg.base_ms + 100)
            .await,
    );
    check!(
        C,
        ids(&got) == [1, 3],
        "slot 0 sees {:?}, expected [1, 3]",
        ids(&got)
    );
    let next = append_one(C, store, &a, &new_message(3, None), cfg.base_ms + 101).await;
    check!(
        C,
        next == MessageId(4),
        "acks must not disturb the sequence: next id {next}"
    );
}

/// `history` returns messages stored at or after `since`, at most `limit`, oldest first.
async fn store_history_since_and_limit<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::history_since_and_limit";
    let a = cfg.client("-hist-a");
    let base = cfg.base_ms;
    for (n, t) in [100u64, 200, 300, 400].into_iter().enumerate() {
        append_one(C, store, &a, &new_message(n as u64, None), base + t).await;
    }
    ok(C, "ack", store.ack(&a, slot(0), &[MessageId(2)]).await);
    let now = base + 1000;
    let cases: [(u64, usize, &[u64]); 5] = [
        (0, 100, &[1, 2, 3, 4]),
        (base + 200, 2, &[2, 3]),
        (base + 201, 100, &[3, 4]),
        (base + 401, 100, &[]),
        (base, 1, &[1]),
    ];
    for (since, limit, want) in cases {
        let got = ok(C, "history", store.history(&a, since, limit, now).await);
        check!(
            C,
            ids(&got) == want,
            "since {since} limit {limit}: {:?}, expected {want:?}",
            ids(&got)
        );
    }
    let got = ok(C, "history", store.history(&a, base + 300, 10, now).await);
    let ts: Vec<u64> = got.iter().map(|m| m.ts).collect();
    check!(C, ts == [base + 300, base + 400], "store times {ts:?}");
    let none = ok(
        C,
        "history of an unknown client",
        store.history(&cfg.client("-hist-none"), 0, 10, now).await,
    );
    check!(C, none.is_empty(), "unknown client has {:?}", ids(&none));
}

/// Default and per-message TTL: reads skip what expired at `now_ms`; purge drops and counts it.
/// The store's retention TTL is 60 s.
async fn store_ttl<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::ttl";
    let a = cfg.client("-ttl-a");
    let t0 = cfg.base_ms;
    append_one(C, store, &a, &new_message(0, None), t0).await; // expires t0 + 60 s
    append_one(
        C,
        store,
        &a,
        &new_message(1, Some(Duration::from_secs(1))),
        t0,
    )
    .await; // t0 + 1 s
    append_one(
        C,
        store,
        &a,
        &new_message(2, Some(Duration::from_secs(3600))),
        t0,
    )
    .await; // t0 + 1 h
    let views: [(u64, &[u64]); 4] = [
        (t0 + 999, &[1, 2, 3]),
        (t0 + 1000, &[1, 3]),
        (t0 + 59_999, &[1, 3]),
        (t0 + 60_000, &[3]),
    ];
    for (now, want) in views {
        let got = ok(
            C,
            "unacked",
            store.unacked(&a, slot(0), MessageId::ZERO, 100, now).await,
        );
        check!(
            C,
            ids(&got) == want,
            "unacked at +{} ms: {:?}, expected {want:?}",
            now - t0,
            ids(&got)
        );
        let got = ok(C, "history", store.history(&a, 0, 100, now).await);
        check!(
            C,
            ids(&got) == want,
            "history at +{} ms: {:?}, expected {want:?}",
            now - t0,
            ids(&got)
        );
    }
    let report = ok(C, "purge", store.purge(t0 + 1000).await);
    check_count(cfg, C, "expired by purge at +1 s", report.expired, 1);
    let report = ok(C, "purge", store.purge(t0 + 60_000).await);
    check_count(cfg, C, "expired by purge at +60 s", report.expired, 1);
    // Purged messages stay gone even for a reader whose clock is behind.
    let got = ok(C, "history", store.history(&a, 0, 100, t0).await);
    check!(
        C,
        ids(&got) == [3],
        "after purge, history at +0 ms: {:?}, expected [3]",
        ids(&got)
    );
    let next = append_one(C, store, &a, &new_message(3, None), t0 + 60_001).await;
    check!(
        C,
        next == MessageId(4),
        "ids continue after expiry: next id {next}"
    );
}

/// The per-client cap: purge leaves the newest `cap` messages and counts the dropped ones.
/// The store's cap is 3.
async fn store_cap<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store::cap";
    let a = cfg.client("-cap-a");
    let b = cfg.client("-cap-b");
    for n in 0..7 {
        append_one(C, store, &a, &new_message(n, None), cfg.base_ms + n).await;
    }
    for n in 0..2 {
        append_one(C, store, &b, &new_message(n, None), cfg.base_ms + n).await;
    }
    ok(C, "ack", store.ack(&a, slot(0), &[MessageId(7)]).await);
    let now = cfg.base_ms + 100;
    let report = ok(C, "purge", store.purge(now).await);
    check_count(cfg, C, "capped by purge", report.capped, 4);
    check_count(cfg, C, "expired by purge", report.expired, 0);
    let got = ok(C, "history", store.history(&a, 0, 100, now).await);
    check!(
        C,
        ids(&got) == [5, 6, 7],
        "a keeps {:?}, expected the newest 3: [5, 6, 7]",
        ids(&got)
    );
    let got = ok(
        C,
        "unacked",
        store.unacked(&a, slot(0), MessageId::ZERO, 100, now).await,
    );
    check!(
        C,
        ids(&got) == [5, 6],
        "a's slot 0 sees {:?}, expected [5, 6]",
        ids(&got)
    );
    let got = ok(C, "history", store.history(&b, 0, 100, now).await);
    check!(
        C,
        ids(&got) == [1, 2],
        "b under the cap keeps {:?}",
        ids(&got)
    );
    let again = ok(C, "purge", store.purge(now).await);
    if cfg.exact_purge_counts {
        check!(
            C,
            again.capped == 0,
            "a second purge capped {} more",
            again.capped
        );
    }
    let next = append_one(C, store, &a, &new_message(8, None), now).await;
    check!(
        C,
        next == MessageId(8),
        "ids continue after the cap: next id {next}"
    );
}

/// Checks a purge count: exact, or a lower bound when the store may hold other runs' data.
fn check_count(cfg: &ContractConfig, check: &str, what: &str, got: u64, want: u64) {
    if cfg.exact_purge_counts {
        check!(check, got == want, "{what}: {got}, expected {want}");
    } else {
        check!(
            check,
            got >= want,
            "{what}: {got}, expected at least {want}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Broker
// ---------------------------------------------------------------------------------------------

/// Runs every broker check. `make(n)` builds `n` node handles on one fresh, shared bus (called
/// once per check); `sleep(d)` returns a future that completes after `d` on the caller's
/// runtime (a ready future for a synchronous broker).
///
/// [`BrokerEvent::Resync`] events are skipped wherever they come: a real broker may reconnect.
///
/// # Panics
/// When a check fails, with a message naming it.
pub async fn broker_suite<B, F, Fut, Z, ZFut>(cfg: &ContractConfig, mut make: F, sleep: Z)
where
    B: Broker,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Vec<B>>,
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    let w = Waiter { cfg, sleep: &sleep };
    let (b, _e) = nodes(&mut make, 1).await;
    broker_ping(&b).await;
    let (b, mut e) = nodes(&mut make, 3).await;
    broker_notify(&w, &b, &mut e).await;
    let (b, _e) = nodes(&mut make, 2).await;
    broker_claim_generations(cfg, &b).await;
    let (b, mut e) = nodes(&mut make, 3).await;
    broker_claim_events(&w, &b, &mut e).await;
    let (b, _e) = nodes(&mut make, 1).await;
    broker_events_once(&w, &b).await;
}

/// `n` node handles on a fresh bus, and their event streams (taken at once).
async fn nodes<B, F, Fut>(make: &mut F, n: usize) -> (Vec<B>, Vec<BrokerEvents>)
where
    B: Broker,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Vec<B>>,
{
    let handles = make(n).await;
    assert_eq!(
        handles.len(),
        n,
        "contract suite: the broker factory built {} nodes, asked for {n}",
        handles.len()
    );
    let events = handles.iter().map(|b| b.events()).collect();
    (handles, events)
}

/// Bounded waiting on event streams with the caller's sleep.
struct Waiter<'a, Z> {
    /// Timeout, settle time and step.
    cfg: &'a ContractConfig,
    /// The caller's sleep.
    sleep: &'a Z,
}

/// What one look at a stream found.
enum Look {
    /// An event (never `Resync`).
    Event(BrokerEvent),
    /// The stream ended.
    Ended,
    /// Nothing yet.
    Nothing,
}

/// Takes what the stream has ready now, skipping `Resync`.
async fn look(events: &mut BrokerEvents) -> Look {
    poll_fn(|cx| {
        loop {
            return match events.as_mut().poll_next(cx) {
                Poll::Ready(Some(BrokerEvent::Resync)) => continue,
                Poll::Ready(Some(ev)) => Poll::Ready(Look::Event(ev)),
                Poll::Ready(None) => Poll::Ready(Look::Ended),
                Poll::Pending => Poll::Ready(Look::Nothing),
            };
        }
    })
    .await
}

impl<Z, ZFut> Waiter<'_, Z>
where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    /// Looks at `events` until an event comes, the stream ends, or `limit` has passed.
    async fn wait(&self, events: &mut BrokerEvents, limit: Duration) -> Look {
        let step = self.cfg.poll_step.max(Duration::from_millis(1));
        let mut waited = Duration::ZERO;
        loop {
            match look(events).await {
                Look::Nothing => {}
                found => return found,
            }
            if waited >= limit {
                return Look::Nothing;
            }
            (self.sleep)(step).await;
            waited += step;
        }
    }

    /// The next event, waiting up to the timeout.
    async fn expect(
        &self,
        check: &str,
        node: usize,
        events: &mut BrokerEvents,
        want: &str,
    ) -> BrokerEvent {
        match self.wait(events, self.cfg.timeout).await {
            Look::Event(ev) => ev,
            Look::Ended => panic!(
                "contract check {check} failed: node {node}'s event stream ended while waiting for {want}"
            ),
            Look::Nothing => panic!(
                "contract check {check} failed: node {node} got no event within {:?}, expected {want}",
                self.cfg.timeout
            ),
        }
    }

    /// Waits the settle time and checks that no event came.
    async fn expect_none(&self, check: &str, node: usize, events: &mut BrokerEvents, why: &str) {
        match self.wait(events, self.cfg.settle).await {
            Look::Event(ev) => panic!(
                "contract check {check} failed: node {node} got {ev:?}, expected nothing ({why})"
            ),
            Look::Ended => {
                panic!("contract check {check} failed: node {node}'s event stream ended ({why})")
            }
            Look::Nothing => {}
        }
    }
}

/// `ping` answers.
async fn broker_ping<B: Broker>(nodes: &[B]) {
    for n in nodes {
        ok("broker::ping", "ping", n.ping().await);
    }
}

/// Notify reaches every subscribed node (the notifier's own included) exactly once, and no
/// other node; subscribing twice is the same as once; unsubscribe stops delivery.
async fn broker_notify<B: Broker, Z, ZFut>(
    w: &Waiter<'_, Z>,
    nodes: &[B],
    events: &mut [BrokerEvents],
) where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    const C: &str = "broker::notify";
    let [n0, n1, n2] = nodes else {
        unreachable!("three nodes were built")
    };
    let [e0, e1, e2] = events else {
        unreachable!("three nodes were built")
    };
    let a = w.cfg.client("-notify-a");
    let other = w.cfg.client("-notify-other");
    ok(C, "subscribe", n0.subscribe(&a).await);
    ok(C, "subscribe again", n0.subscribe(&a).await);
    ok(C, "subscribe", n1.subscribe(&a).await);
    ok(C, "subscribe", n2.subscribe(&other).await);
    ok(
        C,
        "unsubscribe of a client never subscribed",
        n2.unsubscribe(&a).await,
    );

    ok(C, "notify", n0.notify(&a, MessageId(7)).await);
    let want = BrokerEvent::Notify {
        client: a.clone(),
        last: MessageId(7),
        message: None,
    };
    for (i, e) in [(0, &mut *e0), (1, &mut *e1)] {
        let got = w.expect(C, i, e, "Notify(a, 7)").await;
        check!(C, got == want, "node {i} got {got:?}, expected {want:?}");
    }
    w.expect_none(C, 0, e0, "subscribing twice must deliver once")
        .await;
    w.expect_none(C, 2, e2, "node 2 is not subscribed to a")
        .await;

    ok(C, "unsubscribe", n1.unsubscribe(&a).await);
    ok(C, "notify", n2.notify(&a, MessageId(8)).await);
    let got = w.expect(C, 0, e0, "Notify(a, 8)").await;
    let want = BrokerEvent::Notify {
        client: a.clone(),
        last: MessageId(8),
        message: None,
    };
    check!(C, got == want, "node 0 got {got:?}, expected {want:?}");
    w.expect_none(C, 1, e1, "node 1 unsubscribed from a").await;
    w.expect_none(C, 2, e2, "node 2 notified a but is not subscribed to it")
        .await;

    ok(C, "notify", n0.notify(&other, MessageId(1)).await);
    let got = w.expect(C, 2, e2, "Notify(other, 1)").await;
    let want = BrokerEvent::Notify {
        client: other.clone(),
        last: MessageId(1),
        message: None,
    };
    check!(C, got == want, "node 2 got {got:?}, expected {want:?}");
    w.expect_none(C, 0, e0, "node 0 is not subscribed to other")
        .await;

    // A notification with the message attached: the same event, the message carried intact
    // or dropped (a broker may always send the id alone).
    let msg = Message {
        id: MessageId(2),
        from: "contract".into(),
        channel: vec!["topic".into()],
        data: Payload::from_json(r#"{"n":[1,"two"]}"#).expect("valid JSON"),
        ts: 1_700_000_000_123,
        push: None,
    };
    ok(C, "notify_message", n1.notify_message(&other, &msg).await);
    let got = w
        .expect(C, 2, e2, "Notify(other, 2) with its message")
        .await;
    let carried = match &got {
        BrokerEvent::Notify {
            client,
            last,
            message,
        } if client == &other && *last == MessageId(2) => message.as_ref(),
        _ => {
            check!(C, false, "node 2 got {got:?}, expected Notify(other, 2)");
            None
        }
    };
    if let Some(m) = carried {
        check!(
            C,
            *m == msg,
            "the message arrived as {m:?}, sent as {msg:?}"
        );
    }
    w.expect_none(C, 0, e0, "node 0 is not subscribed to other")
        .await;

    // The notifications of one push, sent together: each reaches its client's subscribers.
    let notes = [
        (
            a.clone(),
            Message {
                id: MessageId(9),
                ..msg.clone()
            },
        ),
        (
            other.clone(),
            Message {
                id: MessageId(3),
                ..msg.clone()
            },
        ),
    ];
    ok(C, "notify_messages", n1.notify_messages(&notes).await);
    for (i, e, (client, m)) in [(0, &mut *e0, &notes[0]), (2, &mut *e2, &notes[1])] {
        let got = w.expect(C, i, e, "Notify of notify_messages").await;
        let fits = match &got {
            BrokerEvent::Notify {
                client: c,
                last,
                message,
            } => c == client && *last == m.id && message.as_ref().is_none_or(|x| x == m),
            _ => false,
        };
        check!(
            C,
            fits,
            "node {i} got {got:?}, expected Notify({client}, {})",
            m.id
        );
        w.expect_none(C, i, e, "one notification per client").await;
    }
}

/// Claims take generations strictly increasing per `(client, slot)`, starting at 1 for a
/// fresh pair, independent per slot and per client.
async fn broker_claim_generations<B: Broker>(cfg: &ContractConfig, nodes: &[B]) {
    const C: &str = "broker::claim_generations";
    let [n0, n1] = nodes else {
        unreachable!("two nodes were built")
    };
    let a = cfg.client("-gen-a");
    let b = cfg.client("-gen-b");
    let id0 = node_id("node-0");
    let id1 = node_id("node-1");
    let mut last = Generation(0);
    for round in 0..4 {
        let (n, id) = if round % 2 == 0 {
            (n0, &id0)
        } else {
            (n1, &id1)
        };
        let g = ok(C, "claim", n.claim(&a, slot(0), id).await);
        check!(
            C,
            g > last,
            "claim {round} of (a, 0) got {g}, not above {last}"
        );
        if round == 0 {
            check!(
                C,
                g == Generation(1),
                "first claim of a fresh (a, 0) got {g}, expected 1"
            );
        }
        last = g;
    }
    let g = ok(C, "claim", n1.claim(&a, slot(5), &id1).await);
    check!(
        C,
        g == Generation(1),
        "first claim of (a, 5) after claims of (a, 0) got {g}, expected 1"
    );
    let g = ok(C, "claim", n0.claim(&b, slot(0), &id0).await);
    check!(
        C,
        g == Generation(1),
        "first claim of (b, 0) after claims of a got {g}, expected 1"
    );
    let g = ok(C, "claim", n0.claim(&a, slot(0), &id0).await);
    check!(
        C,
        g > last,
        "claim of (a, 0) after other pairs got {g}, not above {last}"
    );
}

/// A claim's event reaches every subscribed node, the claimer's own included, with the slot,
/// generation and node of the claim; unsubscribed nodes get nothing.
async fn broker_claim_events<B: Broker, Z, ZFut>(
    w: &Waiter<'_, Z>,
    nodes: &[B],
    events: &mut [BrokerEvents],
) where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    const C: &str = "broker::claim_events";
    let [n0, n1, n2] = nodes else {
        unreachable!("three nodes were built")
    };
    let [e0, e1, e2] = events else {
        unreachable!("three nodes were built")
    };
    let a = w.cfg.client("-claimev-a");
    ok(C, "subscribe", n0.subscribe(&a).await);
    ok(C, "subscribe", n1.subscribe(&a).await);
    let id1 = node_id("node-1");
    let g1 = ok(C, "claim", n1.claim(&a, slot(2), &id1).await);
    let g2 = ok(C, "claim", n0.claim(&a, slot(2), &node_id("node-0")).await);
    let g3 = ok(C, "claim", n2.claim(&a, slot(9), &node_id("node-2")).await);
    let want = [
        BrokerEvent::Claim {
            client: a.clone(),
            slot: slot(2),
            generation: g1,
            node: id1.clone(),
        },
        BrokerEvent::Claim {
            client: a.clone(),
            slot: slot(2),
            generation: g2,
            node: node_id("node-0"),
        },
        BrokerEvent::Claim {
            client: a.clone(),
            slot: slot(9),
            generation: g3,
            node: node_id("node-2"),
        },
    ];
    for (i, e) in [(0, &mut *e0), (1, &mut *e1)] {
        let mut got = Vec::new();
        for _ in 0..want.len() {
            got.push(w.expect(C, i, e, "a claim of a").await);
        }
        // Claims of different slots may be reordered by a sharded broker; sort to compare.
        let key = |ev: &BrokerEvent| match ev {
            BrokerEvent::Claim {
                slot, generation, ..
            } => (slot.get(), generation.0),
            _ => (u8::MAX, u64::MAX),
        };
        got.sort_by_key(key);
        let mut sorted = want.to_vec();
        sorted.sort_by_key(key);
        check!(
            C,
            got == sorted,
            "node {i} got {got:?}, expected {sorted:?}"
        );
        w.expect_none(C, i, e, "three claims make three events")
            .await;
    }
    w.expect_none(C, 2, e2, "node 2 claimed but is not subscribed to a")
        .await;
}

/// The first `events()` took the stream; a later call gets a stream that ends.
async fn broker_events_once<B: Broker, Z, ZFut>(w: &Waiter<'_, Z>, nodes: &[B])
where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    const C: &str = "broker::events_once";
    let n0 = &nodes[0];
    let mut second = n0.events();
    match w.wait(&mut second, w.cfg.timeout).await {
        Look::Ended => {}
        Look::Event(ev) => {
            panic!("contract check {C} failed: the second events() stream yielded {ev:?}")
        }
        Look::Nothing => panic!(
            "contract check {C} failed: the second events() stream did not end within {:?}",
            w.cfg.timeout
        ),
    }
}

fn node_id(s: &str) -> NodeId {
    NodeId::new(s).unwrap_or_else(|e| panic!("contract suite: {e}"))
}

#[cfg(test)]
mod tests {
    use futures_executor::block_on;

    use super::*;
    use crate::memory::{MemoryBroker, MemoryStore};

    /// The output of a future that is ready at once (the memory ports' futures are).
    fn ready_now<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("a memory port's future was not ready"),
        }
    }

    fn cfg() -> ContractConfig {
        ContractConfig::new("ct-7f3a", 1_764_000_000_000).unwrap()
    }

    #[test]
    fn memory_store_passes_the_store_suite() {
        block_on(store_suite(&cfg(), |r| {
            std::future::ready(MemoryStore::new(r))
        }));
    }

    #[test]
    fn memory_broker_passes_the_broker_suite() {
        block_on(broker_suite(
            &cfg(),
            |n| {
                let bus = MemoryBroker::new();
                std::future::ready((0..n).map(|_| bus.node()).collect::<Vec<_>>())
            },
            |_| std::future::ready(()),
        ));
    }

    #[test]
    fn one_shared_store_passes_with_lower_bound_purge_counts() {
        // As on a shared real database: checks with the same retention share one store.
        let cfg = cfg().exact_purge_counts(false);
        let mut stores = Vec::new();
        block_on(store_suite(&cfg, |r| {
            // The retention of the check still applies: one store per retention, shared.
            let s = match stores.iter().find(|(rr, _)| *rr == r) {
                Some((_, s)) => MemoryStore::clone(s),
                None => {
                    let s = MemoryStore::new(r);
                    stores.push((r, s.clone()));
                    s
                }
            };
            std::future::ready(s)
        }));
    }

    #[test]
    fn run_ids_are_validated() {
        assert!(ContractConfig::new("bad id", 0).is_err());
        assert!(ContractConfig::new(&"a".repeat(100), 0).is_err());
        assert!(ContractConfig::new("ok-1", 0).is_ok());
    }

    /// A store that breaks one rule: it ignores the slot when acknowledging.
    #[derive(Clone)]
    struct SlotBlind(MemoryStore);

    impl MessageStore for SlotBlind {
        fn append(
            &self,
            msg: &NewMessage,
            recipients: &[ClientId],
            now_ms: u64,
        ) -> impl Future<Output = Result<crate::ports::AppendResult, crate::ports::StoreError>> + Send
        {
            self.0.append(msg, recipients, now_ms)
        }
        fn unacked(
            &self,
            client: &ClientId,
            slot: Slot,
            after: MessageId,
            limit: usize,
            now_ms: u64,
        ) -> impl Future<Output = Result<Vec<Message>, crate::ports::StoreError>> + Send {
            self.0.unacked(client, slot, after, limit, now_ms)
        }
        fn ack(
            &self,
            client: &ClientId,
            _slot: Slot,
            ids: &[MessageId],
        ) -> impl Future<Output = Result<(), crate::ports::StoreError>> + Send {
            let all: Vec<_> = (0..16).map(|s| Slot::new(s).unwrap()).collect();
            for s in all {
                let _ = ready_now(self.0.ack(client, s, ids));
            }
            std::future::ready(Ok(()))
        }
        fn history(
            &self,
            client: &ClientId,
            since_ms: u64,
            limit: usize,
            now_ms: u64,
        ) -> impl Future<Output = Result<Vec<Message>, crate::ports::StoreError>> + Send {
            self.0.history(client, since_ms, limit, now_ms)
        }
        fn purge(
            &self,
            now_ms: u64,
        ) -> impl Future<Output = Result<crate::ports::RetentionReport, crate::ports::StoreError>> + Send
        {
            self.0.purge(now_ms)
        }
        fn ping(&self) -> impl Future<Output = Result<(), crate::ports::StoreError>> + Send {
            self.0.ping()
        }
        fn slots(
            &self,
            client: &ClientId,
            also: &[Slot],
            now_ms: u64,
        ) -> impl Future<Output = Result<Vec<crate::ports::SlotBacklog>, crate::ports::StoreError>> + Send
        {
            self.0.slots(client, also, now_ms)
        }

        fn outbox_add(
            &self,
            events: &[crate::webhook::Event],
            max: u64,
        ) -> impl Future<Output = Result<crate::webhook::OutboxAdded, crate::ports::StoreError>> + Send
        {
            self.0.outbox_add(events, max)
        }
        fn outbox_lease(
            &self,
            now_ms: u64,
            limit: usize,
            lease: Duration,
            node: &NodeId,
        ) -> impl Future<
            Output = Result<Vec<crate::webhook::OutboxEntry>, crate::ports::StoreError>,
        > + Send {
            self.0.outbox_lease(now_ms, limit, lease, node)
        }
        fn outbox_done(
            &self,
            ids: &[crate::webhook::EventId],
        ) -> impl Future<Output = Result<(), crate::ports::StoreError>> + Send {
            self.0.outbox_done(ids)
        }
        fn outbox_retry(
            &self,
            ids: &[crate::webhook::EventId],
            next_ms: u64,
        ) -> impl Future<Output = Result<(), crate::ports::StoreError>> + Send {
            self.0.outbox_retry(ids, next_ms)
        }
        fn outbox_stats(
            &self,
        ) -> impl Future<Output = Result<crate::webhook::OutboxStats, crate::ports::StoreError>> + Send
        {
            self.0.outbox_stats()
        }
    }

    #[test]
    #[should_panic(expected = "contract check store::ack_per_slot failed")]
    fn the_suite_catches_a_slot_blind_store() {
        block_on(store_suite(&cfg(), |r| {
            std::future::ready(SlotBlind(MemoryStore::new(r)))
        }));
    }

    #[test]
    #[should_panic(expected = "contract check broker::notify failed")]
    fn the_suite_catches_a_broker_that_delivers_twice() {
        // Each node subscribes through a twin handle too and merges both queues, so every
        // subscribed event arrives twice.
        struct Doubler(
            crate::memory::MemoryBrokerNode,
            crate::memory::MemoryBrokerNode,
        );
        impl Broker for Doubler {
            fn subscribe(
                &self,
                client: &ClientId,
            ) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
                let _ = ready_now(self.1.subscribe(client));
                self.0.subscribe(client)
            }
            fn unsubscribe(
                &self,
                client: &ClientId,
            ) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
                self.0.unsubscribe(client)
            }
            fn notify(
                &self,
                client: &ClientId,
                last: MessageId,
            ) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
                self.0.notify(client, last)
            }
            fn claim(
                &self,
                client: &ClientId,
                slot: Slot,
                node: &NodeId,
            ) -> impl Future<Output = Result<Generation, crate::ports::BrokerError>> + Send
            {
                self.0.claim(client, slot, node)
            }
            fn ping(&self) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
                self.0.ping()
            }
            fn events(&self) -> BrokerEvents {
                // Both queues merged: a subscription shows up twice.
                use futures_core::Stream;
                use std::pin::Pin;
                use std::task::Context;
                struct Merge(BrokerEvents, BrokerEvents);
                impl Stream for Merge {
                    type Item = BrokerEvent;
                    fn poll_next(
                        mut self: Pin<&mut Self>,
                        cx: &mut Context<'_>,
                    ) -> Poll<Option<BrokerEvent>> {
                        match self.0.as_mut().poll_next(cx) {
                            Poll::Ready(Some(ev)) => Poll::Ready(Some(ev)),
                            _ => self.1.as_mut().poll_next(cx),
                        }
                    }
                }
                Box::pin(Merge(self.0.events(), self.1.events()))
            }
            fn claim_session(
                &self,
                client: &ClientId,
                slot: Slot,
                node: &NodeId,
                now_ms: u64,
            ) -> impl Future<Output = Result<Generation, crate::ports::BrokerError>> + Send
            {
                self.0.claim_session(client, slot, node, now_ms)
            }
            fn end_session(
                &self,
                client: &ClientId,
                slot: Slot,
                node: &NodeId,
                generation: Generation,
            ) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
                self.0.end_session(client, slot, node, generation)
            }
            fn sessions(
                &self,
                client: &ClientId,
            ) -> impl Future<
                Output = Result<Vec<crate::ports::OnlineSession>, crate::ports::BrokerError>,
            > + Send {
                self.0.sessions(client)
            }
        }
        block_on(broker_suite(
            &cfg(),
            |n| {
                let bus = MemoryBroker::new();
                std::future::ready(
                    (0..n)
                        .map(|_| Doubler(bus.node(), bus.node()))
                        .collect::<Vec<_>>(),
                )
            },
            |_| std::future::ready(()),
        ));
    }
}
