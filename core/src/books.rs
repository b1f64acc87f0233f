//! Pure bookkeeping of push records and idempotency claims, for stores that keep them in memory
//! (the [`MemoryStore`](crate::MemoryStore), and the embedded store's index rebuilt from its
//! log): one implementation of the rules in [`crate::receipts`], no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ids::{ClientId, MessageId, Slot};
use crate::push_id::PushId;
use crate::receipts::{
    CopyStatus, IdempotencyClaim, IdempotencyTimes, PUSH_RECORD_GRACE, PushStatus, RecallReport,
    Receipt, ReceiptKind, copy_state, millis,
};

/// How many copies a [`PushBook`] keeps by default (about 45 bytes each in memory).
pub const DEFAULT_MAX_COPIES: usize = 1_000_000;

/// A receipt time not known yet.
const NONE: u64 = u64::MAX;

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
    /// Positions in `copies`, sorted by (client, id): a receipt finds its copy in O(log n)
    /// (a push has up to 10,000 copies and each gets two receipts per slot). Empty for a push
    /// of at most [`SCAN`] copies, searched in order.
    by_copy: Vec<u32>,
    /// Slot 0's receipt times per copy, `[delivered, acked]` ([`NONE`] when not known); empty
    /// until the first receipt. Slot 0 is the common case: a flat array, no hashing.
    first: Vec<[u64; 2]>,
    /// Receipt times of the other slots: the earliest per (copy's position, slot, kind); none
    /// until the first such receipt (most pushes never get one).
    other: Option<Box<OtherSlots>>,
}

/// Receipt times of slots other than 0, by (copy's position, slot, kind).
type OtherSlots = HashMap<(u32, Slot, ReceiptKind), u64>;

/// Pushes of at most this many copies are searched in order, without an index.
const SCAN: usize = 8;

impl PushRecord {
    /// A record of a push stored at `ts` with `copies`, no receipt yet.
    pub fn new(ts: u64, expires_ms: u64, copies: Vec<(ClientId, MessageId)>) -> PushRecord {
        let mut by_copy: Vec<u32> = Vec::new();
        if copies.len() > SCAN {
            by_copy = (0..copies.len() as u32).collect();
            by_copy.sort_unstable_by(|a, b| copies[*a as usize].cmp(&copies[*b as usize]));
        }
        PushRecord {
            ts,
            expires_ms,
            copies,
            recall: None,
            by_copy,
            first: Vec::new(),
            other: None,
        }
    }

    /// The position in `copies` of `client`'s copy `id`.
    fn position(&self, client: &ClientId, id: MessageId) -> Option<u32> {
        if self.by_copy.is_empty() {
            return self
                .copies
                .iter()
                .position(|(c, cid)| *cid == id && c == client)
                .map(|at| at as u32);
        }
        self.by_copy
            .binary_search_by(|i| {
                let (c, cid) = &self.copies[*i as usize];
                (c, *cid).cmp(&(client, id))
            })
            .ok()
            .map(|at| self.by_copy[at])
    }

    /// The time of `kind` for the copy at `at` on `slot`, if known.
    fn time(&self, at: u32, slot: Slot, kind: ReceiptKind) -> Option<u64> {
        if slot == Slot::default() {
            let t = self.first.get(at as usize)?[kind_index(kind)];
            (t != NONE).then_some(t)
        } else {
            self.other.as_ref()?.get(&(at, slot, kind)).copied()
        }
    }

    /// Keeps `at_ms` for the copy at `at` unless an earlier time is known; whether it changed.
    fn keep_earliest(&mut self, at: u32, slot: Slot, kind: ReceiptKind, at_ms: u64) -> bool {
        let t = if slot == Slot::default() {
            if self.first.is_empty() {
                self.first = vec![[NONE; 2]; self.copies.len()];
            }
            &mut self.first[at as usize][kind_index(kind)]
        } else {
            self.other
                .get_or_insert_default()
                .entry((at, slot, kind))
                .or_insert(NONE)
        };
        if at_ms < *t {
            *t = at_ms;
            true
        } else {
            false
        }
    }

    /// Positions of the copies that some slot acknowledged (by a receipt).
    fn acked_receipts(&self) -> std::collections::HashSet<u32> {
        let first = self.first.iter().enumerate().filter(|(_, t)| t[1] != NONE);
        let other = self.other.iter().flat_map(|o| o.keys());
        first
            .map(|(at, _)| at as u32)
            .chain(
                other
                    .filter(|(_, _, k)| *k == ReceiptKind::Acked)
                    .map(|(at, _, _)| *at),
            )
            .collect()
    }

    /// Its receipts (for `push`), copy by copy.
    pub fn receipts(&self, push: PushId) -> impl Iterator<Item = Receipt> + '_ {
        let receipt = move |at: u32, slot: Slot, kind: ReceiptKind, at_ms: u64| {
            let (client, id) = &self.copies[at as usize];
            Receipt {
                push,
                client: client.clone(),
                id: *id,
                slot,
                kind,
                at_ms,
            }
        };
        let first = self.first.iter().enumerate().flat_map(move |(at, times)| {
            [ReceiptKind::Delivered, ReceiptKind::Acked]
                .into_iter()
                .filter(move |k| times[kind_index(*k)] != NONE)
                .map(move |k| receipt(at as u32, Slot::default(), k, times[kind_index(k)]))
        });
        let mut other: Vec<_> = self.other.iter().flat_map(|o| o.iter()).collect();
        other.sort_unstable_by_key(|(key, _)| **key);
        let other = other
            .into_iter()
            .map(move |((at, slot, kind), ms)| receipt(*at, *slot, *kind, *ms));
        first.chain(other)
    }
}

/// Index of `kind` in [`PushRecord::first`]'s pairs.
fn kind_index(kind: ReceiptKind) -> usize {
    match kind {
        ReceiptKind::Delivered => 0,
        ReceiptKind::Acked => 1,
    }
}

/// What a store knows of one copy when a status or a recall is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyFacts {
    /// The copy is still kept and not expired.
    pub kept: bool,
    /// Slots that acknowledged it (bit `slot`).
    pub acked: u16,
}

/// Every push record of a store, up to a number of copies: when a new push would hold more,
/// the oldest records are forgotten (their status and recall answer "unknown push"; their
/// copies stay deliverable). Without a bound, a busy node would keep every copy of eight days
/// of pushes in memory.
#[derive(Debug)]
pub struct PushBook {
    /// Records by push id (ordered by time: the first is the oldest; compaction writes them in
    /// a stable order).
    pub records: BTreeMap<PushId, PushRecord>,
    /// Copies held by `records`.
    copies: usize,
    /// At most this many copies are held.
    max_copies: usize,
    /// Records forgotten to stay under `max_copies`.
    forgotten: u64,
    /// Pushes whose expiry has not been reported yet (`expired` webhook events), by
    /// (expiry, push): [`PushBook::expired_unreported`] reads it oldest first.
    unreported: BTreeSet<(u64, PushId)>,
}

impl Default for PushBook {
    fn default() -> Self {
        PushBook::with_max_copies(DEFAULT_MAX_COPIES)
    }
}

impl PushBook {
    /// A book that holds at most `max_copies` copies (at least the newest push is kept).
    pub fn with_max_copies(max_copies: usize) -> PushBook {
        PushBook {
            records: BTreeMap::new(),
            copies: 0,
            max_copies,
            forgotten: 0,
            unreported: BTreeSet::new(),
        }
    }

    /// How many records were forgotten to stay under the bound.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Records a push stored at `ts` with `copies`, forgetting the oldest records if the book
    /// would hold more than its bound.
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
        self.copies += copies.len();
        if let Some(old) = self
            .records
            .insert(push, PushRecord::new(ts, expires_ms, copies))
        {
            self.copies -= old.copies.len();
            self.unreported.remove(&(old.expires_ms, push));
        }
        self.unreported.insert((expires_ms, push));
        while self.copies > self.max_copies && self.records.len() > 1 {
            let Some((oldest, rec)) = self.records.pop_first() else {
                break;
            };
            self.copies -= rec.copies.len();
            self.unreported.remove(&(rec.expires_ms, oldest));
            self.forgotten += 1;
            log::debug!(
                "push record {oldest} forgotten: more than {} copies",
                self.max_copies
            );
        }
    }

    /// Keeps the earliest time of `r`; whether it changed anything (unknown pushes and
    /// recipients are ignored).
    pub fn receipt(&mut self, r: &Receipt) -> bool {
        let Some(rec) = self.records.get_mut(&r.push) else {
            return false;
        };
        let Some(at) = rec.position(&r.client, r.id) else {
            return false;
        };
        rec.keep_earliest(at, r.slot, r.kind, r.at_ms)
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
            .enumerate()
            .map(|(at, (client, id))| {
                let f = facts(client, *id);
                let time = |kind| rec.time(at as u32, slot, kind);
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
        let acked = rec.acked_receipts();
        for (at, (client, id)) in rec.copies.iter().enumerate() {
            if facts(client, *id).acked != 0 || acked.contains(&(at as u32)) {
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
        self.copies = self.records.values().map(|r| r.copies.len()).sum();
        let records = &self.records;
        self.unreported.retain(|(_, p)| records.contains_key(p));
    }

    /// Up to `limit` pushes whose copies expired at or before `now_ms` and whose expiry was
    /// not reported yet ([`PushBook::expiry_reported`]), the earliest expiry first.
    pub fn expired_unreported(&self, now_ms: u64, limit: usize) -> Vec<PushId> {
        self.unreported
            .iter()
            .take_while(|(expires, _)| *expires <= now_ms)
            .take(limit)
            .map(|(_, p)| *p)
            .collect()
    }

    /// Notes that the expiry of `push` was reported; whether it was not already (unknown pushes
    /// are ignored).
    pub fn expiry_reported(&mut self, push: PushId) -> bool {
        match self.records.get(&push) {
            Some(rec) => self.unreported.remove(&(rec.expires_ms, push)),
            None => false,
        }
    }

    /// Whether the expiry of `push`, a known push, was reported.
    pub fn is_expiry_reported(&self, push: &PushId) -> bool {
        self.records
            .get(push)
            .is_some_and(|r| !self.unreported.contains(&(r.expires_ms, *push)))
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

/// How many idempotency keys an [`IdempotencyTable`] keeps by default (about 250 bytes each
/// with a 36-character key).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// Every idempotency claim of a store, up to a number of keys: beyond it the oldest claims are
/// forgotten before their time to live (a retry with a forgotten key is stored again). Without
/// a bound, a sender that keys every push (as it should) would keep a day of keys in memory.
#[derive(Debug)]
pub struct IdempotencyTable {
    /// Claims by key (ordered: compaction writes them in a stable order).
    pub claims: BTreeMap<String, Claim>,
    /// At most this many claims are kept.
    max_keys: usize,
}

impl Default for IdempotencyTable {
    fn default() -> Self {
        IdempotencyTable::with_max_keys(DEFAULT_MAX_KEYS)
    }
}

impl IdempotencyTable {
    /// A table that keeps at most `max_keys` claims.
    pub fn with_max_keys(max_keys: usize) -> IdempotencyTable {
        IdempotencyTable {
            claims: BTreeMap::new(),
            max_keys,
        }
    }

    /// Forgets the oldest claims (by the time they were taken) while there are more than the
    /// bound: down to 90% of it at once, so that the scan is paid once per tenth of the bound.
    /// How many it forgot.
    pub fn bound(&mut self) -> usize {
        if self.claims.len() <= self.max_keys {
            return 0;
        }
        let keep = self.max_keys - self.max_keys / 10;
        let excess = self.claims.len() - keep;
        let mut taken: Vec<u64> = self.claims.values().map(|c| c.taken_ms).collect();
        let cut = *taken.select_nth_unstable(excess - 1).1;
        // Everything taken before `cut`, then as many taken at `cut` as needed.
        let mut left = excess;
        for at_cut in [false, true] {
            self.claims.retain(|_, c| {
                let old = if at_cut {
                    c.taken_ms == cut
                } else {
                    c.taken_ms < cut
                };
                if left > 0 && old {
                    left -= 1;
                    return false;
                }
                true
            });
        }
        log::debug!(
            "{excess} idempotency keys forgotten: more than {}",
            self.max_keys
        );
        excess
    }

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
        if self.claims.insert(key.to_owned(), claim.clone()).is_none() {
            self.bound();
        }
        (IdempotencyClaim::Claimed, Some(claim))
    }

    /// Puts back a claim read from a store's log (replay), within the bound.
    pub fn restore(&mut self, key: String, claim: Claim) {
        if self.claims.insert(key, claim).is_none() {
            self.bound();
        }
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

    fn copies(n: usize) -> Vec<(ClientId, MessageId)> {
        (0..n)
            .map(|i| {
                (
                    ClientId::new(&format!("c{i}")).unwrap(),
                    MessageId(i as u64 + 1),
                )
            })
            .collect()
    }

    fn receipt(
        push: PushId,
        copy: &(ClientId, MessageId),
        slot: u8,
        kind: ReceiptKind,
        at: u64,
    ) -> Receipt {
        Receipt {
            push,
            client: copy.0.clone(),
            id: copy.1,
            slot: Slot::new(i64::from(slot)).unwrap(),
            kind,
            at_ms: at,
        }
    }

    #[test]
    fn receipts_are_kept_per_copy_and_slot_in_small_and_large_pushes() {
        use crate::receipts::CopyState;
        use ReceiptKind::{Acked, Delivered};
        let mut ids = crate::PushIds::new(1);
        for n in [1, SCAN, SCAN + 1, 10_000] {
            let (push, all) = (ids.next(n as u64), copies(n));
            let mut book = PushBook::default();
            book.stored(push, 0, 1_000, all.clone());
            for (i, copy) in all.iter().enumerate() {
                let at = 10 + i as u64;
                assert!(book.receipt(&receipt(push, copy, 0, Delivered, at)));
                // A later time changes nothing; an earlier one wins.
                assert!(!book.receipt(&receipt(push, copy, 0, Delivered, at + 5)));
                assert!(book.receipt(&receipt(push, copy, 0, Delivered, at - 1)));
                if i % 2 == 0 {
                    assert!(book.receipt(&receipt(push, copy, 0, Acked, at + 100)));
                }
            }
            // Another slot: only the last copy, acknowledged.
            let last = all.last().unwrap();
            assert!(book.receipt(&receipt(push, last, 3, Acked, 7)));
            // A copy the push does not have, and an unknown push: ignored.
            let stranger = (ClientId::new("stranger").unwrap(), MessageId(1));
            assert!(!book.receipt(&receipt(push, &stranger, 0, Acked, 1)));
            assert!(!book.receipt(&receipt(ids.next(99_999), last, 0, Acked, 1)));

            let kept = |_: &ClientId, _| CopyFacts {
                kept: true,
                acked: 0,
            };
            let status = book.status(push, Slot::default(), kept).unwrap();
            for (i, c) in status.copies.iter().enumerate() {
                assert_eq!((&c.client, c.id), (&all[i].0, all[i].1));
                assert_eq!(c.delivered_at, Some(9 + i as u64));
                let acked = i % 2 == 0;
                assert_eq!(c.acked_at, acked.then_some(110 + i as u64));
                let state = if acked {
                    CopyState::Acked
                } else {
                    CopyState::Delivered
                };
                assert_eq!(c.state, state, "copy {i} of {n}");
            }
            let slot3 = book.status(push, Slot::new(3).unwrap(), kept).unwrap();
            assert_eq!(slot3.copies.last().unwrap().acked_at, Some(7));
            assert_eq!(slot3.copies[0].delivered_at, None);

            // Compaction writes every receipt back; a replay of them gives the same book.
            let mut again = PushBook::default();
            again.stored(push, 0, 1_000, all.clone());
            for r in book.records[&push].receipts(push) {
                assert!(again.receipt(&r));
            }
            assert_eq!(again.status(push, Slot::default(), kept), Some(status));

            // A recall counts as acknowledged what some slot acknowledged.
            let (report, _) = book.recall(push, kept).unwrap();
            let acked = n.div_ceil(2) + usize::from(n % 2 == 0);
            assert_eq!(report.already_acked as usize, acked, "{n} copies");
            assert_eq!((report.recalled + report.already_acked) as usize, n);
        }
    }

    #[test]
    fn a_book_forgets_its_oldest_pushes_beyond_its_bound() {
        let mut ids = crate::PushIds::new(1);
        let mut book = PushBook::with_max_copies(25);
        let pushes: Vec<PushId> = (0..4).map(|t| ids.next(t)).collect();
        for p in &pushes {
            book.stored(*p, 0, 1_000, copies(10));
        }
        // 40 copies asked, 25 allowed: the two oldest pushes are forgotten.
        let kept: Vec<PushId> = book.records.keys().copied().collect();
        assert_eq!(kept, pushes[2..]);
        assert_eq!(book.forgotten(), 2);
        let facts = |_: &ClientId, _| CopyFacts::default();
        assert!(book.status(pushes[0], Slot::default(), facts).is_none());
        assert!(book.recall(pushes[1], facts).is_none());
        // A push larger than the bound is still kept, alone.
        let big = ids.next(10);
        book.stored(big, 0, 1_000, copies(30));
        assert_eq!(book.records.keys().copied().collect::<Vec<_>>(), vec![big]);
        // A purge counts what it forgets.
        book.purge(1_000 + millis(PUSH_RECORD_GRACE));
        assert!(book.records.is_empty());
        book.stored(ids.next(11), 0, 1_000, copies(25));
        assert_eq!(book.records.len(), 1);
    }

    #[test]
    fn expired_pushes_are_listed_by_expiry_until_reported() {
        let mut ids = crate::PushIds::new(2);
        let mut book = PushBook::with_max_copies(25);
        let (a, b, c) = (ids.next(1), ids.next(2), ids.next(3));
        book.stored(a, 0, 3_000, copies(5));
        book.stored(b, 0, 1_000, copies(5));
        book.stored(c, 0, 2_000, copies(5));
        assert!(book.expired_unreported(999, 10).is_empty());
        assert_eq!(book.expired_unreported(2_000, 10), vec![b, c]);
        assert_eq!(book.expired_unreported(5_000, 2), vec![b, c]);
        assert!(book.expiry_reported(b));
        assert!(!book.expiry_reported(b), "a repeat changes nothing");
        assert!(book.is_expiry_reported(&b) && !book.is_expiry_reported(&c));
        assert_eq!(book.expired_unreported(5_000, 10), vec![c, a]);
        // Forgotten records leave the list: beyond the bound (the oldest push, a), and by a
        // purge (c).
        let d = ids.next(4);
        book.stored(d, 0, 9_000, copies(15));
        assert_eq!(book.expired_unreported(5_000, 10), vec![c]);
        assert!(!book.expiry_reported(a), "a forgotten push is unknown");
        book.purge(3_000 + millis(PUSH_RECORD_GRACE));
        assert_eq!(book.expired_unreported(u64::MAX, 10), vec![d]);
    }

    #[test]
    fn the_oldest_idempotency_keys_are_forgotten_beyond_the_bound() {
        let mut t = IdempotencyTable::with_max_keys(20);
        for n in 0..21u64 {
            let key = format!("k{n:02}");
            assert_eq!(
                t.claim(&key, [1; 32], n, TIMES).0,
                IdempotencyClaim::Claimed
            );
            assert!(t.finish(&key, "answer"));
        }
        // 21 keys, 20 allowed: down to 18, the three oldest gone.
        assert_eq!(t.claims.len(), 18);
        assert_eq!(t.claims.keys().next().map(String::as_str), Some("k03"));
        assert_eq!(
            t.claim("k00", [2; 32], 30, TIMES).0,
            IdempotencyClaim::Claimed
        );
        let replay = IdempotencyClaim::Replay("answer".into());
        assert_eq!(t.claim("k20", [1; 32], 30, TIMES).0, replay);
        // Many claims taken in the same millisecond: exactly the excess goes.
        let mut same = IdempotencyTable::with_max_keys(10);
        for n in 0..11 {
            same.claim(&format!("s{n}"), [1; 32], 5, TIMES);
        }
        assert_eq!(same.claims.len(), 9);
    }
}
