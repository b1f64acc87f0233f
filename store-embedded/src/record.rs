//! The log's records: framing, checksums and the byte layout of each kind.
//!
//! The log file starts with [`MAGIC`], then frames. A frame is `len: u32 LE`, `crc: u32 LE`
//! (CRC-32 of the payload), then `len` bytes of payload whose first byte says its kind. All
//! integers are little-endian; a client id is a length byte and its bytes (ids are at most
//! 128 bytes).
//!
//! | kind | payload after the kind byte | written |
//! | --- | --- | --- |
//! | [`Record::Push`] | `expires: u64`, `body_len: u32`, body, `n: u32`, then `n` × (client, `id: u64`, `ts: u64`, `acked: u16`) | once per push, whatever the number of recipients |
//! | [`Record::Ack`] | client, `slot: u8`, `n: u32`, `n` × `id: u64` | per acknowledgement that changed something |
//! | [`Record::Last`] | client, `last: u64` | by compaction: the last id handed out, which outlives the messages |
//! | [`Record::Cap`] | `cap: u64` | when the store opens with another cap than the log's last one, and by compaction |
//! | [`Record::Purged`] | `now_ms: u64` | after each purge: everything expired at that time is gone |
//! | [`Record::Floor`] | `floor: u64` | when bytes of the log were lost (a torn tail, a recovery), and by compaction: no queue hands out an id at or below it again |
//! | [`Record::Skipped`] | client, `from: u64`, `to: u64` | by compaction: ids a floor skipped in a queue that still had messages |
//! | [`Record::Named`] | push id (26 bytes), `ts: u64`, `expires: u64`, `n: u32`, `n` × (client, `id: u64`) | after a push that has a push id, and by compaction: the push record |
//! | [`Record::Receipts`] | `n: u32`, `n` × (push id, client, `id: u64`, `slot: u8`, `kind: u8`, `at: u64`) | per batch of delivery receipts, not synced on its own |
//! | [`Record::Recall`] | push id, `recalled: u64`, `already_acked: u64` | when a push is first recalled, and by compaction |
//! | [`Record::Claim`] | key (length byte, bytes), `sha256: [u8; 32]`, `taken: u64`, `expires: u64`, `lease: u64`, `answered: u8`, then `len: u32` and the answer when answered | when an idempotency key is claimed or finished, and by compaction |
//! | [`Record::Release`] | key | when a claim is given up |
//!
//! A push's body sits at a fixed distance from its frame's start ([`PUSH_BODY_AT`]), so the
//! in-memory index keeps only its position and reads it back with one positioned read.

use herald_core::books::Claim;
use herald_core::push_id::PUSH_ID_LEN;
use herald_core::{ClientId, MessageId, PushId, RecallReport, Receipt, ReceiptKind, Slot};

/// The first bytes of a log file: the format and its version.
pub const MAGIC: &[u8; 8] = b"HRLDLOG1";

/// Length of a frame's header: `len` and `crc`.
pub const FRAME_HEADER: usize = 8;

/// Where a push's body starts, counted from its frame's first byte: frame header, kind,
/// `expires`, `body_len`.
pub const PUSH_BODY_AT: u64 = (FRAME_HEADER + 1 + 8 + 4) as u64;

/// The longest payload a frame may announce. A push to the most recipients a request may
/// name is far below it; a longer length can only come from a damaged file.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// Kind byte of [`Record::Push`].
const PUSH: u8 = 1;
/// Kind byte of [`Record::Ack`].
const ACK: u8 = 2;
/// Kind byte of [`Record::Last`].
const LAST: u8 = 3;
/// Kind byte of [`Record::Cap`].
const CAP: u8 = 4;
/// Kind byte of [`Record::Purged`].
const PURGED: u8 = 5;
/// Kind byte of [`Record::Floor`].
const FLOOR: u8 = 6;
/// Kind byte of [`Record::Skipped`].
const SKIPPED: u8 = 7;
/// Kind byte of [`Record::Named`].
const NAMED: u8 = 8;
/// Kind byte of [`Record::Receipts`].
const RECEIPTS: u8 = 9;
/// Kind byte of [`Record::Recall`].
const RECALL: u8 = 10;
/// Kind byte of [`Record::Claim`].
const CLAIM: u8 = 11;
/// Kind byte of [`Record::Release`].
const RELEASE: u8 = 12;

/// Whether `kind` is the kind byte of a record this version writes: a cheap first test of a
/// frame found while looking for the next intact record after damage.
pub fn is_kind(kind: u8) -> bool {
    (PUSH..=RELEASE).contains(&kind)
}

/// One recipient's copy of a push, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The queue.
    pub client: ClientId,
    /// Its id in that queue.
    pub id: MessageId,
    /// Its store time.
    pub ts: u64,
    /// Slots that had acknowledged it when the record was written (0 for a new push).
    pub acked: u16,
}

/// A decoded record; a push's body is left in the payload ([`Record::Push::body`] is its
/// place there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A message appended to one or more queues.
    Push {
        /// Expiry time: expired when `now >= expires`.
        expires: u64,
        /// Where the body is within the payload.
        body: std::ops::Range<usize>,
        /// The copies.
        copies: Vec<Copy>,
    },
    /// Ids of a client newly acknowledged by a slot.
    Ack {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// The ids.
        ids: Vec<MessageId>,
    },
    /// The last id handed out in a client's queue.
    Last {
        /// The client.
        client: ClientId,
        /// Its last id.
        last: MessageId,
    },
    /// The per-client cap in force from here on.
    Cap(u64),
    /// A purge at this time removed everything expired by then.
    Purged(u64),
    /// Every queue's last id is at least this from here on, and a queue first seen later
    /// starts above it: ids at or below it may have been handed out by records that were
    /// lost.
    Floor(u64),
    /// Ids `from..=to` of a client were skipped by a floor while the queue held messages:
    /// they are not messages, so the cap does not count them.
    Skipped {
        /// The client.
        client: ClientId,
        /// The first skipped id.
        from: u64,
        /// The last skipped id.
        to: u64,
    },
    /// A push record: the push's id, time, expiry, and recipients with their copies' ids.
    Named {
        /// The push.
        push: PushId,
        /// Its store time.
        ts: u64,
        /// Its expiry.
        expires: u64,
        /// Its recipients, in order, with their ids.
        copies: Vec<(ClientId, MessageId)>,
    },
    /// Delivery receipts.
    Receipts(Vec<Receipt>),
    /// A push was recalled, with what the recall counted.
    Recall {
        /// The push.
        push: PushId,
        /// The counts.
        report: RecallReport,
    },
    /// An idempotency claim, as it is now (taken or finished).
    Claim {
        /// The key.
        key: String,
        /// The claim.
        claim: Claim,
    },
    /// An idempotency claim was given up.
    Release {
        /// The key.
        key: String,
    },
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// The CRC-32 (IEEE 802.3, reflected) lookup table.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Appends one frame to `out`; `payload` writes the payload (kind byte first).
fn frame(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    payload(out);
    let len = out.len() - start - FRAME_HEADER;
    let crc = crc32(&out[start + FRAME_HEADER..]);
    // A payload is bounded by MAX_PAYLOAD (checked by the callers' limits), far below u32.
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

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

/// The frame header's announced payload length and checksum, if it is one at all.
pub fn read_header(header: &[u8; FRAME_HEADER]) -> Result<(usize, u32), DecodeError> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Err(DecodeError(format!("frame announces {len} bytes")));
    }
    Ok((len, crc))
}

/// A cursor over a payload.
struct Cursor<'a> {
    /// The payload.
    bytes: &'a [u8],
    /// The next byte to read.
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| DecodeError(format!("record ends before byte {}", self.at + n)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// A `u8`.
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A `u16`.
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A `u32`.
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `u64`.
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A client id.
    fn push_id(&mut self) -> Result<PushId, DecodeError> {
        let bytes = self.take(PUSH_ID_LEN)?;
        let text =
            std::str::from_utf8(bytes).map_err(|_| DecodeError("push id not ASCII".into()))?;
        PushId::parse(text).map_err(|e| DecodeError(e.to_string()))
    }

    fn text(&mut self, len: usize) -> Result<String, DecodeError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("text not UTF-8".into()))
    }

    /// A count of items of at least `min` bytes each, checked against what is left (a larger
    /// count is damage, not a reason to allocate).
    fn count(&mut self, min: usize, what: &str) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > (self.bytes.len() - self.at) / min {
            return Err(DecodeError(format!("record announces {n} {what}")));
        }
        Ok(n)
    }

    fn client(&mut self) -> Result<ClientId, DecodeError> {
        let n = self.u8()? as usize;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|e| DecodeError(e.to_string()))?;
        ClientId::new(s).map_err(|e| DecodeError(e.to_string()))
    }

    /// Fails unless every byte was read.
    fn end(&self) -> Result<(), DecodeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} bytes left after the record",
                self.bytes.len() - self.at
            )))
        }
    }
}

/// Decodes a payload whose checksum was verified.
pub fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut c = Cursor {
        bytes: payload,
        at: 0,
    };
    let record = match c.u8()? {
        PUSH => {
            let expires = c.u64()?;
            let len = c.u32()? as usize;
            let start = c.at;
            c.take(len)?;
            let body = start..start + len;
            let n = c.u32()? as usize;
            // Each copy is at least 19 bytes: a count beyond that is damage, not a reason
            // to allocate.
            if n > (payload.len() - c.at) / 19 {
                return Err(DecodeError(format!("push announces {n} copies")));
            }
            let mut copies = Vec::with_capacity(n);
            for _ in 0..n {
                copies.push(Copy {
                    client: c.client()?,
                    id: MessageId(c.u64()?),
                    ts: c.u64()?,
                    acked: c.u16()?,
                });
            }
            Record::Push {
                expires,
                body,
                copies,
            }
        }
        ACK => {
            let client = c.client()?;
            let slot = Slot::new(i64::from(c.u8()?)).map_err(|e| DecodeError(e.to_string()))?;
            let n = c.u32()? as usize;
            if n > (payload.len() - c.at) / 8 {
                return Err(DecodeError(format!("ack announces {n} ids")));
            }
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(MessageId(c.u64()?));
            }
            Record::Ack { client, slot, ids }
        }
        LAST => Record::Last {
            client: c.client()?,
            last: MessageId(c.u64()?),
        },
        CAP => Record::Cap(c.u64()?),
        PURGED => Record::Purged(c.u64()?),
        FLOOR => Record::Floor(c.u64()?),
        SKIPPED => Record::Skipped {
            client: c.client()?,
            from: c.u64()?,
            to: c.u64()?,
        },
        NAMED => {
            let push = c.push_id()?;
            let (ts, expires) = (c.u64()?, c.u64()?);
            let n = c.count(10, "copies")?;
            let mut copies = Vec::with_capacity(n);
            for _ in 0..n {
                copies.push((c.client()?, MessageId(c.u64()?)));
            }
            Record::Named {
                push,
                ts,
                expires,
                copies,
            }
        }
        RECEIPTS => {
            let n = c.count(PUSH_ID_LEN + 20, "receipts")?;
            let mut receipts = Vec::with_capacity(n);
            for _ in 0..n {
                let push = c.push_id()?;
                let client = c.client()?;
                let id = MessageId(c.u64()?);
                let slot = Slot::new(i64::from(c.u8()?)).map_err(|e| DecodeError(e.to_string()))?;
                let kind = match c.u8()? {
                    0 => ReceiptKind::Delivered,
                    1 => ReceiptKind::Acked,
                    k => return Err(DecodeError(format!("unknown receipt kind {k}"))),
                };
                receipts.push(Receipt {
                    push,
                    client,
                    id,
                    slot,
                    kind,
                    at_ms: c.u64()?,
                });
            }
            Record::Receipts(receipts)
        }
        RECALL => Record::Recall {
            push: c.push_id()?,
            report: RecallReport {
                recalled: c.u64()?,
                already_acked: c.u64()?,
            },
        },
        CLAIM => {
            let len = c.u8()? as usize;
            let key = c.text(len)?;
            let sha: [u8; 32] = c
                .take(32)?
                .try_into()
                .map_err(|_| DecodeError("sha".into()))?;
            let (taken_ms, expires_ms, lease_ms) = (c.u64()?, c.u64()?, c.u64()?);
            let answer = match c.u8()? {
                0 => None,
                _ => {
                    let len = c.u32()? as usize;
                    Some(c.text(len)?)
                }
            };
            Record::Claim {
                key,
                claim: Claim {
                    sha,
                    taken_ms,
                    expires_ms,
                    lease_ms,
                    answer,
                },
            }
        }
        RELEASE => {
            let len = c.u8()? as usize;
            Record::Release { key: c.text(len)? }
        }
        other => return Err(DecodeError(format!("unknown record kind {other}"))),
    };
    c.end()?;
    Ok(record)
}

#[cfg(test)]
mod tests {
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
        assert!(!is_kind(0) && !is_kind(13));
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
}
