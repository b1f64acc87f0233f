//! The contract of the client view (issue 14): [`MessageStore::slots`] and the broker's
//! registry of sessions online ([`Broker::claim_session`], [`Broker::end_session`],
//! [`Broker::sessions`]). Built and used like [`crate::contract`]: adapters call
//! [`store_slots_suite`] and [`broker_sessions_suite`] from a test, with the same
//! [`ContractConfig`].

use std::future::Future;
use std::time::Duration;

use crate::contract::{ContractConfig, KEEP, check, new_message, ok, slot};
use crate::ids::{Generation, MessageId, NodeId};
use crate::ports::{Broker, MessageStore, OnlineSession, Retention, SlotBacklog};

/// Runs the checks of [`MessageStore::slots`] against stores built by `make` (called once per
/// check with the retention it needs).
///
/// # Panics
/// When a check fails, with a message naming it.
pub async fn store_slots_suite<S, F, Fut>(cfg: &ContractConfig, mut make: F)
where
    S: MessageStore,
    F: FnMut(Retention) -> Fut,
    Fut: Future<Output = S>,
{
    store_slots_follow_reads_and_acks(cfg, &make(KEEP).await).await;
    store_slots_of_an_unknown_client(cfg, &make(KEEP).await).await;
}

/// A slot shows once it read or acknowledged; its backlog follows appends and acks, skips
/// expired messages; `also` adds slots with their backlog.
async fn store_slots_follow_reads_and_acks<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store_slots::follow_reads_and_acks";
    let c = cfg.client("slots-follow");
    let t0 = cfg.base_ms;
    for n in 0..4 {
        let ttl = (n == 3).then_some(Duration::from_secs(1));
        let r = ok(
            C,
            "append",
            store
                .append(&new_message(n, ttl), std::slice::from_ref(&c), t0 + n)
                .await,
        );
        check!(C, r.len() == 1 && r[0].is_ok(), "append answered {r:?}");
    }
    let now = t0 + 10;
    let none = ok(C, "slots", store.slots(&c, &[], now).await);
    check!(
        C,
        none.is_empty(),
        "no slot read or acknowledged yet, got {none:?}"
    );

    // Slot 0 reads, then acknowledges the first two.
    let read = ok(
        C,
        "unacked",
        store.unacked(&c, slot(0), MessageId::ZERO, 100, now).await,
    );
    check!(
        C,
        read.len() == 4,
        "slot 0 read {} messages, 4 expected",
        read.len()
    );
    let s = ok(C, "slots", store.slots(&c, &[], now).await);
    let want = SlotBacklog {
        slot: slot(0),
        unacked: 4,
        oldest_unacked_ts: Some(t0),
        last_acked: None,
    };
    check!(
        C,
        s == vec![want],
        "after slot 0's read: {s:?}, expected [{want:?}]"
    );
    ok(
        C,
        "ack_through",
        store
            .ack_through(&c, slot(0), &[MessageId(1), MessageId(2)], MessageId(2))
            .await,
    );
    // Slot 3 acknowledges one out of order without a read of its own.
    ok(C, "ack", store.ack(&c, slot(3), &[MessageId(3)]).await);
    let s = ok(C, "slots", store.slots(&c, &[slot(5)], now).await);
    let want = vec![
        SlotBacklog {
            slot: slot(0),
            unacked: 2,
            oldest_unacked_ts: Some(t0 + 2),
            last_acked: Some(MessageId(2)),
        },
        SlotBacklog {
            slot: slot(3),
            unacked: 3,
            oldest_unacked_ts: Some(t0),
            last_acked: Some(MessageId(3)),
        },
        SlotBacklog {
            slot: slot(5),
            unacked: 4,
            oldest_unacked_ts: Some(t0),
            last_acked: None,
        },
    ];
    check!(C, s == want, "after acks: {s:?}, expected {want:?}");

    // Message 4 lives 1 s: past it, it is not counted.
    let later = t0 + 3 + 1_000;
    let s = ok(C, "slots", store.slots(&c, &[], later).await);
    let unacked: Vec<(u8, u64)> = s.iter().map(|b| (b.slot.get(), b.unacked)).collect();
    check!(
        C,
        unacked == vec![(0, 1), (3, 2)],
        "after message 4 expired: (slot, unacked) {unacked:?}, expected [(0, 1), (3, 2)]"
    );
}

/// A client the store never heard of has no slot but those of `also`, with nothing to read.
async fn store_slots_of_an_unknown_client<S: MessageStore>(cfg: &ContractConfig, store: &S) {
    const C: &str = "store_slots::unknown_client";
    let c = cfg.client("slots-unknown");
    let s = ok(C, "slots", store.slots(&c, &[], cfg.base_ms).await);
    check!(C, s.is_empty(), "got {s:?}");
    let s = ok(C, "slots", store.slots(&c, &[slot(2)], cfg.base_ms).await);
    let want = SlotBacklog {
        slot: slot(2),
        unacked: 0,
        oldest_unacked_ts: None,
        last_acked: None,
    };
    check!(C, s == vec![want], "with also = [2]: {s:?}");
}

/// Runs the checks of the broker's registry of sessions online against node handles built by
/// `make`: `make(n)` gives `n` handles on one broker, each with the node id it belongs to
/// (claims name it; give each handle of a run its own id). `kill(handles, i)` must make node
/// `i` look dead to the others (remove and drop its handle, so its liveness lapses); its
/// sessions must be gone from the view within [`ContractConfig::timeout`] (polled with
/// `sleep`). Claims are stamped with [`ContractConfig::base_ms`]: make it later than the
/// handles' start by the wall clock (a broker may hide an entry older than its node's start, as
/// one from before the node restarted).
///
/// # Panics
/// When a check fails, with a message naming it.
pub async fn broker_sessions_suite<B, F, Fut, K, Z, ZFut>(
    cfg: &ContractConfig,
    mut make: F,
    mut kill: K,
    sleep: Z,
) where
    B: Broker,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Vec<(B, NodeId)>>,
    K: FnMut(&mut Vec<(B, NodeId)>, usize),
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    broker_sessions_claim_and_end(cfg, &make(2).await).await;
    let mut handles = make(2).await;
    broker_sessions_of_a_dead_node(cfg, &mut handles, &mut kill, &sleep).await;
}

/// Sessions by slot: a claim records its node, generation and time, seen from any node; a
/// newer claim replaces the entry; an end removes only the ending session's own entry.
async fn broker_sessions_claim_and_end<B: Broker>(cfg: &ContractConfig, nodes: &[(B, NodeId)]) {
    const C: &str = "broker_sessions::claim_and_end";
    let c = cfg.client("online");
    let b: Vec<&B> = nodes.iter().map(|(b, _)| b).collect();
    let (n0, n1) = (nodes[0].1.clone(), nodes[1].1.clone());
    let t = cfg.base_ms;
    let none = ok(C, "sessions", b[1].sessions(&c).await);
    check!(C, none.is_empty(), "nobody online yet, got {none:?}");
    let g0 = ok(
        C,
        "claim_session",
        b[0].claim_session(&c, slot(0), &n0, t).await,
    );
    let g1 = ok(
        C,
        "claim_session",
        b[1].claim_session(&c, slot(1), &n1, t + 1).await,
    );
    let want = vec![
        OnlineSession {
            slot: slot(0),
            node: n0.clone(),
            generation: g0,
            since_ms: t,
        },
        OnlineSession {
            slot: slot(1),
            node: n1.clone(),
            generation: g1,
            since_ms: t + 1,
        },
    ];
    for (i, handle) in b.iter().enumerate() {
        let got = ok(C, "sessions", handle.sessions(&c).await);
        check!(C, got == want, "node {i} sees {got:?}, expected {want:?}");
    }
    // Slot 0 is taken over on the other node: the older session's end leaves the new entry.
    let g2 = ok(
        C,
        "claim_session",
        b[1].claim_session(&c, slot(0), &n1, t + 2).await,
    );
    check!(C, g2 > g0, "generation {g2} after {g0}");
    ok(
        C,
        "end_session",
        b[0].end_session(&c, slot(0), &n0, g0).await,
    );
    let got = ok(C, "sessions", b[0].sessions(&c).await);
    let first = got
        .first()
        .map(|s| (s.slot, s.node.clone(), s.generation, s.since_ms));
    check!(
        C,
        got.len() == 2 && first == Some((slot(0), n1.clone(), g2, t + 2)),
        "after the takeover: {got:?}"
    );
    ok(
        C,
        "end_session",
        b[1].end_session(&c, slot(0), &n1, g2).await,
    );
    ok(
        C,
        "end_session",
        b[1].end_session(&c, slot(1), &n1, g1).await,
    );
    let got = ok(C, "sessions", b[0].sessions(&c).await);
    check!(C, got.is_empty(), "every session ended, still {got:?}");
    // An end of an unknown session changes nothing and succeeds.
    ok(
        C,
        "end_session",
        b[0].end_session(&c, slot(9), &n0, Generation(7)).await,
    );
}

/// A node that dies (no end of its sessions) stops counting: its sessions go from the view
/// within the timeout, the others' stay.
async fn broker_sessions_of_a_dead_node<B, K, Z, ZFut>(
    cfg: &ContractConfig,
    b: &mut Vec<(B, NodeId)>,
    kill: &mut K,
    sleep: &Z,
) where
    B: Broker,
    K: FnMut(&mut Vec<(B, NodeId)>, usize),
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    const C: &str = "broker_sessions::dead_node";
    let c = cfg.client("online-dead");
    let (n0, n1) = (b[0].1.clone(), b[1].1.clone());
    ok(
        C,
        "claim_session",
        b[0].0.claim_session(&c, slot(0), &n0, cfg.base_ms).await,
    );
    ok(
        C,
        "claim_session",
        b[1].0.claim_session(&c, slot(1), &n1, cfg.base_ms).await,
    );
    let got = ok(C, "sessions", b[1].0.sessions(&c).await);
    check!(C, got.len() == 2, "two sessions expected, got {got:?}");
    kill(b, 0);
    let mut waited = Duration::ZERO;
    loop {
        let got = ok(C, "sessions", b[b.len() - 1].0.sessions(&c).await);
        let slots: Vec<u8> = got.iter().map(|s| s.slot.get()).collect();
        if slots == [1] {
            return;
        }
        check!(
            C,
            waited < cfg.timeout,
            "node 0 is dead, yet after {waited:?} the view is {got:?}"
        );
        sleep(cfg.poll_step).await;
        waited += cfg.poll_step;
    }
}

#[cfg(test)]
mod tests {
    use futures_executor::block_on;

    use super::*;
    use crate::memory::{MemoryBroker, MemoryStore};

    fn cfg() -> ContractConfig {
        ContractConfig::new("cv-7f3a", 1_764_000_000_000).unwrap()
    }

    #[test]
    fn memory_store_passes_the_slots_suite() {
        block_on(store_slots_suite(&cfg(), |r| {
            std::future::ready(MemoryStore::new(r))
        }));
    }

    #[test]
    fn memory_broker_passes_the_sessions_suite() {
        block_on(broker_sessions_suite(
            &cfg(),
            |n| {
                let bus = MemoryBroker::new();
                std::future::ready(
                    (0..n)
                        .map(|i| (bus.node(), NodeId::new(&format!("n{i}")).unwrap()))
                        .collect::<Vec<_>>(),
                )
            },
            |handles, i| {
                handles.remove(i);
            },
            |_| std::future::ready(()),
        ));
    }
}
