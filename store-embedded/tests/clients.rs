//! The client view's per-slot backlog (issue 14) on the embedded store: herald-core's contract
//! for [`MessageStore::slots`], and what of it survives a reopen.

mod common;

use futures_executor::block_on;
use herald_core::contract::ContractConfig;
use herald_core::contract_clients::store_slots_suite;
use herald_core::{ClientId, MessageId, MessageStore, NewMessage, Payload, Slot};
use herald_store_embedded::{EmbeddedConfig, EmbeddedStore};

/// Store times of these tests: any fixed instant will do, the store takes time as an input.
const T0: u64 = 1_764_000_000_000;

#[test]
fn passes_the_slots_contract() {
    let stores = common::FreshStores::default();
    let cfg = ContractConfig::new("embedded-cv", T0).unwrap();
    block_on(store_slots_suite(&cfg, |retention| stores.open(retention)));
}

#[test]
fn acknowledging_slots_and_their_last_ids_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let client = ClientId::new("u42").unwrap();
    let (s0, s1) = (Slot::new(0).unwrap(), Slot::new(1).unwrap());
    let msg = NewMessage {
        from: "test".into(),
        channel: vec![],
        data: Payload::from_json("1").unwrap(),
        ttl: None,
        push: None,
    };
    {
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        for i in 0..3 {
            block_on(store.append(&msg, std::slice::from_ref(&client), T0 + i)).unwrap();
        }
        block_on(store.ack(&client, s0, &[MessageId(1), MessageId(2)])).unwrap();
        // Slot 1 only reads: that is remembered while the store is open.
        block_on(store.unacked(&client, s1, MessageId::ZERO, 10, T0)).unwrap();
        let slots = block_on(store.slots(&client, &[], T0)).unwrap();
        let seen: Vec<(u8, u64)> = slots.iter().map(|b| (b.slot.get(), b.unacked)).collect();
        assert_eq!(seen, vec![(0, 1), (1, 3)]);
    }
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
    let slots = block_on(store.slots(&client, &[], T0)).unwrap();
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!(slots[0].slot, s0);
    assert_eq!(slots[0].unacked, 1);
    assert_eq!(slots[0].oldest_unacked_ts, Some(T0 + 2));
    assert_eq!(slots[0].last_acked, Some(MessageId(2)));
}
