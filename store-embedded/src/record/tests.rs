//! Round trips of every record kind, the checksum, and damaged payloads.

use herald_core::books::Claim;
use herald_core::{ClientId, MessageId, RecallReport, Receipt, ReceiptKind, Slot};

use super::*;

fn cid(s: &str) -> ClientId {
    ClientId::new(s).unwrap()
}

/// Splits `bytes` into frames and decodes each, checking lengths and checksums.
fn frames(mut bytes: &[u8]) -> Vec<(Record, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header: [u8; FRAME_HEADER] = bytes[..FRAME_HEADER].try_into().unwrap();
        let (len, crc) = read_header(&header).unwrap();
        let payload = &bytes[FRAME_HEADER..FRAME_HEADER + len];
        assert_eq!(crc32(payload), crc);
        out.push((decode(payload).unwrap(), payload.to_vec()));
        bytes = &bytes[FRAME_HEADER + len..];
    }
    out
}

#[test]
fn the_crc_is_the_standard_one() {
    // The check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn every_kind_round_trips_and_the_body_is_where_it_is_said_to_be() {
    let (a, b) = (cid("a"), cid("client-b@x"));
    let mut out = b"prefix".to_vec();
    let body_at = put_push(
        &mut out,
        99,
        br#"{"d":1}"#,
        [(&a, MessageId(3), 7, 0), (&b, MessageId(1), 8, 0b101)].into_iter(),
    );
    assert_eq!(&out[body_at..body_at + 7], br#"{"d":1}"#);
    put_ack(
        &mut out,
        &b,
        Slot::new(15).unwrap(),
        &[MessageId(1), MessageId(9)],
    );
    put_last(&mut out, &a, MessageId(12));
    put_cap(&mut out, 10_000);
    put_purged(&mut out, 1234);
    put_floor(&mut out, 70_000);
    put_skipped(&mut out, &a, 13, 70_000);
    let got = frames(&out[6..]);
    let Record::Push {
        expires,
        body,
        copies,
    } = &got[0].0
    else {
        panic!("{:?}", got[0].0)
    };
    assert_eq!(*expires, 99);
    assert_eq!(&got[0].1[body.clone()], br#"{"d":1}"#);
    assert_eq!(
        copies,
        &[
            Copy {
                client: a.clone(),
                id: MessageId(3),
                ts: 7,
                acked: 0
            },
            Copy {
                client: b.clone(),
                id: MessageId(1),
                ts: 8,
                acked: 0b101
            }
        ]
    );
    assert_eq!(
        got[1].0,
        Record::Ack {
            client: b,
            slot: Slot::new(15).unwrap(),
            ids: vec![MessageId(1), MessageId(9)]
        }
    );
    assert_eq!(
        got[2].0,
        Record::Last {
            client: a,
            last: MessageId(12)
        }
    );
    assert_eq!(got[3].0, Record::Cap(10_000));
    assert_eq!(got[4].0, Record::Purged(1234));
    assert_eq!(got[5].0, Record::Floor(70_000));
    assert_eq!(
        got[6].0,
        Record::Skipped {
            client: cid("a"),
            from: 13,
            to: 70_000
        }
    );
    assert!(got.iter().all(|(_, p)| is_kind(p[0])));
    assert!(!is_kind(0) && !is_kind(14));
}

#[test]
fn receipt_records_round_trip() {
    let (a, push) = (cid("a"), herald_core::PushIds::new(9).next(1234));
    let receipt = Receipt {
        push,
        client: a.clone(),
        id: MessageId(4),
        slot: Slot::new(15).unwrap(),
        kind: ReceiptKind::Acked,
        at_ms: 77,
    };
    let report = RecallReport {
        recalled: 3,
        already_acked: 1,
    };
    let claim = |answer: Option<&str>| Claim {
        sha: [7; 32],
        taken_ms: 1,
        expires_ms: 2,
        lease_ms: 3,
        answer: answer.map(str::to_owned),
    };
    let mut out = Vec::new();
    put_named(&mut out, push, 5, 6, &[(a.clone(), MessageId(4))]);
    put_receipts(&mut out, std::slice::from_ref(&receipt));
    put_recall(&mut out, push, report);
    put_claim(&mut out, "k!~", &claim(None));
    put_claim(&mut out, "k", &claim(Some(r#"{"ok":1}"#)));
    put_release(&mut out, "k");
    put_reported(&mut out, &[push, push]);
    put_reported(&mut out, &[]);
    let got: Vec<Record> = frames(&out).into_iter().map(|(r, _)| r).collect();
    let want = vec![
        Record::Named {
            push,
            ts: 5,
            expires: 6,
            copies: vec![(a, MessageId(4))],
        },
        Record::Receipts(vec![receipt]),
        Record::Recall { push, report },
        Record::Claim {
            key: "k!~".into(),
            claim: claim(None),
        },
        Record::Claim {
            key: "k".into(),
            claim: claim(Some(r#"{"ok":1}"#)),
        },
        Record::Release { key: "k".into() },
        Record::Reported(vec![push, push]),
    ];
    assert_eq!(got, want);
}

#[test]
fn damaged_payloads_are_errors_not_panics() {
    let mut out = Vec::new();
    put_push(
        &mut out,
        1,
        b"{}",
        [(&cid("a"), MessageId(1), 1, 0)].into_iter(),
    );
    let payload = &out[FRAME_HEADER..];
    // Every truncation, and every single-byte change, decodes to an error or to some
    // record, never a panic.
    for n in 0..payload.len() {
        assert!(decode(&payload[..n]).is_err(), "truncated to {n}");
    }
    for i in 0..payload.len() {
        for v in [0u8, 1, 0x7F, 0xFF] {
            let mut p = payload.to_vec();
            p[i] = v;
            let _ = decode(&p);
        }
    }
    assert!(decode(&[9]).is_err(), "unknown kind");
    assert!(read_header(&[0; 8]).is_err(), "empty frame");
    assert!(read_header(&[0xFF; 8]).is_err(), "absurd length");
}
