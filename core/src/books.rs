//! Pure bookkeeping of push records and idempotency claims, for stores that keep them in memory
//! (the [`MemoryStore`](crate::MemoryStore), and the embedded store's index rebuilt from its
//! log): one implementation of the rules in [`crate::receipts`], no I/O.

use std::collections::{BTreeMap, HashMap};

use crate::ids::{ClientId, MessageId, Slot};
use crate::push_id::PushId;
use crate::receipts::{
    CopyStatus, IdempotencyClaim, IdempotencyTimes, PUSH_RECORD_GRACE, PushStatus, RecallReport,
    Receipt, ReceiptKind, copy_state, millis,
};

/// One push's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    /// When it was stored, Unix milliseconds.
    pub ts: u64,
    /// When its copies expire.
    pub expires_ms: u64,
    /// Its recipients in order, with the id each copy got.
    pub copies: Vec<(ClientId, MessageId)>,
    /// What the first recall answered, once recalled.
    pub recall: Option<RecallReport>,
    /// Receipt times: the earliest per (recipient, slot, kind).
    pub times: HashMap<(ClientId, Slot, ReceiptKind), u64>,
}

/// What a store knows of one copy when a status or a recall is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyFacts {
    /// The copy is still kept and not expired.
    pub kept: bool,
    /// Slots that acknowledged it (bit `slot`).
    pub acked: u16,
}

/// Every push record of a store.
#[derive(Debug, Default)]
pub struct PushBook {
    /// Records by push id (ordered: compaction writes them in a stable order).
    pub records: BTreeMap<PushId, PushRecord>,
}

impl PushBook {
    /// Records a push stored at `ts` with `copies`.
    pub fn stored(
        &mut self,
        push: PushId,
        ts: u64,
        expires_ms: u64,
        copies: Vec<(ClientId, MessageId)>,
    ) {
        if copies.is_empty() {
            return;
        }
        self.records.insert(
            push,
            PushRecord {
                ts,
                expires_ms,
                copies,
                recall: None,
                times: HashMap::new(),
            },
        );
    }

    /// Keeps the earliest time of `r`; whether it changed anything (unknown pushes and
    /// recipients are ignored).
    pub fn receipt(&mut self, r: &Receipt) -> bool {
        let Some(rec) = self.records.get_mut(&r.push) else {
            return false;
        };
        if !rec
            .copies
            .iter()
            .any(|(c, id)| *c == r.client && *id == r.id)
        {
            return false;
        }
        match rec.times.entry((r.client.clone(), r.slot, r.kind)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(r.at_ms);
                true
            }
            std::collections::hash_map::Entry::Occupied(mut o) if r.at_ms < *o.get() => {
                o.insert(r.at_ms);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
        }
    }

    /// The status of `push` for `slot`, given what the store knows of each copy.
    pub fn status(
        &self,
        push: PushId,
        slot: Slot,
        mut facts: impl FnMut(&ClientId, MessageId) -> CopyFacts,
    ) -> Option<PushStatus> {
        let rec = self.records.get(&push)?;
        let copies = rec
            .copies
            .iter()
            .map(|(client, id)| {
                let f = facts(client, *id);
                let time = |kind| rec.times.get(&(client.clone(), slot, kind)).copied();
                let (delivered_at, acked_at) =
                    (time(ReceiptKind::Delivered), time(ReceiptKind::Acked));
                let acked = f.acked & slot.bit() != 0 || acked_at.is_some();
                CopyStatus {
                    client: client.clone(),
                    id: *id,
                    state: copy_state(f.kept, acked, rec.recall.is_some(), delivered_at),
                    delivered_at,
                    acked_at,
                }
            })
            .collect();
        Some(PushStatus {
            ts: rec.ts,
            expires_ms: rec.expires_ms,
            copies,
        })
    }

    /// Recalls `push`: the first time, counts its copies (acknowledged by some slot, by the
    /// store's state or an acked receipt, or not) and keeps the counts; a repeat gives them
    /// again. Returns the report and the recipients.
    pub fn recall(
        &mut self,
        push: PushId,
        mut facts: impl FnMut(&ClientId, MessageId) -> CopyFacts,
    ) -> Option<(RecallReport, Vec<ClientId>)> {
        let rec = self.records.get_mut(&push)?;
        let clients = rec.copies.iter().map(|(c, _)| c.clone()).collect();
        if let Some(report) = rec.recall {
            return Some((report, clients));
        }
        let mut report = RecallReport::default();
        for (client, id) in &rec.copies {
            let acked_receipt = rec
                .times
                .keys()
                .any(|(c, _, k)| c == client && *k == ReceiptKind::Acked);
            if facts(client, *id).acked != 0 || acked_receipt {
                report.already_acked += 1;
            } else {
                report.recalled += 1;
            }
        }
        rec.recall = Some(report);
        Some((report, clients))
    }

    /// Whether `push` is recalled.
    pub fn is_recalled(&self, push: &PushId) -> bool {
        self.records.get(push).is_some_and(|r| r.recall.is_some())
    }

    /// Forgets the records whose copies expired [`PUSH_RECORD_GRACE`] or longer before
    /// `now_ms`.
    pub fn purge(&mut self, now_ms: u64) {
        let grace = millis(PUSH_RECORD_GRACE);
        self.records
            .retain(|_, r| r.expires_ms.saturating_add(grace) > now_ms);
    }
}

/// One idempotency claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// SHA-256 of the body it was claimed for.
    pub sha: [u8; 32],
    /// When it was taken, Unix milliseconds.
    pub taken_ms: u64,
    /// When it is forgotten.
    pub expires_ms: u64,
    /// A pending claim may be taken over from this time on.
    pub lease_ms: u64,
    /// The answer, once finished.
    pub answer: Option<String>,
}

/// Every idempotency claim of a store.
#[derive(Debug, Default)]
pub struct IdempotencyTable {
    /// Claims by key (ordered: compaction writes them in a stable order).
    pub claims: BTreeMap<String, Claim>,
}

impl IdempotencyTable {
    /// Claims `key` (see [`crate::ports::MessageStore::claim_idempotency`]); when the answer is
    /// [`IdempotencyClaim::Claimed`], the claim it made is returned too (to log it).
    pub fn claim(
        &mut self,
        key: &str,
        sha: [u8; 32],
        now_ms: u64,
        times: IdempotencyTimes,
    ) -> (IdempotencyClaim, Option<Claim>) {
        if let Some(c) = self.claims.get(key).filter(|c| c.expires_ms > now_ms) {
            if c.sha != sha {
                return (IdempotencyClaim::Mismatch, None);
            }
            if let Some(answer) = &c.answer {
                return (IdempotencyClaim::Replay(answer.clone()), None);
            }
            if c.lease_ms > now_ms {
                return (IdempotencyClaim::InProgress, None);
            }
        }
        let claim = Claim {
            sha,
            taken_ms: now_ms,
            expires_ms: now_ms.saturating_add(millis(times.ttl)),
            lease_ms: now_ms.saturating_add(millis(times.lease)),
            answer: None,
        };
        self.claims.insert(key.to_owned(), claim.clone());
        (IdempotencyClaim::Claimed, Some(claim))
    }

    /// Finishes the claim of `key` with `answer`; whether there was one.
    pub fn finish(&mut self, key: &str, answer: &str) -> bool {
        match self.claims.get_mut(key) {
            Some(c) => {
                c.answer = Some(answer.to_owned());
                true
            }
            None => false,
        }
    }

    /// Gives up the claim of `key`; whether there was one.
    pub fn release(&mut self, key: &str) -> bool {
        self.claims.remove(key).is_some()
    }

    /// Forgets the claims expired at `now_ms`.
    pub fn purge(&mut self, now_ms: u64) {
        self.claims.retain(|_, c| c.expires_ms > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TIMES: IdempotencyTimes = IdempotencyTimes {
        ttl: Duration::from_secs(100),
        lease: Duration::from_secs(10),
    };

    #[test]
    fn a_claim_is_held_replayed_refused_for_another_body_and_taken_over_after_its_lease() {
        let mut t = IdempotencyTable::default();
        let (a, b) = ([1; 32], [2; 32]);
        assert_eq!(t.claim("k", a, 0, TIMES).0, IdempotencyClaim::Claimed);
        assert_eq!(t.claim("k", a, 1, TIMES).0, IdempotencyClaim::InProgress);
        assert_eq!(t.claim("k", b, 1, TIMES).0, IdempotencyClaim::Mismatch);
        assert_eq!(t.claim("k", a, 10_000, TIMES).0, IdempotencyClaim::Claimed);
        assert!(t.finish("k", "answer"));
        let replay = IdempotencyClaim::Replay("answer".into());
        assert_eq!(t.claim("k", a, 20_000, TIMES).0, replay);
        assert_eq!(t.claim("k", a, 110_000, TIMES).0, IdempotencyClaim::Claimed);
        assert!(t.release("k"));
        assert_eq!(t.claim("k", b, 110_001, TIMES).0, IdempotencyClaim::Claimed);
    }
}
