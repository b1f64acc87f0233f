//! The embedded store against herald-core's contract suite, plus durability across reopen and
//! across a killed process.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Rng;
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
        push: None,
    }
}

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(EmbeddedConfig::new(dir)).unwrap()
}

#[test]
fn passes_the_contract_suite() {
    let stores = common::FreshStores::default();
    let cfg = ContractConfig::new("embedded-1", T0).unwrap();
    block_on(store_suite(&cfg, |retention| stores.open(retention)));
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
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut next = move |n: u64| rng.below(n);
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

/// Writes a database the way the redb-based versions did: records `ts`, `expires`, `acked`,
/// then the JSON body; last ids; ack floors; and the time index of the oldest of them.
fn write_legacy_db(file: &std::path::Path) {
    let messages: redb::TableDefinition<'_, (&str, u64), &[u8]> =
        redb::TableDefinition::new("messages");
    let counters: redb::TableDefinition<'_, &str, u64> = redb::TableDefinition::new("counters");
    let floors: redb::TableDefinition<'_, (&str, u8), u64> = redb::TableDefinition::new("floors");
    let times: redb::TableDefinition<'_, (&str, u64, u64), ()> =
        redb::TableDefinition::new("times");
    let db = redb::Database::create(file).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut m = txn.open_table(messages).unwrap();
        let mut t = txn.open_table(times).unwrap();
        for id in 1..=5u64 {
            let mut record = Vec::new();
            record.extend_from_slice(&(T0 + id).to_le_bytes());
            record.extend_from_slice(&(T0 + 3_600_000).to_le_bytes());
            // Slot 3 acknowledged id 4 out of order.
            let acked: u16 = if id == 4 { 1 << 3 } else { 0 };
            record.extend_from_slice(&acked.to_le_bytes());
            record.extend_from_slice(
                format!(r#"{{"f":"old","ch":["x"],"d":{{"n":{id}}}}}"#).as_bytes(),
            );
            m.insert(("a", id), record.as_slice()).unwrap();
            t.insert(("a", T0 + id, id), ()).unwrap();
        }
        let mut c = txn.open_table(counters).unwrap();
        // Ids 6 and 7 of a were dropped by retention; b's only message too.
        c.insert("a", 7).unwrap();
        c.insert("b", 3).unwrap();
        txn.open_table(floors).unwrap().insert(("a", 0), 2).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn an_earlier_versions_database_is_converted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path());
    write_legacy_db(&cfg.legacy_db_file());
    let (a, b) = (cid("a"), cid("b"));
    let unacked = |store: &EmbeddedStore, slot: u8| -> Vec<u64> {
        block_on(store.unacked(
            &a,
            Slot::new(slot.into()).unwrap(),
            MessageId::ZERO,
            100,
            T0,
        ))
        .unwrap()
        .iter()
        .map(|m| m.id.0)
        .collect()
    };
    for reopened in [false, true] {
        let store = open(dir.path());
        assert!(
            !cfg.legacy_db_file().exists(),
            "the old database is removed"
        );
        assert!(cfg.log_file().exists());
        assert_eq!(
            unacked(&store, 0),
            [3, 4, 5],
            "slot 0's floor was 2 ({reopened})"
        );
        assert_eq!(
            unacked(&store, 3),
            [1, 2, 3, 5],
            "slot 3 had acknowledged 4"
        );
        assert_eq!(unacked(&store, 5), [1, 2, 3, 4, 5]);
        let got = block_on(store.history(&a, T0 + 2, 100, T0)).unwrap();
        let ids: Vec<u64> = got.iter().map(|m| m.id.0).collect();
        assert_eq!(ids, [2, 3, 4, 5]);
        assert_eq!(
            (
                got[0].from.as_str(),
                got[0].channel.as_slice(),
                got[0].data.json(),
                got[0].ts
            ),
            ("old", &["x".to_owned()][..], r#"{"n":2}"#, T0 + 2)
        );
    }
    // Ids go on after the last ones handed out, not after the last ones kept.
    let store = open(dir.path());
    let r = block_on(store.append(&msg(9), &[a.clone(), b.clone()], T0 + 10)).unwrap();
    assert_eq!(r, vec![Ok(MessageId(8)), Ok(MessageId(4))]);
    drop(store);
    // The converted log has a high-water mark too: a damaged last record (the push of id 8)
    // is dropped and id 8 is not handed out again.
    let log = std::fs::read(cfg.log_file()).unwrap();
    std::fs::write(cfg.log_file(), &log[..log.len() - 1]).unwrap();
    let store = open(dir.path());
    let r = block_on(store.append(&msg(10), std::slice::from_ref(&a), T0 + 11)).unwrap();
    assert!(r[0].clone().unwrap().0 > 8, "{r:?}");
}

#[test]
fn a_conversion_a_crash_interrupted_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path());
    write_legacy_db(&cfg.legacy_db_file());
    // A crash during the conversion leaves a partial new file next to the database.
    std::fs::write(cfg.compact_file(), b"HRLDLOG1\x05\x00").unwrap();
    let store = open(dir.path());
    assert!(!cfg.compact_file().exists());
    assert_eq!(history_ids(&store, &cid("a")), [1, 2, 3, 4, 5]);
}

/// A message as the model tests compare it: id, data, store time.
type Shown = (u64, String, u64);

/// Everything a store shows of its clients: every slot's unacknowledged messages and the
/// whole history, with contents.
fn visible(
    store: &impl MessageStore,
    clients: &[ClientId],
    slots: &[Slot],
    now: u64,
) -> Vec<(String, Vec<Shown>)> {
    let show = |ms: Vec<herald_core::Message>| -> Vec<Shown> {
        ms.into_iter()
            .map(|m| (m.id.0, m.data.json().to_owned(), m.ts))
            .collect()
    };
    let mut out = Vec::new();
    for c in clients {
        for s in slots {
            let got = block_on(store.unacked(c, *s, MessageId::ZERO, 100_000, now)).unwrap();
            out.push((format!("{c} unacked by {}", s.get()), show(got)));
        }
        let got = block_on(store.history(c, 0, 100_000, now)).unwrap();
        out.push((format!("{c} history"), show(got)));
    }
    out
}

/// Random appends (some with a short time to live), acknowledgements, purges and reopenings,
/// with a log small enough to be compacted again and again: after every purge the store
/// shows exactly what herald-core's in-memory store shows, and every append gets the same
/// ids from both.
#[test]
fn random_operations_with_compactions_and_reopenings_match_the_memory_store() {
    let clients: Vec<ClientId> = (0..5).map(|i| cid(&format!("m{i}"))).collect();
    let slots = [
        Slot::new(0).unwrap(),
        Slot::new(1).unwrap(),
        Slot::new(7).unwrap(),
    ];
    let retention = Retention {
        cap: 12,
        ttl: Duration::from_secs(3600),
    };
    let mut compactions_seen = 0;
    for seed in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig::new(dir.path())
            .retention(retention)
            .compact_at(2048);
        let mut store = EmbeddedStore::open(cfg.clone()).unwrap();
        let model = herald_core::MemoryStore::new(retention);
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut now = T0;
        let mut last_len = 0;
        let mut reopened = false;
        for step in 0..400u64 {
            now += rng.below(40);
            match rng.below(10) {
                0..=4 => {
                    let n = 1 + rng.below(clients.len() as u64) as usize;
                    let to: Vec<ClientId> = (0..n)
                        .map(|_| clients[rng.below(clients.len() as u64) as usize].clone())
                        .collect();
                    let mut m = msg(seed * 1000 + step);
                    if rng.below(4) == 0 {
                        m.ttl = Some(Duration::from_millis(rng.below(300)));
                    }
                    let got = block_on(store.append(&m, &to, now)).unwrap();
                    let want = block_on(model.append(&m, &to, now)).unwrap();
                    assert_eq!(got, want, "seed {seed} step {step}: ids");
                }
                5..=6 => {
                    let c = &clients[rng.below(clients.len() as u64) as usize];
                    let s = slots[rng.below(slots.len() as u64) as usize];
                    let ids: Vec<MessageId> = (0..1 + rng.below(6))
                        .map(|_| MessageId(rng.below(60)))
                        .collect();
                    block_on(store.ack(c, s, &ids)).unwrap();
                    block_on(model.ack(c, s, &ids)).unwrap();
                }
                7 => {
                    drop(store);
                    store = EmbeddedStore::open(cfg.clone()).unwrap();
                    // Drops not reported yet are not counted across a restart.
                    reopened = true;
                }
                _ => {
                    let got = block_on(store.purge(now)).unwrap();
                    let want = block_on(model.purge(now)).unwrap();
                    if !reopened {
                        assert_eq!(
                            got.expired + got.capped,
                            want.expired + want.capped,
                            "seed {seed} step {step}: dropped"
                        );
                    }
                    reopened = false;
                    assert_eq!(
                        visible(&store, &clients, &slots, now),
                        visible(&model, &clients, &slots, now),
                        "seed {seed} step {step}"
                    );
                }
            }
            let len = std::fs::metadata(cfg.log_file()).unwrap().len();
            if len + 1024 < last_len {
                compactions_seen += 1;
            }
            last_len = len;
        }
    }
    assert!(compactions_seen > 0, "the log was never compacted");
}

/// A crash in the middle of writing leaves the end of the last record missing, or garbage
/// after it: opening drops that record, keeps everything before it, and goes on appending,
/// above the dropped record's id (it may have been handed out, if the record was damaged
/// after it was synced).
#[test]
fn a_record_cut_short_at_the_end_of_the_log_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path());
    let a = cid("a");
    {
        let store = open(dir.path());
        block_on(store.append(&msg(1), std::slice::from_ref(&a), T0)).unwrap();
    }
    let whole = std::fs::read(cfg.log_file()).unwrap();
    {
        let store = open(dir.path());
        block_on(store.append(&msg(2), std::slice::from_ref(&a), T0)).unwrap();
    }
    let longer = std::fs::read(cfg.log_file()).unwrap();
    assert!(longer.len() > whole.len() + 20);
    for cut in [whole.len() + 3, whole.len() + 12, longer.len() - 1] {
        std::fs::write(cfg.log_file(), &longer[..cut]).unwrap();
        let store = open(dir.path());
        assert_eq!(history_ids(&store, &a), [1], "cut at {cut}");
        let r = block_on(store.append(&msg(3), std::slice::from_ref(&a), T0)).unwrap();
        let id = r[0].clone().unwrap().0;
        assert!(id > 2, "the dropped id 2 is not handed out again: got {id}");
        drop(store);
        assert_eq!(history_ids(&open(dir.path()), &a), [1, id]);
    }
    // A damaged byte inside the last record: its checksum fails.
    let mut damaged = longer.clone();
    let at = longer.len() - 5;
    damaged[at] ^= 0x55;
    std::fs::write(cfg.log_file(), &damaged).unwrap();
    assert_eq!(history_ids(&open(dir.path()), &a), [1]);
    // A crash right after the log was created, before its first bytes were all written.
    std::fs::write(cfg.log_file(), b"HRLD").unwrap();
    assert_eq!(history_ids(&open(dir.path()), &a), Vec::<u64>::new());
    // Not a log at all: refused, not overwritten.
    std::fs::write(cfg.log_file(), b"something else entirely").unwrap();
    let err = EmbeddedStore::open(cfg.clone()).unwrap_err();
    assert!(err.to_string().contains("not a Herald log"), "{err}");
    assert_eq!(
        std::fs::read(cfg.log_file()).unwrap(),
        b"something else entirely"
    );
}

/// An acknowledgement answers once queued for the store thread; a read sent after it sees it,
/// and dropping the store right after still writes it.
#[test]
fn an_answered_ack_is_seen_by_the_next_read_and_kept_by_a_drop() {
    let dir = tempfile::tempdir().unwrap();
    let a = cid("queued");
    let unacked = |store: &EmbeddedStore| -> Vec<u64> {
        block_on(store.unacked(&a, Slot::default(), MessageId::ZERO, 100, T0))
            .unwrap()
            .iter()
            .map(|m| m.id.0)
            .collect()
    };
    {
        let store = open(dir.path());
        for n in 0..4 {
            block_on(store.append(&msg(n), std::slice::from_ref(&a), T0)).unwrap();
        }
        block_on(store.ack(&a, Slot::default(), &[MessageId(2)])).unwrap();
        assert_eq!(unacked(&store), [1, 3, 4]);
        block_on(store.ack(&a, Slot::default(), &[MessageId(1), MessageId(4)])).unwrap();
        // Dropped at once: the thread takes the queue before it stops.
    }
    assert_eq!(unacked(&open(dir.path())), [3]);
}
