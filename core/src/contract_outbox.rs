//! The contract suite of the webhook outbox ([`MessageStore::outbox_add`] and the methods
//! after it): every store runs [`outbox_suite`] against itself, as it runs
//! [`store_suite`](crate::contract::store_suite).
//!
//! Each check gets a fresh store from `make` whose outbox must be empty (a MongoDB adapter
//! gives each check its own database): depths and the bound are checked exactly. Times are
//! parameters ([`ContractConfig::base_ms`] plus offsets), so nothing waits.
//!
//! ```no_run
//! # async fn demo() {
//! use herald_core::contract::ContractConfig;
//! use herald_core::contract_outbox::outbox_suite;
//! use herald_core::{MemoryStore, Retention};
//!
//! let cfg = ContractConfig::new("run-42", 1_764_000_000_000).expect("a valid run id");
//! outbox_suite(&cfg, || std::future::ready(MemoryStore::new(Retention::default()))).await;
//! # }
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use crate::contract::ContractConfig;
use crate::ids::{ClientId, IdError, MessageId, NodeId, Slot};
use crate::ports::MessageStore;
use crate::webhook::{Event, EventId, EventKind, OutboxAdded, OutboxEntry, OutboxStats};

/// Runs every outbox check against stores built by `make` (called once per check; each
/// store's outbox must start empty).
///
/// # Panics
/// When a check fails, with a message naming it (`contract check outbox::lease failed: ...`).
pub async fn outbox_suite<S, F, Fut>(cfg: &ContractConfig, mut make: F)
where
    S: MessageStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    outbox_add_ignores_duplicates(cfg, &make().await).await;
    outbox_lease_excludes_other_nodes(cfg, &make().await).await;
    outbox_done_and_retry(cfg, &make().await).await;
    outbox_bound(cfg, &make().await).await;
}

/// A long lease, longer than any offset the checks use before they say otherwise.
const LEASE: Duration = Duration::from_secs(30);

fn fail(check: &str, msg: String) -> ! {
    panic!("contract check {check} failed: {msg}")
}

fn ok<T, E: std::fmt::Display>(check: &str, what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| fail(check, format!("{what} returned an error: {e}")))
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap_or_else(|e: IdError| panic!("contract suite: {e}"))
}

/// `n` events of distinct facts about the check's client, `ts` = base + i.
fn events(cfg: &ContractConfig, check: &str, n: usize) -> Vec<Event> {
    let client: ClientId = ClientId::new(&format!("{}{}", cfg.run_id, "ob"))
        .unwrap_or_else(|e| panic!("contract suite: {e}"));
    (0..n)
        .map(|i| {
            Event::new(
                EventKind::ALL[i % 4],
                &format!("{}-{check}-{}", cfg.run_id, i / 4),
                client.clone(),
                Slot::new((i % 3) as i64).unwrap_or_default(),
                MessageId(i as u64 + 1),
                cfg.base_ms + i as u64,
            )
        })
        .collect()
}

fn ids(entries: &[OutboxEntry]) -> BTreeSet<EventId> {
    entries.iter().map(|e| e.event.id.clone()).collect()
}

fn id_set<'a>(evs: impl IntoIterator<Item = &'a Event>) -> BTreeSet<EventId> {
    evs.into_iter().map(|e| e.id.clone()).collect()
}

/// Adds `evs` with bound `max` and checks the counts `(added, duplicates, dropped)`.
async fn expect_add<S: MessageStore>(
    check: &str,
    what: &str,
    store: &S,
    evs: &[Event],
    max: u64,
    (added, duplicates, dropped): (u64, u64, u64),
) {
    let got = ok(check, "outbox_add", store.outbox_add(evs, max).await);
    let want = OutboxAdded {
        added,
        duplicates,
        dropped,
    };
    if got != want {
        fail(check, format!("{what}: {got:?}, expected {want:?}"));
    }
}

async fn stats<S: MessageStore>(check: &str, store: &S) -> OutboxStats {
    ok(check, "outbox_stats", store.outbox_stats().await)
}

/// Adding the same fact twice keeps one event; what a lease gives back is what was added.
async fn outbox_add_ignores_duplicates<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const CHECK: &str = "outbox::add_ignores_duplicates";
    let evs = events(cfg, "dup", 4);
    let empty = stats(CHECK, store).await;
    if empty != OutboxStats::default() {
        fail(
            CHECK,
            format!("a new store's outbox is not empty: {empty:?}"),
        );
    }
    expect_add(CHECK, "first add", store, &evs[..3], 100, (3, 0, 0)).await;
    // Two again (the same facts at other times still have the same ids) and a new one.
    let mut again = vec![evs[0].clone(), evs[2].clone(), evs[3].clone()];
    again[0].ts += 10_000;
    expect_add(CHECK, "second add", store, &again, 100, (1, 2, 0)).await;
    let s = stats(CHECK, store).await;
    if s.depth != 4 || s.oldest_ts != Some(cfg.base_ms) {
        fail(
            CHECK,
            format!("stats {s:?}, expected depth 4, oldest {}", cfg.base_ms),
        );
    }
    let leased = ok(
        CHECK,
        "outbox_lease",
        store
            .outbox_lease(cfg.base_ms, 100, LEASE, &node("n1"))
            .await,
    );
    let mut got: Vec<&OutboxEntry> = leased.iter().collect();
    got.sort_by_key(|e| e.event.ts);
    let want: Vec<OutboxEntry> = evs
        .iter()
        .map(|e| OutboxEntry {
            event: e.clone(),
            attempts: 0,
        })
        .collect();
    if got.len() != 4 || got.iter().zip(&want).any(|(g, w)| *g != w) {
        fail(
            CHECK,
            format!("leased {got:?}, expected the events as first added: {want:?}"),
        );
    }
}

/// A leased event goes to no other lease until its lease runs out; then it is due again.
async fn outbox_lease_excludes_other_nodes<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const CHECK: &str = "outbox::lease_excludes_other_nodes";
    let evs = events(cfg, "lease", 5);
    ok(CHECK, "outbox_add", store.outbox_add(&evs, 100).await);
    let t0 = cfg.base_ms;
    let none = ok(
        CHECK,
        "outbox_lease",
        store.outbox_lease(t0, 0, LEASE, &node("n1")).await,
    );
    if !none.is_empty() {
        fail(CHECK, format!("a lease of 0 gave {} events", none.len()));
    }
    let a = ok(
        CHECK,
        "outbox_lease",
        store.outbox_lease(t0, 2, LEASE, &node("n1")).await,
    );
    if a.len() != 2 {
        fail(CHECK, format!("a lease of 2 gave {} events", a.len()));
    }
    let b = ok(
        CHECK,
        "outbox_lease",
        store.outbox_lease(t0, 100, LEASE, &node("n2")).await,
    );
    let (sa, sb) = (ids(&a), ids(&b));
    if b.len() != 3 || !sa.is_disjoint(&sb) || &sa | &sb != id_set(&evs) {
        fail(
            CHECK,
            format!("the second node got {sb:?} after the first got {sa:?}"),
        );
    }
    let lease_ms = LEASE.as_millis() as u64;
    let c = ok(
        CHECK,
        "outbox_lease",
        store
            .outbox_lease(t0 + lease_ms - 1, 100, LEASE, &node("n2"))
            .await,
    );
    if !c.is_empty() {
        fail(
            CHECK,
            format!("{} events leased again before their lease ran out", c.len()),
        );
    }
    let d = ok(
        CHECK,
        "outbox_lease",
        store
            .outbox_lease(t0 + lease_ms, 100, LEASE, &node("n2"))
            .await,
    );
    if ids(&d) != id_set(&evs) {
        fail(
            CHECK,
            format!(
                "after the lease ran out, {} of 5 events were due again",
                d.len()
            ),
        );
    }
    if d.iter().any(|e| e.attempts != 0) {
        fail(CHECK, "a lease running out counted as an attempt".into());
    }
}

/// Done removes; retry makes an event due at the time given, one attempt more; unknown ids
/// are ignored by both.
async fn outbox_done_and_retry<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const CHECK: &str = "outbox::done_and_retry";
    let evs = events(cfg, "retry", 3);
    ok(CHECK, "outbox_add", store.outbox_add(&evs, 100).await);
    let t0 = cfg.base_ms;
    let n1 = node("n1");
    ok(
        CHECK,
        "outbox_lease",
        store.outbox_lease(t0, 100, LEASE, &n1).await,
    );
    let unknown = events(cfg, "never-added", 1)[0].id.clone();
    ok(
        CHECK,
        "outbox_done",
        store
            .outbox_done(&[evs[0].id.clone(), unknown.clone()])
            .await,
    );
    ok(
        CHECK,
        "outbox_retry",
        store
            .outbox_retry(&[evs[1].id.clone(), unknown.clone()], t0 + 5_000)
            .await,
    );
    let s = stats(CHECK, store).await;
    if s.depth != 2 || s.oldest_ts != Some(evs[1].ts) {
        fail(
            CHECK,
            format!(
                "after one done: {s:?}, expected depth 2, oldest {}",
                evs[1].ts
            ),
        );
    }
    let early = ok(
        CHECK,
        "outbox_lease",
        store.outbox_lease(t0 + 4_999, 100, LEASE, &n1).await,
    );
    if !early.is_empty() {
        fail(
            CHECK,
            format!("{} events due before their retry time", early.len()),
        );
    }
    for attempts in 1..=2 {
        let at = t0 + 5_000 * u64::from(attempts);
        let got = ok(
            CHECK,
            "outbox_lease",
            store.outbox_lease(at, 100, LEASE, &n1).await,
        );
        let want = vec![OutboxEntry {
            event: evs[1].clone(),
            attempts,
        }];
        if got != want {
            fail(
                CHECK,
                format!("retry {attempts}: leased {got:?}, expected {want:?}"),
            );
        }
        ok(
            CHECK,
            "outbox_retry",
            store.outbox_retry(&[evs[1].id.clone()], at + 5_000).await,
        );
    }
    ok(
        CHECK,
        "outbox_done",
        store
            .outbox_done(&[evs[1].id.clone(), evs[2].id.clone()])
            .await,
    );
    let s = stats(CHECK, store).await;
    if s != OutboxStats::default() {
        fail(CHECK, format!("after every event was done: {s:?}"));
    }
    let none = ok(
        CHECK,
        "outbox_lease",
        store.outbox_lease(t0 + 3_600_000, 100, LEASE, &n1).await,
    );
    if !none.is_empty() {
        fail(CHECK, format!("{} done events leased again", none.len()));
    }
}

/// Past `max`, new events are dropped and counted; duplicates are not drops.
async fn outbox_bound<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const CHECK: &str = "outbox::bound";
    let evs = events(cfg, "bound", 5);
    let got = ok(CHECK, "outbox_add", store.outbox_add(&evs, 3).await);
    let want = OutboxAdded {
        added: 3,
        duplicates: 0,
        dropped: 2,
    };
    if got != want {
        fail(
            CHECK,
            format!("add of 5 to a bound of 3: {got:?}, expected {want:?}"),
        );
    }
    let got = ok(CHECK, "outbox_add", store.outbox_add(&evs[..1], 3).await);
    if got.duplicates != 1 || got.dropped != 0 || got.added != 0 {
        fail(CHECK, format!("a duplicate at the bound: {got:?}"));
    }
    let s = stats(CHECK, store).await;
    if s.depth != 3 {
        fail(CHECK, format!("depth {} at a bound of 3", s.depth));
    }
    // Room again after one is done.
    let leased = ok(
        CHECK,
        "outbox_lease",
        store.outbox_lease(cfg.base_ms, 1, LEASE, &node("n1")).await,
    );
    ok(
        CHECK,
        "outbox_done",
        store.outbox_done(&[leased[0].event.id.clone()]).await,
    );
    expect_add(
        CHECK,
        "two to one free place",
        store,
        &evs[3..],
        3,
        (1, 0, 1),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use futures_executor::block_on;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::ports::Retention;

    fn cfg() -> ContractConfig {
        ContractConfig::new("ob-7f3a", 1_764_000_000_000).unwrap()
    }

    #[test]
    fn memory_store_passes_the_outbox_suite() {
        block_on(outbox_suite(&cfg(), || {
            std::future::ready(MemoryStore::new(Retention::default()))
        }));
    }

    #[test]
    #[should_panic(expected = "contract check outbox::lease_excludes_other_nodes failed")]
    fn the_suite_catches_events_that_come_back_from_nowhere() {
        // One outbox for every check: the second finds the first one's events due.
        let shared = MemoryStore::new(Retention::default());
        block_on(outbox_suite(&cfg(), || std::future::ready(shared.clone())));
    }
}
