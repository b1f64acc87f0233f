//! Decoding: a cursor over a verified payload and the record it holds.

use herald_core::books::Claim;
use herald_core::push_id::PUSH_ID_LEN;
use herald_core::{ClientId, MessageId, PushId, RecallReport, Receipt, ReceiptKind, Slot};

use super::{
    ACK, CAP, CLAIM, Copy, DecodeError, FLOOR, LAST, NAMED, PURGED, PUSH, RECALL, RECEIPTS,
    RELEASE, REPORTED, Record, SKIPPED,
};

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
        REPORTED => {
            let n = c.count(PUSH_ID_LEN, "reported pushes")?;
            let mut pushes = Vec::with_capacity(n);
            for _ in 0..n {
                pushes.push(c.push_id()?);
            }
            Record::Reported(pushes)
        }
        other => return Err(DecodeError(format!("unknown record kind {other}"))),
    };
    c.end()?;
    Ok(record)
}
