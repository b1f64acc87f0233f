//! The embedded store's webhook outbox: herald-core's outbox contract suite, durability across
//! a reopen, and the damage rules of its file (a torn tail is dropped, damage before the end
//! stops opening unless recovery is asked for).

use std::time::Duration;

use futures_executor::block_on;
use herald_core::contract::ContractConfig;
use herald_core::contract_outbox::outbox_suite;
use herald_core::{ClientId, Event, EventKind, MessageId, MessageStore, NodeId, OutboxEntry, Slot};
use herald_store_embedded::{EmbeddedConfig, EmbeddedError, EmbeddedStore};

const T0: u64 = 1_764_000_000_000;
const LEASE: Duration = Duration::from_secs(30);

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(EmbeddedConfig::new(dir)).unwrap()
}

fn ev(n: u64) -> Event {
    Event::new(
        EventKind::Acked,
        &format!("push{n}"),
        ClientId::new("u42").unwrap(),
        Slot::new(0).unwrap(),
        MessageId(n),
        T0 + n,
    )
}

fn node() -> NodeId {
    NodeId::new("n1").unwrap()
}

fn leased(store: &EmbeddedStore, now_ms: u64) -> Vec<OutboxEntry> {
    let mut got = block_on(store.outbox_lease(now_ms, 100, LEASE, &node())).unwrap();
    got.sort_by_key(|e| e.event.ts);
    got
}

#[test]
fn passes_the_outbox_contract_suite() {
    let dirs = std::cell::RefCell::new(Vec::new());
    let cfg = ContractConfig::new("embedded-ob", T0).unwrap();
    block_on(outbox_suite(&cfg, || {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        dirs.borrow_mut().push(dir);
        std::future::ready(store)
    }));
}

#[test]
fn the_outbox_survives_a_reopen_with_its_attempts_and_without_its_leases() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let added = block_on(store.outbox_add(&[ev(1), ev(2), ev(3)], 100)).unwrap();
        assert_eq!(added.added, 3);
        assert_eq!(leased(&store, T0).len(), 3);
        block_on(store.outbox_done(&[ev(1).id])).unwrap();
        block_on(store.outbox_retry(&[ev(2).id], T0 + 60_000)).unwrap();
    }
    let store = open(dir.path());
    let stats = block_on(store.outbox_stats()).unwrap();
    assert_eq!(stats.depth, 2);
    assert_eq!(stats.oldest_ts, Some(T0 + 2));
    // Event 3 was leased when the store closed: leases do not outlive the process.
    let now = leased(&store, T0 + 1);
    assert_eq!(
        now,
        vec![OutboxEntry {
            event: ev(3),
            attempts: 0
        }]
    );
    block_on(store.outbox_done(&[ev(3).id])).unwrap();
    let later = leased(&store, T0 + 60_000);
    assert_eq!(
        later,
        vec![OutboxEntry {
            event: ev(2),
            attempts: 1
        }],
        "due at its retry time, its failed attempt counted"
    );
    // A duplicate of a surviving event is still a duplicate.
    assert_eq!(
        block_on(store.outbox_add(&[ev(2)], 100))
            .unwrap()
            .duplicates,
        1
    );
}

/// Writes events 1..=3 in a fresh directory and returns it with the outbox file's bytes.
fn three_events() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 1..=3 {
        block_on(store.outbox_add(&[ev(n)], 100)).unwrap();
    }
    drop(store);
    let bytes = std::fs::read(dir.path().join(EmbeddedConfig::OUTBOX_FILE)).unwrap();
    (dir, bytes)
}

/// Where each frame of the outbox file starts.
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut at = 8;
    let mut out = Vec::new();
    while at < bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    out
}

#[test]
fn a_record_cut_short_at_the_end_is_dropped() {
    let (dir, bytes) = three_events();
    let path = dir.path().join(EmbeddedConfig::OUTBOX_FILE);
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let store = open(dir.path());
    let got: Vec<u64> = leased(&store, T0).iter().map(|e| e.event.ts - T0).collect();
    assert_eq!(
        got,
        vec![1, 2],
        "the torn last event is gone, the others kept"
    );
    // The file was cut back: a new event is appended after the intact records.
    block_on(store.outbox_add(&[ev(4)], 100)).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(block_on(store.outbox_stats()).unwrap().depth, 3);
}

#[test]
fn damage_before_the_end_stops_opening_unless_recovery_is_asked() {
    let (dir, mut bytes) = three_events();
    let path = dir.path().join(EmbeddedConfig::OUTBOX_FILE);
    let starts = frame_starts(&bytes);
    assert_eq!(starts.len(), 3);
    // A flipped byte inside the second event's payload.
    bytes[starts[1] + 20] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let err = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap_err();
    match &err {
        EmbeddedError::Damaged { offset, next, .. } => {
            assert_eq!(*offset as usize, starts[1]);
            assert_eq!(*next as usize, starts[2]);
        }
        other => panic!("expected Damaged, got {other}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the damaged file is left as it was"
    );
    let store =
        EmbeddedStore::open(EmbeddedConfig::new(dir.path()).recover_damaged_log(true)).unwrap();
    let got: Vec<u64> = leased(&store, T0).iter().map(|e| e.event.ts - T0).collect();
    assert_eq!(
        got,
        vec![1, 3],
        "the damaged event is skipped, the others kept"
    );
    drop(store);
    // The recovery rewrote the file: it opens without the option now.
    let store = open(dir.path());
    assert_eq!(block_on(store.outbox_stats()).unwrap().depth, 2);
}

#[test]
fn a_file_of_mostly_sent_events_is_compacted_and_keeps_the_waiting_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(EmbeddedConfig::OUTBOX_FILE);
    let many: Vec<Event> = (1..=10_000).map(ev).collect();
    {
        let store = open(dir.path());
        assert_eq!(
            block_on(store.outbox_add(&many, 1_000_000)).unwrap().added,
            10_000
        );
        let big = std::fs::metadata(&path).unwrap().len();
        assert!(big > 1 << 20, "{big} bytes: enough to be compacted");
        let sent: Vec<_> = many[..9_990].iter().map(|e| e.id.clone()).collect();
        block_on(store.outbox_done(&sent)).unwrap();
        let small = std::fs::metadata(&path).unwrap().len();
        assert!(small < 10_000, "compacted to {small} bytes");
    }
    // A compaction a crash interrupted leaves its file; the next open removes it.
    std::fs::write(dir.path().join("herald.outbox.new"), b"partial").unwrap();
    let store = open(dir.path());
    assert!(!dir.path().join("herald.outbox.new").exists());
    let left = leased(&store, T0);
    assert_eq!(
        left.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        many[9_990..].to_vec()
    );
}
