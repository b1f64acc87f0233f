//! The contract suite of push records, receipts, status, recall and idempotency (the store
//! methods of issue 14, rules in [`crate::receipts`]): adapters call [`receipts_suite`] next to
//! [`crate::contract::store_suite`], with the same [`ContractConfig`].
//!
//! Idempotency keys and push ids are made unique per run from the run id, so several runs may
//! share one database.

use std::future::Future;
use std::time::Duration;

use crate::contract::{ContractConfig, KEEP, new_message};
use crate::ids::{ClientId, MessageId, Slot};
use crate::message::NewMessage;
use crate::ports::{MessageStore, Retention};
use crate::push_id::{PushId, PushIds};
use crate::receipts::{
    CopyState, IdempotencyClaim, IdempotencyTimes, RecallReport, Receipt, ReceiptKind,
};

/// Panics naming the check unless `cond` holds.
fn check(name: &str, cond: bool, what: impl FnOnce() -> String) {
    if !cond {
        panic!("contract check {name} failed: {}", what());
    }
}

/// Unwraps a store result, or panics naming the check and the operation.
fn ok<T, E: std::fmt::Display>(name: &str, what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("contract check {name} failed: {what} returned an error: {e}"))
}

fn slot(n: i64) -> Slot {
    Slot::new(n).unwrap_or_else(|e| panic!("contract suite: {e}"))
}

/// A push id source unique to this run: the run id's bytes (FNV-1a) are its entropy.
fn push_ids(cfg: &ContractConfig) -> PushIds {
    let entropy = cfg.run_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    PushIds::new(entropy)
}

fn message(push: PushId, ttl: Option<Duration>) -> NewMessage {
    NewMessage {
        push: Some(push),
        ..new_message(1, ttl)
    }
}

/// Appends `msg` to `recipients`, every copy stored.
async fn push_to<S: MessageStore>(
    name: &str,
    store: &S,
    msg: &NewMessage,
    recipients: &[ClientId],
    now_ms: u64,
) -> Vec<MessageId> {
    let r = ok(name, "append", store.append(msg, recipients, now_ms).await);
    r.into_iter()
        .map(|x| ok(name, "append (a recipient's entry)", x))
        .collect()
}

fn receipt(
    push: PushId,
    client: &ClientId,
    id: MessageId,
    slot: Slot,
    kind: ReceiptKind,
    at_ms: u64,
) -> Receipt {
    Receipt {
        push,
        client: client.clone(),
        id,
        slot,
        kind,
        at_ms,
    }
}

/// Runs every receipts check against stores built by `make` (called once per check, with the
/// [`Retention`] it needs).
///
/// # Panics
/// When a check fails, with a message naming it.
pub async fn receipts_suite<S, F, Fut>(cfg: &ContractConfig, mut make: F)
where
    S: MessageStore,
    F: FnMut(Retention) -> Fut,
    Fut: Future<Output = S>,
{
    let mut ids = push_ids(cfg);
    receipts_push_id_is_kept(cfg, &make(KEEP).await, &mut ids).await;
    receipts_status(cfg, &make(KEEP).await, &mut ids).await;
    receipts_expired(cfg, &make(KEEP).await, &mut ids).await;
    receipts_recall(cfg, &make(KEEP).await, &mut ids).await;
    receipts_idempotency(cfg, &make(KEEP).await).await;
}

/// Every stored copy reads back with its push id.
async fn receipts_push_id_is_kept<S: MessageStore>(
    cfg: &ContractConfig,
    store: &S,
    ids: &mut PushIds,
) {
    const C: &str = "receipts::push_id_is_kept";
    let (a, b) = (cfg.client("-pid-a"), cfg.client("-pid-b"));
    let t0 = cfg.base_ms;
    let p = ids.next(t0);
    push_to(C, store, &message(p, None), &[a.clone(), b.clone()], t0).await;
    for c in [&a, &b] {
        let got = ok(
            C,
            "unacked",
            store.unacked(c, slot(0), MessageId::ZERO, 10, t0).await,
        );
        check(C, got.len() == 1 && got[0].push == Some(p), || {
            format!("unacked of {c}: {got:?}, expected one copy of push {p}")
        });
        let got = ok(C, "history", store.history(c, 0, 10, t0).await);
        check(C, got.len() == 1 && got[0].push == Some(p), || {
            format!("history of {c}: {got:?}, expected one copy of push {p}")
        });
    }
}

/// Status follows the copies: stored, delivered (earliest receipt), acked (by the ack state,
/// with the acked receipt's time), per slot, in recipient order; unknown pushes have none.
async fn receipts_status<S: MessageStore>(cfg: &ContractConfig, store: &S, ids: &mut PushIds) {
    const C: &str = "receipts::status";
    let (a, b) = (cfg.client("-st-a"), cfg.client("-st-b"));
    let t0 = cfg.base_ms;
    let p = ids.next(t0);
    let copies = push_to(C, store, &message(p, None), &[b.clone(), a.clone()], t0).await;
    let (ib, ia) = (copies[0], copies[1]);
    let states = |st: &crate::receipts::PushStatus| {
        st.copies
            .iter()
            .map(|c| (c.client.clone(), c.id, c.state, c.delivered_at, c.acked_at))
            .collect::<Vec<_>>()
    };
    let st = ok(C, "push_status", store.push_status(p, slot(0), t0).await);
    let st = st.unwrap_or_else(|| panic!("contract check {C} failed: no status of a stored push"));
    check(C, st.ts == t0, || {
        format!("push time {}, expected {t0}", st.ts)
    });
    let want = vec![
        (b.clone(), ib, CopyState::Stored, None, None),
        (a.clone(), ia, CopyState::Stored, None, None),
    ];
    check(C, states(&st) == want, || {
        format!("fresh push: {:?}, expected {want:?}", states(&st))
    });
    let s0 = slot(0);
    let delivered = [
        receipt(p, &a, ia, s0, ReceiptKind::Delivered, t0 + 20),
        receipt(p, &a, ia, s0, ReceiptKind::Delivered, t0 + 10),
        receipt(p, &a, ia, s0, ReceiptKind::Delivered, t0 + 30),
    ];
    ok(
        C,
        "record_receipts",
        store.record_receipts(&delivered).await,
    );
    ok(C, "ack", store.ack(&a, s0, &[ia]).await);
    let acked = [receipt(p, &a, ia, s0, ReceiptKind::Acked, t0 + 40)];
    ok(C, "record_receipts", store.record_receipts(&acked).await);
    let b_delivered = [receipt(p, &b, ib, s0, ReceiptKind::Delivered, t0 + 50)];
    ok(
        C,
        "record_receipts",
        store.record_receipts(&b_delivered).await,
    );
    // Receipts of an unknown push are ignored.
    let stray = [receipt(ids.next(t0), &a, ia, s0, ReceiptKind::Acked, t0)];
    ok(C, "record_receipts", store.record_receipts(&stray).await);
    let st = ok(C, "push_status", store.push_status(p, s0, t0 + 60).await);
    let st = st.unwrap_or_else(|| panic!("contract check {C} failed: status gone"));
    let want = vec![
        (b.clone(), ib, CopyState::Delivered, Some(t0 + 50), None),
        (
            a.clone(),
            ia,
            CopyState::Acked,
            Some(t0 + 10),
            Some(t0 + 40),
        ),
    ];
    check(C, states(&st) == want, || {
        format!("after receipts: {:?}, expected {want:?}", states(&st))
    });
    let st = ok(
        C,
        "push_status",
        store.push_status(p, slot(1), t0 + 60).await,
    );
    let st = st.unwrap_or_else(|| panic!("contract check {C} failed: status gone"));
    let want = vec![
        (b.clone(), ib, CopyState::Stored, None, None),
        (a.clone(), ia, CopyState::Stored, None, None),
    ];
    check(C, states(&st) == want, || {
        format!("slot 1 is on its own: {:?}, expected {want:?}", states(&st))
    });
    let unknown = ok(
        C,
        "push_status",
        store.push_status(ids.next(t0), s0, t0).await,
    );
    check(C, unknown.is_none(), || {
        format!("an unknown push has a status: {unknown:?}")
    });
}

/// A copy whose time to live ran out unacknowledged is expired; an acknowledged one stays
/// acked.
async fn receipts_expired<S: MessageStore>(cfg: &ContractConfig, store: &S, ids: &mut PushIds) {
    const C: &str = "receipts::expired";
    let (a, b) = (cfg.client("-ex-a"), cfg.client("-ex-b"));
    let t0 = cfg.base_ms;
    let p = ids.next(t0);
    let msg = message(p, Some(Duration::from_secs(1)));
    let copies = push_to(C, store, &msg, &[a.clone(), b.clone()], t0).await;
    ok(C, "ack", store.ack(&a, slot(0), &copies[..1]).await);
    let acked = [receipt(
        p,
        &a,
        copies[0],
        slot(0),
        ReceiptKind::Acked,
        t0 + 5,
    )];
    ok(C, "record_receipts", store.record_receipts(&acked).await);
    let st = ok(
        C,
        "push_status",
        store.push_status(p, slot(0), t0 + 1000).await,
    );
    let st = st.unwrap_or_else(|| panic!("contract check {C} failed: no status"));
    let got: Vec<CopyState> = st.copies.iter().map(|c| c.state).collect();
    check(C, got == [CopyState::Acked, CopyState::Expired], || {
        format!("at expiry: {got:?}, expected [Acked, Expired]")
    });
    check(C, st.expires_ms == t0 + 1000, || {
        format!("expiry {}, expected {}", st.expires_ms, t0 + 1000)
    });
    expiry_is_listed_until_reported(store, p, t0 + 1000).await;
}

/// `expired_pushes` lists `p` (which expires at `expires_ms`) from its expiry on, not before,
/// until `expiry_reported` marks it. A store shared with other runs may list their pushes
/// too: they are marked as they come.
async fn expiry_is_listed_until_reported<S: MessageStore>(store: &S, p: PushId, expires_ms: u64) {
    const C: &str = "receipts::expiry_reported";
    let before = ok(
        C,
        "expired_pushes",
        store.expired_pushes(expires_ms - 1, 10_000).await,
    );
    check(C, !before.contains(&p), || {
        format!("push {p} listed 1 ms before its expiry")
    });
    let mut seen = false;
    for _ in 0..100 {
        let listed = ok(
            C,
            "expired_pushes",
            store.expired_pushes(expires_ms, 50).await,
        );
        if listed.is_empty() {
            break;
        }
        seen |= listed.contains(&p);
        ok(C, "expiry_reported", store.expiry_reported(&listed).await);
        if seen {
            break;
        }
    }
    check(C, seen, || format!("push {p} never listed at its expiry"));
    let after = ok(
        C,
        "expired_pushes",
        store.expired_pushes(expires_ms + 10, 10_000).await,
    );
    check(C, !after.contains(&p), || {
        format!("push {p} listed again after it was reported")
    });
}

/// A recall hides every copy not yet acknowledged from every slot, counts the copies once,
/// and answers the same when repeated.
async fn receipts_recall<S: MessageStore>(cfg: &ContractConfig, store: &S, ids: &mut PushIds) {
    const C: &str = "receipts::recall";
    let (a, b) = (cfg.client("-rc-a"), cfg.client("-rc-b"));
    let t0 = cfg.base_ms;
    let p = ids.next(t0);
    let copies = push_to(C, store, &message(p, None), &[a.clone(), b.clone()], t0).await;
    // A later push to b, not recalled: reads still find it.
    let later = ids.next(t0 + 1);
    let kept = push_to(
        C,
        store,
        &message(later, None),
        std::slice::from_ref(&b),
        t0 + 1,
    )
    .await;
    ok(C, "ack", store.ack(&a, slot(0), &copies[..1]).await);
    let first = ok(C, "recall", store.recall(p, t0 + 2).await);
    let want = RecallReport {
        recalled: 1,
        already_acked: 1,
    };
    let Some((report, mut recipients)) = first else {
        panic!("contract check {C} failed: recall of a stored push found nothing");
    };
    recipients.sort();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    check(C, report == want && recipients == both, || {
        format!("recall answered {report:?} for {recipients:?}, expected {want:?} for {both:?}")
    });
    let again = ok(C, "recall", store.recall(p, t0 + 3).await).map(|(r, _)| r);
    check(C, again == Some(want), || {
        format!("a repeated recall answered {again:?}, expected {want:?}")
    });
    for (c, s) in [(&a, 1), (&b, 0), (&b, 1)] {
        let got = ok(
            C,
            "unacked",
            store.unacked(c, slot(s), MessageId::ZERO, 10, t0 + 4).await,
        );
        let got: Vec<MessageId> = got.iter().map(|m| m.id).collect();
        let want: Vec<MessageId> = if *c == b { kept.clone() } else { Vec::new() };
        check(C, got == want, || {
            format!("unacked of {c} slot {s} after the recall: {got:?}, expected {want:?}")
        });
    }
    // The client view counts what is left to read: a recalled copy is not a backlog.
    let view = ok(C, "slots", store.slots(&b, &[slot(1)], t0 + 4).await);
    let backlog: Vec<(u8, u64)> = view.iter().map(|v| (v.slot.get(), v.unacked)).collect();
    check(C, backlog.contains(&(1, 1)), || {
        format!("the slots of {b} after the recall count {backlog:?} unacked, expected (1, 1)")
    });
    // A session of b reads past the recalled copy and acknowledges through what it read: the
    // recalled copy stays recalled, not acknowledged.
    ok(
        C,
        "ack_through",
        store.ack_through(&b, slot(0), &kept, kept[0]).await,
    );
    for (s, want) in [
        (0, [CopyState::Acked, CopyState::Recalled]),
        (1, [CopyState::Recalled, CopyState::Recalled]),
    ] {
        let st = ok(
            C,
            "push_status",
            store.push_status(p, slot(s), t0 + 4).await,
        );
        let got: Vec<CopyState> = st
            .iter()
            .flat_map(|st| st.copies.iter().map(|c| c.state))
            .collect();
        check(C, got == want, || {
            format!("status of slot {s} after the recall: {got:?}, expected {want:?}")
        });
    }
    let unknown = ok(C, "recall", store.recall(ids.next(t0), t0).await);
    check(C, unknown.is_none(), || {
        format!("recall of an unknown push answered {unknown:?}")
    });
}

/// One claim at a time per key; the answer is replayed for the same body, refused for another;
/// a claim not finished within its lease is taken over; a released claim is free.
async fn receipts_idempotency<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "receipts::idempotency";
    let key = format!("{}-idem-1", cfg.run_id);
    let other_key = format!("{}-idem-2", cfg.run_id);
    let t0 = cfg.base_ms;
    let times = IdempotencyTimes {
        ttl: Duration::from_secs(3600),
        lease: Duration::from_secs(60),
    };
    let (body, other_body) = ([1u8; 32], [2u8; 32]);
    async fn claim<S: MessageStore>(
        store: &S,
        key: &str,
        sha: [u8; 32],
        at: u64,
        times: IdempotencyTimes,
    ) -> Result<IdempotencyClaim, crate::ports::StoreError> {
        store.claim_idempotency(key, sha, at, times).await
    }
    let steps: [(&str, [u8; 32], u64, IdempotencyClaim); 3] = [
        (&key, body, t0, IdempotencyClaim::Claimed),
        (&key, body, t0 + 1, IdempotencyClaim::InProgress),
        (&key, other_body, t0 + 1, IdempotencyClaim::Mismatch),
    ];
    for (k, sha, at, want) in steps {
        let got = ok(
            C,
            "claim_idempotency",
            claim(store, k, sha, at, times).await,
        );
        check(C, got == want, || {
            format!("claim of {k} at +{}: {got:?}, expected {want:?}", at - t0)
        });
    }
    let got = ok(
        C,
        "claim_idempotency",
        claim(store, &key, body, t0 + 60_000, times).await,
    );
    check(C, got == IdempotencyClaim::Claimed, || {
        format!("a claim past its lease was not taken over: {got:?}")
    });
    ok(
        C,
        "finish_idempotency",
        store.finish_idempotency(&key, r#"{"ok":1}"#).await,
    );
    let got = ok(
        C,
        "claim_idempotency",
        claim(store, &key, body, t0 + 60_001, times).await,
    );
    let want = IdempotencyClaim::Replay(r#"{"ok":1}"#.into());
    check(C, got == want, || {
        format!("repeat of a finished key: {got:?}, expected {want:?}")
    });
    let got = ok(
        C,
        "claim_idempotency",
        claim(store, &key, other_body, t0 + 60_001, times).await,
    );
    check(C, got == IdempotencyClaim::Mismatch, || {
        format!("finished key, another body: {got:?}, expected Mismatch")
    });
    let got = ok(
        C,
        "claim_idempotency",
        claim(store, &other_key, body, t0, times).await,
    );
    check(C, got == IdempotencyClaim::Claimed, || {
        format!("another key: {got:?}")
    });
    ok(
        C,
        "release_idempotency",
        store.release_idempotency(&other_key).await,
    );
    let got = ok(
        C,
        "claim_idempotency",
        claim(store, &other_key, other_body, t0 + 2, times).await,
    );
    check(C, got == IdempotencyClaim::Claimed, || {
        format!("a released key was not free: {got:?}")
    });
}

/// The next event of `events` within `cfg.timeout` (looking every `cfg.poll_step`, sleeping
/// with `sleep` between looks), or `None`.
async fn next_event<Z, ZFut>(
    cfg: &ContractConfig,
    events: &mut crate::ports::BrokerEvents,
    sleep: &Z,
    within: Duration,
) -> Option<crate::ports::BrokerEvent>
where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    let mut waited = Duration::ZERO;
    loop {
        let look = std::future::poll_fn(|cx| match events.as_mut().poll_next(cx) {
            std::task::Poll::Ready(e) => std::task::Poll::Ready(e),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await;
        if look.is_some() || waited >= within {
            return look;
        }
        sleep(cfg.poll_step).await;
        waited += cfg.poll_step;
    }
}

/// The broker's part of a recall: [`crate::ports::Broker::notify_recall`] reaches every node
/// subscribed to a recipient (the caller's own included) as [`crate::ports::BrokerEvent::Recall`],
/// once per recipient it subscribed to, and nobody else. `make(n)` builds `n` nodes on one
/// broker.
///
/// # Panics
/// When the check fails, with a message naming it.
pub async fn receipts_broker_suite<B, F, Fut, Z, ZFut>(cfg: &ContractConfig, mut make: F, sleep: Z)
where
    B: crate::ports::Broker,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Vec<B>>,
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    use crate::ports::BrokerEvent;
    const C: &str = "receipts::notify_recall";
    let nodes = make(2).await;
    let mut events: Vec<_> = nodes.iter().map(|n| n.events()).collect();
    let (a, b, quiet) = (
        cfg.client("-nr-a"),
        cfg.client("-nr-b"),
        cfg.client("-nr-q"),
    );
    ok(C, "subscribe", nodes[1].subscribe(&a).await);
    ok(C, "subscribe", nodes[1].subscribe(&b).await);
    ok(C, "subscribe", nodes[0].subscribe(&quiet).await);
    let push = push_ids(cfg).next(cfg.base_ms);
    ok(
        C,
        "notify_recall",
        nodes[0].notify_recall(push, &[a.clone(), b.clone()]).await,
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        match next_event(cfg, &mut events[1], &sleep, cfg.timeout).await {
            Some(BrokerEvent::Recall { client, push: p }) => got.push((client, p)),
            Some(_) => {}
            None => break,
        }
    }
    got.sort();
    let mut want = vec![(a, push), (b, push)];
    want.sort();
    check(C, got == want, || {
        format!("node 1 got {got:?}, expected {want:?}")
    });
    let stray = next_event(cfg, &mut events[0], &sleep, cfg.settle).await;
    check(C, stray.is_none(), || {
        format!("node 0 (subscribed to neither) got {stray:?}")
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[test]
    fn memory_broker_passes_the_receipts_broker_suite() {
        let cfg = ContractConfig::new("rb-7f3a", 1_764_000_000_000).unwrap();
        futures_executor::block_on(receipts_broker_suite(
            &cfg,
            |n| {
                let bus = crate::memory::MemoryBroker::new();
                std::future::ready((0..n).map(|_| bus.node()).collect::<Vec<_>>())
            },
            |_| std::future::ready(()),
        ));
    }

    #[test]
    fn memory_store_passes_the_receipts_suite() {
        let cfg = ContractConfig::new("rc-7f3a", 1_764_000_000_000).unwrap();
        futures_executor::block_on(receipts_suite(&cfg, |r| {
            std::future::ready(MemoryStore::new(r))
        }));
    }
}
