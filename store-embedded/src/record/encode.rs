//! Encoding: the `put_*` functions that append one framed record of each kind.

use herald_core::books::Claim;
use herald_core::{ClientId, MessageId, PushId, RecallReport, Receipt, ReceiptKind, Slot};

use super::frame::frame;
use super::{
    ACK, CAP, CLAIM, FLOOR, LAST, NAMED, PURGED, PUSH, PUSH_BODY_AT, RECALL, RECEIPTS, RELEASE,
    REPORTED, SKIPPED,
};

/// Writes a client id: its length byte and its bytes.
fn put_client(out: &mut Vec<u8>, client: &ClientId) {
    let s = client.as_str().as_bytes();
    // ClientId guarantees at most 128 bytes.
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// Appends a push frame; returns where the body starts, counted from `out`'s start.
pub fn put_push<'a>(
    out: &mut Vec<u8>,
    expires: u64,
    body: &[u8],
    copies: impl ExactSizeIterator<Item = (&'a ClientId, MessageId, u64, u16)>,
) -> usize {
    let body_at = out.len() + PUSH_BODY_AT as usize;
    frame(out, |out| {
        out.push(PUSH);
        out.extend_from_slice(&expires.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&(copies.len() as u32).to_le_bytes());
        for (client, id, ts, acked) in copies {
            put_client(out, client);
            out.extend_from_slice(&id.0.to_le_bytes());
            out.extend_from_slice(&ts.to_le_bytes());
            out.extend_from_slice(&acked.to_le_bytes());
        }
    });
    body_at
}

/// Appends an ack frame.
pub fn put_ack(out: &mut Vec<u8>, client: &ClientId, slot: Slot, ids: &[MessageId]) {
    frame(out, |out| {
        out.push(ACK);
        put_client(out, client);
        out.push(slot.get());
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    });
}

/// Appends a last-id frame.
pub fn put_last(out: &mut Vec<u8>, client: &ClientId, last: MessageId) {
    frame(out, |out| {
        out.push(LAST);
        put_client(out, client);
        out.extend_from_slice(&last.0.to_le_bytes());
    });
}

/// Appends a cap frame.
pub fn put_cap(out: &mut Vec<u8>, cap: u64) {
    frame(out, |out| {
        out.push(CAP);
        out.extend_from_slice(&cap.to_le_bytes());
    });
}

/// Appends a purged frame.
pub fn put_purged(out: &mut Vec<u8>, now_ms: u64) {
    frame(out, |out| {
        out.push(PURGED);
        out.extend_from_slice(&now_ms.to_le_bytes());
    });
}

/// Appends a floor frame.
pub fn put_floor(out: &mut Vec<u8>, floor: u64) {
    frame(out, |out| {
        out.push(FLOOR);
        out.extend_from_slice(&floor.to_le_bytes());
    });
}

/// Appends a skipped-ids frame.
pub fn put_skipped(out: &mut Vec<u8>, client: &ClientId, from: u64, to: u64) {
    frame(out, |out| {
        out.push(SKIPPED);
        put_client(out, client);
        out.extend_from_slice(&from.to_le_bytes());
        out.extend_from_slice(&to.to_le_bytes());
    });
}

/// Appends a push-record frame.
pub fn put_named(
    out: &mut Vec<u8>,
    push: PushId,
    ts: u64,
    expires: u64,
    copies: &[(ClientId, MessageId)],
) {
    frame(out, |out| {
        out.push(NAMED);
        out.extend_from_slice(push.as_str().as_bytes());
        out.extend_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&expires.to_le_bytes());
        out.extend_from_slice(&(copies.len() as u32).to_le_bytes());
        for (client, id) in copies {
            put_client(out, client);
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    });
}

/// Appends a receipts frame.
pub fn put_receipts<'a>(out: &mut Vec<u8>, receipts: impl IntoIterator<Item = &'a Receipt>) {
    let start = out.len();
    let mut n: u32 = 0;
    frame(out, |out| {
        out.push(RECEIPTS);
        let count = out.len();
        out.extend_from_slice(&[0; 4]);
        for r in receipts {
            n += 1;
            out.extend_from_slice(r.push.as_str().as_bytes());
            put_client(out, &r.client);
            out.extend_from_slice(&r.id.0.to_le_bytes());
            out.push(r.slot.get());
            out.push(match r.kind {
                ReceiptKind::Delivered => 0,
                ReceiptKind::Acked => 1,
            });
            out.extend_from_slice(&r.at_ms.to_le_bytes());
        }
        out[count..count + 4].copy_from_slice(&n.to_le_bytes());
    });
    if n == 0 {
        out.truncate(start);
    }
}

/// Appends a recall frame.
pub fn put_recall(out: &mut Vec<u8>, push: PushId, report: RecallReport) {
    frame(out, |out| {
        out.push(RECALL);
        out.extend_from_slice(push.as_str().as_bytes());
        out.extend_from_slice(&report.recalled.to_le_bytes());
        out.extend_from_slice(&report.already_acked.to_le_bytes());
    });
}

/// Writes an idempotency key: its length byte and its bytes (keys are 1 to 255 bytes).
fn put_key(out: &mut Vec<u8>, key: &str) {
    out.push(key.len() as u8);
    out.extend_from_slice(key.as_bytes());
}

/// Appends an idempotency claim frame.
pub fn put_claim(out: &mut Vec<u8>, key: &str, claim: &Claim) {
    frame(out, |out| {
        out.push(CLAIM);
        put_key(out, key);
        out.extend_from_slice(&claim.sha);
        out.extend_from_slice(&claim.taken_ms.to_le_bytes());
        out.extend_from_slice(&claim.expires_ms.to_le_bytes());
        out.extend_from_slice(&claim.lease_ms.to_le_bytes());
        match &claim.answer {
            Some(a) => {
                out.push(1);
                out.extend_from_slice(&(a.len() as u32).to_le_bytes());
                out.extend_from_slice(a.as_bytes());
            }
            None => out.push(0),
        }
    });
}

/// Appends a claim-release frame.
pub fn put_release(out: &mut Vec<u8>, key: &str) {
    frame(out, |out| {
        out.push(RELEASE);
        put_key(out, key);
    });
}

/// Appends a frame saying that the expiry of `pushes` was reported (nothing when there are none).
pub fn put_reported(out: &mut Vec<u8>, pushes: &[PushId]) {
    if pushes.is_empty() {
        return;
    }
    frame(out, |out| {
        out.push(REPORTED);
        out.extend_from_slice(&(pushes.len() as u32).to_le_bytes());
        for p in pushes {
            out.extend_from_slice(p.as_str().as_bytes());
        }
    });
}
