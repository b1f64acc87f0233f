//! The embedded store against herald-core's receipts contract suite, and its push records,
//! recalls, idempotency claims and expiry reports across a reopen and a compaction.

mod common;

use std::time::Duration;

use futures_executor::block_on;
use herald_core::contract::ContractConfig;
use herald_core::contract_receipts::receipts_suite;
use herald_core::{
    ClientId, CopyState, IdempotencyClaim, IdempotencyTimes, MessageId, MessageStore, NewMessage,
    Payload, PushIds, RecallReport, Receipt, ReceiptKind, Slot,
};
use herald_store_embedded::{EmbeddedConfig, EmbeddedStore};

const T0: u64 = 1_764_000_000_000;

/// A message of push `push`.
fn msg(push: herald_core::PushId) -> NewMessage {
    NewMessage {
        from: "t".into(),
        channel: vec![],
        data: Payload::from_json("1").unwrap(),
        ttl: None,
        push: Some(push),
    }
}

#[test]
fn passes_the_receipts_suite() {
    let stores = common::FreshStores::default();
    let cfg = ContractConfig::new("embedded-r", T0).unwrap();
    block_on(receipts_suite(&cfg, |retention| stores.open(retention)));
}

#[test]
fn push_records_recalls_and_claims_survive_a_reopen_and_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (ClientId::new("a").unwrap(), ClientId::new("b").unwrap());
    let mut ids = PushIds::new(5);
    let (p, q) = (ids.next(T0), ids.next(T0));
    // Two pushes that expire at T0 + 1 s; the expiry of `e` is reported, that of `f` not.
    let (e, f) = (ids.next(T0), ids.next(T0));
    let times = IdempotencyTimes {
        ttl: Duration::from_secs(3600),
        lease: Duration::from_secs(60),
    };
    let s0 = Slot::default();
    {
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let both = [a.clone(), b.clone()];
        block_on(store.append(&msg(p), &both, T0)).unwrap();
        block_on(store.append(&msg(q), &both, T0)).unwrap();
        block_on(store.ack(&a, s0, &[MessageId(1)])).unwrap();
        let receipt = Receipt {
            push: p,
            client: a.clone(),
            id: MessageId(1),
            slot: s0,
            kind: ReceiptKind::Delivered,
            at_ms: T0 + 5,
        };
        block_on(store.record_receipts(&[receipt])).unwrap();
        let recalled = block_on(store.recall(q, T0 + 6)).unwrap().unwrap().0;
        assert_eq!(
            recalled,
            RecallReport {
                recalled: 2,
                already_acked: 0
            }
        );
        let claim = block_on(store.claim_idempotency("k", [1; 32], T0, times)).unwrap();
        assert_eq!(claim, IdempotencyClaim::Claimed);
        block_on(store.finish_idempotency("k", "first answer")).unwrap();
        block_on(store.claim_idempotency("pending", [1; 32], T0, times)).unwrap();
        for push in [e, f] {
            let brief = NewMessage {
                ttl: Some(Duration::from_secs(1)),
                ..msg(push)
            };
            block_on(store.append(&brief, std::slice::from_ref(&a), T0)).unwrap();
        }
        assert_eq!(
            block_on(store.expired_pushes(T0 + 1000, 10)).unwrap(),
            [e, f]
        );
        block_on(store.expiry_reported(&[e])).unwrap();
    }
    let check = |store: &EmbeddedStore, when: &str| {
        let st = block_on(store.push_status(p, s0, T0 + 7)).unwrap().unwrap();
        let states: Vec<_> = st
            .copies
            .iter()
            .map(|c| (c.state, c.delivered_at))
            .collect();
        assert_eq!(
            states,
            [(CopyState::Acked, Some(T0 + 5)), (CopyState::Stored, None)],
            "{when}"
        );
        let st = block_on(store.push_status(q, s0, T0 + 7)).unwrap().unwrap();
        assert!(
            st.copies.iter().all(|c| c.state == CopyState::Recalled),
            "{when}: {st:?}"
        );
        let unacked = block_on(store.unacked(&b, s0, MessageId::ZERO, 10, T0 + 7)).unwrap();
        assert_eq!(unacked.len(), 1, "{when}: only p's copy is left for b");
        assert_eq!(unacked[0].push, Some(p), "{when}");
        let replay = block_on(store.claim_idempotency("k", [1; 32], T0 + 8, times)).unwrap();
        assert_eq!(
            replay,
            IdempotencyClaim::Replay("first answer".into()),
            "{when}"
        );
        let pending = block_on(store.claim_idempotency("pending", [1; 32], T0 + 8, times));
        assert_eq!(pending.unwrap(), IdempotencyClaim::InProgress, "{when}");
        let expired = block_on(store.expired_pushes(T0 + 2000, 10)).unwrap();
        assert_eq!(expired, [f], "{when}: e's expiry was reported");
    };
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
    check(&store, "after a reopen");
    drop(store);
    // Garbage (short-lived messages, purged) and a store that compacts as soon as it may:
    // the compacted log must keep the same state.
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path()).compact_at(1)).unwrap();
    let c = ClientId::new("c").unwrap();
    let brief = NewMessage {
        ttl: Some(Duration::from_millis(1)),
        push: None,
        ..msg(p)
    };
    for _ in 0..50 {
        block_on(store.append(&brief, std::slice::from_ref(&c), T0)).unwrap();
    }
    let log = EmbeddedConfig::new(dir.path()).log_file();
    let before = std::fs::metadata(&log).unwrap().len();
    block_on(store.purge(T0 + 10)).unwrap();
    // The thread compacts after answering the purge; a round trip waits for it.
    block_on(store.ping()).unwrap();
    let after = std::fs::metadata(&log).unwrap().len();
    assert!(
        after < before,
        "the log was compacted: {before} -> {after} bytes"
    );
    drop(store);
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
    check(&store, "after a compaction and a reopen");
}

#[test]
fn push_records_beyond_the_bound_are_forgotten_and_stay_forgotten_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = || EmbeddedConfig::new(dir.path()).receipts_max_copies(25);
    let clients: Vec<ClientId> = (0..10)
        .map(|i| ClientId::new(&format!("c{i}")).unwrap())
        .collect();
    let mut ids = PushIds::new(5);
    let pushes: Vec<_> = (0..4).map(|i| ids.next(T0 + i)).collect();
    let known = |store: &EmbeddedStore| -> Vec<bool> {
        pushes
            .iter()
            .map(|p| {
                block_on(store.push_status(*p, Slot::default(), T0 + 10))
                    .unwrap()
                    .is_some()
            })
            .collect()
    };
    {
        let store = EmbeddedStore::open(config()).unwrap();
        for p in &pushes {
            block_on(store.append(&msg(*p), &clients, T0)).unwrap();
        }
        // 40 copies, 25 kept: the two oldest pushes' records are gone; their messages stay.
        assert_eq!(known(&store), [false, false, true, true]);
        let backlog = block_on(store.unacked(&clients[0], Slot::default(), MessageId(0), 10, T0));
        assert_eq!(backlog.unwrap().len(), 4);
    }
    let store = EmbeddedStore::open(config()).unwrap();
    assert_eq!(known(&store), [false, false, true, true]);
}

#[test]
fn idempotency_keys_beyond_the_bound_are_forgotten_oldest_first_also_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = || EmbeddedConfig::new(dir.path()).idempotency_max_keys(10);
    let times = IdempotencyTimes {
        ttl: Duration::from_secs(3600),
        lease: Duration::from_secs(60),
    };
    let claimed = |store: &EmbeddedStore, key: &str, at: u64| {
        block_on(store.claim_idempotency(key, [1; 32], T0 + at, times)).unwrap()
    };
    {
        let store = EmbeddedStore::open(config()).unwrap();
        for n in 0..11u64 {
            assert_eq!(
                claimed(&store, &format!("k{n:02}"), n),
                IdempotencyClaim::Claimed
            );
            block_on(store.finish_idempotency(&format!("k{n:02}"), "answer")).unwrap();
        }
        // 11 keys, 10 allowed: down to 9, the two oldest gone; the newest still replays.
        assert_eq!(claimed(&store, "k00", 20), IdempotencyClaim::Claimed);
        let replay = IdempotencyClaim::Replay("answer".into());
        assert_eq!(claimed(&store, "k10", 20), replay);
    }
    // The log holds them all; the replay keeps the bound.
    let store = EmbeddedStore::open(config()).unwrap();
    assert_eq!(claimed(&store, "k01", 30), IdempotencyClaim::Claimed);
    let replay = IdempotencyClaim::Replay("answer".into());
    assert_eq!(claimed(&store, "k10", 30), replay);
}
