//! The embedded store's log damaged between two runs of the real binary (issue 11, finding
//! 6): start-up is refused with the file and the offset, and the recovery flag serves every
//! intact message and goes on with higher ids.

use std::collections::BTreeMap;

use herald_it as support;
use serde_json::json;
use support::{Herald, TempDir, http, push, start_refused};

/// Pushes written before the damage.
const PUSHES: u64 = 120;
/// The push whose record is damaged: the only one of `u4`, the last one of `u3`.
const DAMAGED: u64 = 60;

/// The data of push `n`, found in the log's bytes.
fn data(n: u64) -> String {
    format!("m-{n:04}")
}

fn recipients(n: u64) -> Vec<&'static str> {
    let mut to = vec!["u1"];
    if n.is_multiple_of(2) {
        to.push("u2");
    }
    if n <= DAMAGED && n.is_multiple_of(3) {
        to.push("u3");
    }
    if n == DAMAGED {
        to.push("u4");
    }
    to
}

/// A client's messages as `GET /queues` shows them: `(id, data)`.
async fn queue(h: &Herald, client: &str) -> Vec<(u64, String)> {
    let a = http(
        "GET",
        &format!("{}/queues/{client}?since=0&limit=1000", h.api),
        None,
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn push_one(h: &Herald, to: &[&str], n: u64) {
    let a = push(
        &h.api,
        json!({ "send_id": "e2e", "recv_id": to, "data": data(n) }),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}

/// Where the record holding `needle` starts and ends in the log.
fn record_with(log: &[u8], needle: &[u8]) -> (usize, usize) {
    let mut at = 8;
    while at + 8 <= log.len() {
        let end = at + 8 + u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        if log[at..end].windows(needle.len()).any(|w| w == needle) {
            return (at, end);
        }
        at = end;
    }
    panic!("no record holds {}", String::from_utf8_lossy(needle));
}

#[async_std::test]
async fn a_damaged_log_is_refused_then_recovered_with_every_intact_message_and_higher_ids() {
    let dir = TempDir::new("damaged-log");
    let clients = ["u1", "u2", "u3", "u4"];
    let mut h = Herald::start(&dir.0, &[]);
    for n in 0..PUSHES {
        push_one(&h, &recipients(n), n).await;
    }
    let mut before = BTreeMap::new();
    for c in clients {
        before.insert(c, queue(&h, c).await);
    }
    assert_eq!(before["u4"].len(), 1);
    assert!(h.terminate().success());

    // One flipped byte in the middle of the log, in push DAMAGED's record.
    let log_path = dir.0.join("herald.log");
    let mut log = std::fs::read(&log_path).unwrap();
    let (start, end) = record_with(&log, format!("\"{}\"", data(DAMAGED)).as_bytes());
    assert!(
        start > log.len() / 4 && end < log.len() * 3 / 4,
        "in the middle"
    );
    log[(start + end) / 2] ^= 0x20;
    std::fs::write(&log_path, &log).unwrap();

    let refused = start_refused(&dir.0, &[]);
    assert!(!refused.status.success(), "{refused:?}");
    for needle in [
        log_path.display().to_string(),
        format!("damaged at byte {start} "),
        "--recover-damaged-log".to_owned(),
    ] {
        assert!(
            refused.stderr.contains(&needle),
            "{needle:?} in {refused:?}"
        );
    }
    assert_eq!(
        std::fs::read(&log_path).unwrap(),
        log,
        "the log is untouched"
    );

    let h = Herald::start(&dir.0, &["--recover-damaged-log"]);
    let mut kept = BTreeMap::new();
    for c in clients {
        let want: Vec<(u64, String)> = before[c]
            .iter()
            .filter(|(_, d)| *d != data(DAMAGED))
            .cloned()
            .collect();
        assert_eq!(
            want.len() + 1,
            before[c].len(),
            "{c} had a copy of push {DAMAGED}"
        );
        assert_eq!(queue(&h, c).await, want, "{c}: every intact message");
        kept.insert(c, want);
    }
    push_one(&h, &clients, PUSHES).await;
    for c in clients {
        let highest = before[c].iter().map(|(id, _)| *id).max().unwrap();
        let mut now = queue(&h, c).await;
        let (id, d) = now.pop().unwrap();
        assert_eq!(d, data(PUSHES), "{c}");
        assert!(
            id > highest,
            "{c}: new id {id}, ids up to {highest} were handed out"
        );
        assert_eq!(now, kept[c], "{c}: the new message pushed out none it kept");
    }
}
