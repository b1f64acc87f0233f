//! The embedded store against herald-core's contract suite, plus durability across reopen and
//! across a killed process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_executor::block_on;
use herald_core::contract::{ContractConfig, store_suite};
use herald_core::{ClientId, MessageId, MessageStore, NewMessage, Payload, Retention, Slot};
use herald_store_embedded::{EmbeddedConfig, EmbeddedStore, LAZY_ACKS_FOR};

/// Store times of these tests: any fixed instant will do, the store takes time as an input.
const T0: u64 = 1_764_000_000_000;

fn cid(s: &str) -> ClientId {
    ClientId::new(s).unwrap()
}

fn msg(n: u64) -> NewMessage {
    NewMessage {
        from: "test".into(),
        channel: vec!["a".into()],
        data: Payload::from_json(&format!(r#"{{"n":{n}}}"#)).unwrap(),
        ttl: None,
    }
}

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(EmbeddedConfig::new(dir)).unwrap()
}

#[test]
fn passes_the_contract_suite() {
    let dirs = std::cell::RefCell::new(Vec::new());
    let cfg = ContractConfig::new("embedded-1", T0).unwrap();
    block_on(store_suite(&cfg, |retention| {
        // A fresh database per check, so purge counts are exact.
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(EmbeddedConfig::new(dir.path()).retention(retention)).unwrap();
        dirs.borrow_mut().push(dir);
        std::future::ready(store)
    }));
}

#[test]
fn passes_the_contract_suite_on_one_shared_database() {
    // Two retentions, two databases; the checks of each share it, as on a shared server.
    let keep = tempfile::tempdir().unwrap();
    let cfg = ContractConfig::new("embedded-2", T0)
        .unwrap()
        .exact_purge_counts(false);
    let mut open_stores: Vec<(Retention, EmbeddedStore, tempfile::TempDir)> = Vec::new();
    block_on(store_suite(&cfg, |retention| {
        let store = match open_stores.iter().find(|(r, _, _)| *r == retention) {
            Some((_, s, _)) => s.clone(),
            None => {
                let dir = tempfile::tempdir_in(keep.path()).unwrap();
                let s = EmbeddedStore::open(EmbeddedConfig::new(dir.path()).retention(retention))
                    .unwrap();
                open_stores.push((retention, s.clone(), dir));
                s
            }
        };
        std::future::ready(store)
    }));
}

#[test]
fn everything_is_found_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (cid("a"), cid("b"));
    {
        let store = open(dir.path());
        for n in 0..5 {
            block_on(store.append(&msg(n), &[a.clone(), b.clone()], T0 + n)).unwrap();
        }
        block_on(store.ack(&a, Slot::new(1).unwrap(), &[MessageId(2)])).unwrap();
    }
    let store = open(dir.path());
    let got = block_on(store.unacked(&a, Slot::new(1).unwrap(), MessageId::ZERO, 10, T0)).unwrap();
    let ids: Vec<u64> = got.iter().map(|m| m.id.0).collect();
    assert_eq!(ids, [1, 3, 4, 5]);
    assert_eq!(got[0].data.json(), r#"{"n":0}"#);
    assert_eq!(got[3].ts, T0 + 4);
    let hist = block_on(store.history(&b, T0 + 3, 10, T0)).unwrap();
    assert_eq!(hist.iter().map(|m| m.id.0).collect::<Vec<_>>(), [4, 5]);
    // The counters survived too: ids continue.
    let r = block_on(store.append(&msg(9), std::slice::from_ref(&a), T0 + 9)).unwrap();
    assert_eq!(r, vec![Ok(MessageId(6))]);
}

#[test]
fn the_database_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    assert!(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).is_err());
}

#[test]
fn concurrent_appends_keep_every_client_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = cid("a");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let a = a.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|n| {
                        let r =
                            block_on(store.append(&msg(t * 100 + n), std::slice::from_ref(&a), T0))
                                .unwrap();
                        r[0].clone().unwrap().0
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let ids = t.join().unwrap();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one caller's ids increase: {ids:?}"
        );
        all.extend(ids);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<u64>>());
    let got = block_on(store.unacked(&a, Slot::default(), MessageId::ZERO, 1000, T0)).unwrap();
    assert_eq!(got.len(), 400);
}

#[test]
fn purge_works_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path()).retention(Retention {
        cap: 100_000,
        ttl: Duration::from_secs(1),
    }))
    .unwrap();
    let recipients: Vec<ClientId> = (0..2500).map(|i| cid(&format!("c{i}"))).collect();
    block_on(store.append(&msg(1), &recipients, T0)).unwrap();
    let report = block_on(store.purge(T0 + 1000)).unwrap();
    assert_eq!(report.expired, 2500);
    assert!(
        block_on(store.history(&recipients[7], 0, 10, T0))
            .unwrap()
            .is_empty()
    );
}

fn open_with(dir: &std::path::Path, cap: u64) -> EmbeddedStore {
    EmbeddedStore::open(EmbeddedConfig::new(dir).retention(Retention {
        cap,
        ttl: Duration::from_secs(3600),
    }))
    .unwrap()
}

fn history_ids(store: &EmbeddedStore, client: &ClientId) -> Vec<u64> {
    block_on(store.history(client, 0, 10_000, T0))
        .unwrap()
        .iter()
        .map(|m| m.id.0)
        .collect()
}

#[test]
fn a_cap_lowered_between_runs_is_enforced_by_the_first_purge() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (cid("a"), cid("b"), cid("c"));
    {
        let store = open_with(dir.path(), 10);
        for n in 0..10 {
            block_on(store.append(&msg(n), &[a.clone(), b.clone()], T0)).unwrap();
        }
        block_on(store.append(&msg(0), std::slice::from_ref(&c), T0)).unwrap();
    }
    let store = open_with(dir.path(), 3);
    let report = block_on(store.purge(T0)).unwrap();
    assert_eq!(
        report.capped, 14,
        "7 of a and 7 of b are beyond the new cap"
    );
    assert_eq!(history_ids(&store, &a), [8, 9, 10]);
    assert_eq!(history_ids(&store, &b), [8, 9, 10]);
    assert_eq!(history_ids(&store, &c), [1]);
    let r = block_on(store.append(&msg(11), std::slice::from_ref(&a), T0)).unwrap();
    assert_eq!(r, vec![Ok(MessageId(11))]);
    assert_eq!(history_ids(&store, &a), [9, 10, 11]);
    // The sweep runs once per open; later purges report what appends dropped.
    assert_eq!(block_on(store.purge(T0)).unwrap().capped, 1);
    assert_eq!(block_on(store.purge(T0)).unwrap().capped, 0);
}

#[test]
fn the_cap_sweep_works_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let many: Vec<ClientId> = (0..1500).map(|i| cid(&format!("m{i}"))).collect();
    let big = cid("big");
    {
        let store = open_with(dir.path(), 100_000);
        block_on(store.append(&msg(1), &many, T0)).unwrap();
        block_on(store.append(&msg(2), &many, T0)).unwrap();
        // Sent all at once, they share a few transactions (group commit).
        let msgs: Vec<NewMessage> = (0..2500).map(msg).collect();
        let pending: Vec<_> = msgs
            .iter()
            .map(|m| store.append(m, std::slice::from_ref(&big), T0))
            .collect();
        for p in pending {
            block_on(p).unwrap();
        }
    }
    let store = open_with(dir.path(), 1);
    let report = block_on(store.purge(T0)).unwrap();
    assert_eq!(report.capped, 1500 + 2499);
    assert_eq!(history_ids(&store, &big), [2500]);
    for client in [&many[0], &many[777], &many[1499]] {
        assert_eq!(history_ids(&store, client), [2]);
    }
}

/// The child half of `an_acknowledged_append_survives_a_kill`: appends, acknowledges one of
/// two messages and leaves the store idle for ten times [`LAZY_ACKS_FOR`] (an ack alone is
/// committed without an fsync, then made durable when nothing else comes), says so, and waits
/// to be killed.
fn crash_child(dir: &str) {
    let store = open(std::path::Path::new(dir));
    let r = block_on(store.append(&msg(42), &[cid("crash")], T0)).unwrap();
    assert_eq!(r, vec![Ok(MessageId(1))]);
    let r = block_on(store.append(&msg(43), &[cid("crash")], T0)).unwrap();
    assert_eq!(r, vec![Ok(MessageId(2))]);
    block_on(store.ack(&cid("crash"), Slot::default(), &[MessageId(2)])).unwrap();
    std::thread::sleep(LAZY_ACKS_FOR * 10);
    let mut out = std::io::stdout();
    writeln!(out, "appended").unwrap();
    out.flush().unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn an_acknowledged_append_survives_a_kill() {
    if let Ok(dir) = std::env::var("HERALD_CRASH_CHILD_DIR") {
        crash_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_acknowledged_append_survives_a_kill",
            "--nocapture",
        ])
        .env("HERALD_CRASH_CHILD_DIR", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut saw = false;
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().contains("appended") {
            saw = true;
            break;
        }
    }
    assert!(saw, "the child never reported its append");
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.wait().unwrap();
    let store = open(dir.path());
    let got =
        block_on(store.unacked(&cid("crash"), Slot::default(), MessageId::ZERO, 10, T0)).unwrap();
    assert_eq!(got.len(), 1, "message 2 was acknowledged: {got:?}");
    assert_eq!(got[0].data.json(), r#"{"n":42}"#);
}

/// Acknowledgements in any order, repeated, of unknown ids, on two slots: what `unacked`
/// returns always matches a plain model (the set of acknowledged ids per slot), also after
/// reopening. The store keeps a floor per slot and bits for out-of-order ids; this checks
/// that the two together mean exactly "acknowledged".
#[test]
fn acknowledgements_in_any_order_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let a = cid("floors");
    let slots = [Slot::new(0).unwrap(), Slot::new(3).unwrap()];
    let mut acked = [
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    ];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let check = |store: &EmbeddedStore, acked: &[std::collections::BTreeSet<u64>; 2], last| {
        for (s, slot) in slots.iter().enumerate() {
            let got = block_on(store.unacked(&a, *slot, MessageId::ZERO, 1000, T0)).unwrap();
            let got: Vec<u64> = got.iter().map(|m| m.id.0).collect();
            let want: Vec<u64> = (1..=last).filter(|i| !acked[s].contains(i)).collect();
            assert_eq!(got, want, "slot {slot}");
            // A read after a cursor sees the same set beyond it.
            let got = block_on(store.unacked(&a, *slot, MessageId(last / 2), 1000, T0)).unwrap();
            let got: Vec<u64> = got.iter().map(|m| m.id.0).collect();
            let want: Vec<u64> = want.into_iter().filter(|i| *i > last / 2).collect();
            assert_eq!(got, want, "slot {slot} after {}", last / 2);
        }
    };
    let mut last = 0;
    {
        let store = open(dir.path());
        for step in 0..300 {
            if step % 10 == 0 {
                for _ in 0..5 {
                    block_on(store.append(&msg(step), std::slice::from_ref(&a), T0)).unwrap();
                    last += 1;
                }
            }
            let s = next(2) as usize;
            // Mostly the oldest unacked ids (in-order batches), sometimes anything at all,
            // including ids never stored.
            let ids: Vec<u64> = if next(3) == 0 {
                (0..1 + next(4)).map(|_| 1 + next(last + 3)).collect()
            } else {
                (1..=last)
                    .filter(|i| !acked[s].contains(i))
                    .take(1 + next(3) as usize)
                    .collect()
            };
            let ids: Vec<MessageId> = ids.into_iter().map(MessageId).collect();
            block_on(store.ack(&a, slots[s], &ids)).unwrap();
            acked[s].extend(ids.iter().map(|i| i.0).filter(|i| *i <= last));
            check(&store, &acked, last);
        }
    }
    let store = open(dir.path());
    check(&store, &acked, last);
}

#[test]
fn history_finds_since_among_gaps_and_store_times_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), 150);
    let a = cid("a");
    // 200 messages 10 ms apart; every third lives 1 ms only, so a purge leaves gaps; the cap
    // keeps the last 150 (the 201st append drops ids up to 51).
    for n in 0..200u64 {
        let mut m = msg(n);
        if n % 3 == 0 {
            m.ttl = Some(Duration::from_millis(1));
        }
        block_on(store.append(&m, std::slice::from_ref(&a), T0 + n * 10)).unwrap();
    }
    let now = T0 + 5000;
    block_on(store.purge(now)).unwrap();
    // The clock goes back 1 s: the message keeps its predecessor's store time.
    block_on(store.append(&msg(200), std::slice::from_ref(&a), T0 + 990)).unwrap();
    let all = block_on(store.history(&a, 0, 10_000, now)).unwrap();
    let stored: Vec<(u64, u64)> = all.iter().map(|m| (m.id.0, m.ts)).collect();
    let want: Vec<(u64, u64)> = (52..=200u64)
        .filter(|id| (id - 1) % 3 != 0)
        .map(|id| (id, T0 + (id - 1) * 10))
        .chain([(201, T0 + 1990)])
        .collect();
    assert_eq!(stored, want, "kept, in order, with their store times");
    // Every `since` and a few limits: what a scan of the whole queue would give.
    for since in (T0..=T0 + 2010).step_by(7) {
        for limit in [1, 5, 10_000] {
            let got: Vec<u64> = block_on(store.history(&a, since, limit, now))
                .unwrap()
                .iter()
                .map(|m| m.id.0)
                .collect();
            let want: Vec<u64> = stored
                .iter()
                .filter(|(_, ts)| *ts >= since)
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
            assert_eq!(got, want, "since +{} limit {limit}", since - T0);
        }
    }
}

#[test]
fn the_time_index_of_an_earlier_version_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = cid("a");
    block_on(store.append(&msg(1), std::slice::from_ref(&a), T0)).unwrap();
    drop(store);
    // What an earlier version kept besides: `(client, ts, id)` in a `times` table.
    let file = EmbeddedConfig::new(dir.path()).db_file();
    let times: redb::TableDefinition<'_, (&str, u64, u64), ()> =
        redb::TableDefinition::new("times");
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(times)
            .unwrap()
            .insert(("a", T0, 1), ())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(history_ids(&store, &a), [1], "the messages are kept");
    drop(store);
    let db = redb::Database::create(&file).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert!(
        txn.open_table(times).is_err(),
        "the old index is gone from the file"
    );
}
