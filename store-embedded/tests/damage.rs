//! A damaged log: what opening it does, with and without the recovery option, and that ids
//! never go back (issue 11, finding 6).
//!
//! Every test writes a real log with the store, damages the file, and opens it again.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Rng;
use futures_executor::block_on;
use herald_core::{ClientId, MessageId, MessageStore, NewMessage, Payload, Slot};
use herald_store_embedded::{EmbeddedConfig, EmbeddedStore};

/// Store times of these tests.
const T0: u64 = 1_764_000_000_000;

/// Pushes of the written log.
const PUSHES: u64 = 300;
/// The push that also goes to `top` (its last) and `lonely` (its only one): the one damaged.
const MIDDLE: u64 = 150;

fn cid(s: &str) -> ClientId {
    ClientId::new(s).unwrap()
}

/// The data of push `n`: a marker found in the log's bytes.
fn marker(n: u64) -> String {
    format!("msg-{n:05}")
}

fn msg(n: u64) -> NewMessage {
    NewMessage {
        from: "test".into(),
        channel: vec!["a".into()],
        data: Payload::from_json(&format!("\"{}\"", marker(n))).unwrap(),
        ttl: None,
        push: None,
    }
}

/// Who gets push `n`.
fn recipients(n: u64) -> Vec<ClientId> {
    let mut to = vec![cid("a")];
    for (name, every) in [("b", 2), ("c", 3), ("d", 5)] {
        if n.is_multiple_of(every) {
            to.push(cid(name));
        }
    }
    if n.is_multiple_of(7) && n <= MIDDLE {
        to.push(cid("top"));
    }
    if n == MIDDLE {
        to.push(cid("top"));
        to.push(cid("lonely"));
    }
    to.dedup();
    to
}

/// Every client's messages as the store handed them out: `(id, data)`.
type Sent = BTreeMap<String, Vec<(u64, String)>>;

/// Writes [`PUSHES`] pushes, one batch each, with acknowledgements in between; returns what
/// every client was given.
fn write_log(dir: &Path) -> Sent {
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir)).unwrap();
    let mut sent = Sent::new();
    for n in 0..PUSHES {
        let to = recipients(n);
        let ids = block_on(store.append(&msg(n), &to, T0 + n)).unwrap();
        for (c, id) in to.iter().zip(ids) {
            let id = id.unwrap().0;
            sent.entry(c.to_string())
                .or_default()
                .push((id, format!("\"{}\"", marker(n))));
        }
        // The last record is a push (a torn tail then holds ids).
        if n % 10 == 9 && n + 1 < PUSHES {
            let ids: Vec<MessageId> = (n - 9..=n).map(|i| MessageId(i + 1)).collect();
            block_on(store.ack(&cid("a"), Slot::default(), &ids)).unwrap();
        }
    }
    sent
}

/// Where a record starts and ends in the log.
type Frame = (usize, usize);

/// The frames of a log, after the magic bytes.
fn frames(log: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 8 <= log.len() {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        let end = at + 8 + len;
        assert!(end <= log.len(), "the undamaged log is whole");
        out.push((at, end));
        at = end;
    }
    assert_eq!(at, log.len());
    out
}

/// The frame holding `needle`.
fn frame_with(log: &[u8], needle: &str) -> (usize, usize) {
    frames(log)
        .into_iter()
        .find(|&(s, e)| {
            log[s..e]
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .expect("the marker is in the log")
}

/// What `sent` becomes when the records in `lost` (byte ranges of the undamaged log `log`)
/// are gone: every message whose data is in them is missing.
fn without(sent: &Sent, log: &[u8], lost: &[(usize, usize)]) -> Sent {
    sent.iter()
        .map(|(c, msgs)| {
            let kept = msgs
                .iter()
                .filter(|(_, data)| {
                    !lost
                        .iter()
                        .any(|&(s, e)| log[s..e].windows(data.len()).any(|w| w == data.as_bytes()))
                })
                .cloned()
                .collect();
            (c.clone(), kept)
        })
        .collect()
}

/// Every client's history as `(id, data)`.
fn shown(store: &EmbeddedStore, sent: &Sent) -> Sent {
    sent.keys()
        .map(|c| {
            let got = block_on(store.history(&cid(c), 0, 100_000, T0)).unwrap();
            let got = got
                .into_iter()
                .map(|m| (m.id.0, m.data.json().to_owned()))
                .collect();
            (c.clone(), got)
        })
        .collect()
}

/// Fails with what differs between every client's messages shown and wanted.
fn assert_same(got: &Sent, want: &Sent, ctx: &str) {
    for (c, w) in want {
        let g = got.get(c).cloned().unwrap_or_default();
        if &g != w {
            let missing: Vec<_> = w.iter().filter(|m| !g.contains(m)).collect();
            let extra: Vec<_> = g.iter().filter(|m| !w.contains(m)).collect();
            panic!("{ctx}: client {c}: missing {missing:?}, not wanted {extra:?}");
        }
    }
}

/// Every client gets one more message: its id is above every id it was given before, and
/// what it had is still there (the jump in ids drops nothing by the cap).
fn next_ids_are_above(store: &EmbeddedStore, sent: &Sent, had: &Sent) {
    for (c, msgs) in sent {
        let highest = msgs.iter().map(|(id, _)| *id).max().unwrap_or(0);
        let r = block_on(store.append(&msg(9999), &[cid(c)], T0 + PUSHES)).unwrap();
        let id = r[0].clone().unwrap().0;
        assert!(
            id > highest,
            "{c} was given ids up to {highest} and now gets {id}"
        );
        let mut want = had[c].clone();
        want.push((id, format!("\"{}\"", marker(9999))));
        assert_same(
            &shown(store, &BTreeMap::from([(c.clone(), Vec::new())])),
            &BTreeMap::from([(c.clone(), want)]),
            "keeps its messages",
        );
    }
}

/// Every file of the data directory but the lock, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != EmbeddedConfig::LOCK_FILE)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Flips one byte in the middle of the record of push [`MIDDLE`] (the only one of `lonely`,
/// the last one of `top`), halfway through the log; returns the undamaged log and where the
/// damaged record starts and ends.
fn damage_the_middle(cfg: &EmbeddedConfig) -> (Vec<u8>, (usize, usize)) {
    let log = std::fs::read(cfg.log_file()).unwrap();
    let (s, e) = frame_with(&log, &marker(MIDDLE));
    assert!(
        s > log.len() / 4 && e < log.len() * 3 / 4,
        "the record is in the middle"
    );
    let mut damaged = log.clone();
    damaged[(s + e) / 2] ^= 0x10;
    std::fs::write(cfg.log_file(), &damaged).unwrap();
    (log, (s, e))
}

#[test]
fn a_damaged_byte_before_the_end_stops_opening_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path());
    write_log(dir.path());
    let (_, (start, _)) = damage_the_middle(&cfg);
    let before = files(dir.path());
    for _ in 0..2 {
        let err = EmbeddedStore::open(cfg.clone()).unwrap_err().to_string();
        assert!(
            err.contains(&cfg.log_file().display().to_string()),
            "names the file: {err}"
        );
        assert!(
            err.contains(&format!("damaged at byte {start} ")),
            "names the offset {start}: {err}"
        );
        assert!(err.contains("recovery"), "says how to go on: {err}");
        assert_eq!(files(dir.path()), before, "nothing was written");
    }
}

#[test]
fn recovery_keeps_every_intact_record_and_ids_go_on_above_every_id_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path());
    let sent = write_log(dir.path());
    let (log, lost) = damage_the_middle(&cfg);
    let damaged = std::fs::read(cfg.log_file()).unwrap();
    let want = without(&sent, &log, &[lost]);
    assert!(want["lonely"].is_empty() && want["top"].len() + 1 == sent["top"].len());
    assert_eq!(
        want["a"].len() as u64,
        PUSHES - 1,
        "one push is lost, no other"
    );
    {
        let store = EmbeddedStore::open(cfg.clone().recover_damaged_log(true)).unwrap();
        assert_same(&shown(&store, &sent), &want, "every intact record is there");
        // The damaged file is kept aside as it was, with the list of what was skipped.
        let copy = dir
            .path()
            .join(format!("{}1", EmbeddedConfig::DAMAGED_PREFIX));
        assert_eq!(std::fs::read(&copy).unwrap(), damaged);
        let listed = std::fs::read_to_string(copy.with_extension("1.txt")).unwrap();
        assert!(listed.contains(&format!("{}", lost.0)), "{listed}");
        // `lonely` gets no message now: its floor must outlive the store.
        let others: Sent = sent
            .iter()
            .filter(|(c, _)| *c != "lonely")
            .map(|(c, m)| (c.clone(), m.clone()))
            .collect();
        next_ids_are_above(&store, &others, &want);
    }
    // Reopened without the option: the log is whole again, and a client whose only record
    // was lost still never gets its old id back.
    let store = EmbeddedStore::open(cfg.clone()).unwrap();
    let lonely = BTreeMap::from([("lonely".to_owned(), sent["lonely"].clone())]);
    next_ids_are_above(
        &store,
        &lonely,
        &BTreeMap::from([("lonely".into(), Vec::new())]),
    );
    assert_eq!(
        shown(&store, &sent)["b"][..want["b"].len()],
        want["b"][..],
        "still there after reopening"
    );
}

#[test]
fn a_torn_tail_is_dropped_silently_and_its_ids_are_not_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path());
    let sent = write_log(dir.path());
    let log = std::fs::read(cfg.log_file()).unwrap();
    let ids = std::fs::read(cfg.ids_file()).ok();
    let last = *frames(&log).last().unwrap();
    let mut cases: Vec<(&str, Vec<u8>, Vec<Frame>)> = vec![
        (
            "the last record cut in half",
            log[..(last.0 + last.1) / 2].to_vec(),
            vec![last],
        ),
        (
            "the last record's header cut short",
            log[..last.0 + 5].to_vec(),
            vec![last],
        ),
    ];
    let mut flipped = log.clone();
    flipped[last.1 - 3] ^= 1;
    cases.push(("a damaged byte in the last record", flipped, vec![last]));
    for garbage in [
        vec![0u8; 4096],
        b"\x05\x00\x00\x00garbage after the last record".to_vec(),
    ] {
        let mut longer = log.clone();
        longer.extend_from_slice(&garbage);
        cases.push(("garbage after the last record", longer, Vec::new()));
    }
    for (what, bytes, lost) in cases {
        std::fs::write(cfg.log_file(), &bytes).unwrap();
        if let Some(ids) = &ids {
            std::fs::write(cfg.ids_file(), ids).unwrap();
        }
        let store = EmbeddedStore::open(cfg.clone()).unwrap();
        let want = without(&sent, &log, &lost);
        assert_same(&shown(&store, &sent), &want, what);
        next_ids_are_above(&store, &sent, &want);
        drop(store);
        assert!(
            !files(dir.path())
                .keys()
                .any(|f| f.starts_with(EmbeddedConfig::DAMAGED_PREFIX)),
            "{what}: nothing set aside"
        );
        let again = EmbeddedStore::open(cfg.clone()).unwrap();
        assert_eq!(
            shown(&again, &sent).len(),
            sent.len(),
            "{what}: opens again"
        );
    }
}

/// One damaged byte anywhere after the magic bytes: in the last record it is a torn tail
/// (dropped silently); anywhere else opening fails, names the damaged record's offset and
/// changes nothing, and recovery keeps every other record, with ids above the old ones.
#[test]
fn one_damaged_byte_anywhere_matches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path());
    let sent = write_log(dir.path());
    let pristine = files(dir.path());
    let log = pristine[EmbeddedConfig::LOG_FILE].clone();
    let all = frames(&log);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..40 {
        for f in files(dir.path()).keys() {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
        for (f, bytes) in &pristine {
            std::fs::write(dir.path().join(f), bytes).unwrap();
        }
        let at = 8 + rng.below(log.len() as u64 - 8) as usize;
        let frame = *all.iter().find(|(s, e)| (*s..*e).contains(&at)).unwrap();
        let mut damaged = log.clone();
        damaged[at] ^= 1 << rng.below(8);
        std::fs::write(cfg.log_file(), &damaged).unwrap();
        let want = without(&sent, &log, &[frame]);
        let ctx = format!("round {round}: byte {at} of the record at {}", frame.0);
        let store = if frame == *all.last().unwrap() {
            EmbeddedStore::open(cfg.clone()).expect(&ctx)
        } else {
            let before = files(dir.path());
            let err = EmbeddedStore::open(cfg.clone()).unwrap_err().to_string();
            assert!(
                err.contains(&format!("damaged at byte {} ", frame.0)),
                "{ctx}: {err}"
            );
            assert_eq!(files(dir.path()), before, "{ctx}: nothing was written");
            EmbeddedStore::open(cfg.clone().recover_damaged_log(true)).expect(&ctx)
        };
        assert_same(&shown(&store, &sent), &want, &ctx);
        next_ids_are_above(&store, &sent, &want);
    }
}

/// The high-water mark file damaged while the log is intact is rebuilt from the log; damaged
/// together with the log, ids still jump far above the highest id found.
#[test]
fn a_damaged_high_water_mark_is_rebuilt_or_jumped_over() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path());
    let sent = write_log(dir.path());
    let log = std::fs::read(cfg.log_file()).unwrap();
    std::fs::write(cfg.ids_file(), b"garbage").unwrap();
    {
        let store = EmbeddedStore::open(cfg.clone()).unwrap();
        assert_same(&shown(&store, &sent), &sent, "intact log");
    }
    assert_ne!(
        std::fs::read(cfg.ids_file()).unwrap(),
        b"garbage",
        "rewritten"
    );
    std::fs::write(cfg.log_file(), &log[..log.len() - 2]).unwrap();
    std::fs::remove_file(cfg.ids_file()).unwrap();
    let store = EmbeddedStore::open(cfg.clone()).unwrap();
    let want = without(&sent, &log, &[*frames(&log).last().unwrap()]);
    assert_same(&shown(&store, &sent), &want, "torn tail without a mark");
    let r = block_on(store.append(&msg(1), &[cid("a")], T0)).unwrap();
    assert!(r[0].clone().unwrap().0 > 1 << 32, "{r:?}");
}

/// The highest id ever handed out may live in one record only: after compaction, a client
/// whose messages all expired is a single last-id record. Lost to damage, nothing in the log
/// remembers it; the high-water mark does, and recovery goes on above it.
#[test]
fn the_high_water_mark_covers_an_id_no_surviving_record_holds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig::new(dir.path()).compact_at(4096);
    let (big, small) = (cid("big"), cid("small"));
    {
        let store = EmbeddedStore::open(cfg.clone()).unwrap();
        let mut short = msg(0);
        short.ttl = Some(std::time::Duration::from_millis(1));
        for n in 0..500 {
            block_on(store.append(&short, std::slice::from_ref(&big), T0 + n)).unwrap();
        }
        for n in 0..3 {
            block_on(store.append(&msg(n), std::slice::from_ref(&small), T0 + 600)).unwrap();
        }
        // Every message of `big` expires; the purge leaves a log that is mostly garbage,
        // and it is compacted: `big` is one last-id record from then on.
        block_on(store.purge(T0 + 1000)).unwrap();
        for n in 3..6 {
            block_on(store.append(&msg(n), std::slice::from_ref(&small), T0 + 1000)).unwrap();
        }
    }
    let mut log = std::fs::read(cfg.log_file()).unwrap();
    assert!(log.len() < 4096, "compacted: {} bytes", log.len());
    // The last-id record of `big`: kind 3, then the client.
    let (s, e) = *frames(&log)
        .iter()
        .find(|(s, _)| log[s + 8..].starts_with(b"\x03\x03big"))
        .expect("big's last id is one record");
    log[e - 3] ^= 0x40;
    std::fs::write(cfg.log_file(), &log).unwrap();
    let err = EmbeddedStore::open(cfg.clone()).unwrap_err().to_string();
    assert!(err.contains(&format!("damaged at byte {s} ")), "{err}");
    let store = EmbeddedStore::open(cfg.recover_damaged_log(true)).unwrap();
    let r = block_on(store.append(&msg(7), &[big, small], T0 + 2000)).unwrap();
    let ids: Vec<u64> = r.into_iter().map(|id| id.unwrap().0).collect();
    assert!(ids[0] > 500, "big was given ids up to 500, now {}", ids[0]);
    assert!(ids[1] > 6, "{ids:?}");
}
