//! The in-memory index of the log: every client's queue as a list of small entries, and every
//! push whose body is still needed, by its place in the log.
//!
//! Nothing here does I/O: the store thread decides what to write, this keeps the state that
//! the log's records describe, so replaying the log rebuilds it exactly.

use std::collections::{HashMap, VecDeque};

use herald_core::books::{CopyFacts, IdempotencyTable, PushBook};
use herald_core::{ClientId, MessageId, PushId, Slot, SlotBacklog};

/// One copy of a push in one queue: 40 bytes, the body stays in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its id in the queue.
    pub id: u64,
    /// Its store time; never lower than the previous entry's.
    pub ts: u64,
    /// Expired when `now >= expires`.
    pub expires: u64,
    /// The push it is a copy of (a key of [`Queues::pushes`]).
    pub push: u64,
    /// Slots that acknowledged it.
    pub acked: u16,
    /// Its push was recalled: no slot reads it as unacknowledged any more (fits in the
    /// padding: the entry stays 40 bytes).
    pub recalled: bool,
}

/// One client's queue.
#[derive(Debug)]
pub struct Queue {
    /// The client.
    pub client: ClientId,
    /// The last id handed out; ids are never reused, even when every entry is gone.
    pub last: u64,
    /// The entries still kept, by increasing id.
    pub entries: VecDeque<Entry>,
    /// Ranges of ids (`from..=to`) a floor skipped above kept entries: they are not messages,
    /// so the cap does not count them. Empty but after a lost record; a range goes when no
    /// entry is left below it.
    pub skipped: Vec<(u64, u64)>,
    /// The slots that read or acknowledged this queue since the store opened (acknowledgements
    /// replayed from the log count), each with the highest id it acknowledged (0: none), for
    /// the client view. Usually empty or one or two.
    pub slots: Vec<(u8, u64)>,
}

/// Where a push's body is, and how many entries still refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push {
    /// Byte position of the body in the log file.
    pub body_at: u64,
    /// Its length.
    pub body_len: u32,
    /// Entries referring to it; the push is forgotten when none is left.
    pub copies: u32,
}

/// Every queue and every push still referred to.
#[derive(Debug, Default)]
pub struct Queues {
    /// Client → position in `queues`.
    index: HashMap<ClientId, usize>,
    /// The queues, in the order their clients first got a message (never removed: a client's
    /// last id must outlive its messages).
    pub queues: Vec<Queue>,
    /// Live pushes by number.
    pub pushes: HashMap<u64, Push>,
    /// The next push number.
    next_push: u64,
    /// Entries in all queues.
    pub entries: u64,
    /// Sum of the live pushes' body lengths.
    pub body_bytes: u64,
    /// No queue hands out an id at or below this: a queue first seen starts here (see
    /// [`Queues::raise_floor`]).
    pub floor: u64,
    /// The highest id of any queue, and the floor: what the high-water mark must cover.
    pub high: u64,
    /// Push records, receipts and recalls (issue 14).
    pub books: PushBook,
    /// Idempotency claims.
    pub claims: IdempotencyTable,
}

impl Queue {
    /// `slot` read this queue, or acknowledged up to `acked` (0: a read).
    fn saw(&mut self, slot: Slot, acked: u64) {
        match self.slots.iter_mut().find(|(n, _)| *n == slot.get()) {
            Some((_, high)) => *high = (*high).max(acked),
            None => self.slots.push((slot.get(), acked)),
        }
    }
}

impl Queues {
    /// The queue of `client`, if it ever got a message.
    pub fn get(&self, client: &ClientId) -> Option<&Queue> {
        self.index.get(client).map(|&i| &self.queues[i])
    }

    /// The position of `client`'s queue, created empty if needed.
    fn position(&mut self, client: &ClientId) -> usize {
        if let Some(&i) = self.index.get(client) {
            return i;
        }
        let i = self.queues.len();
        self.queues.push(Queue {
            client: client.clone(),
            last: self.floor,
            entries: VecDeque::new(),
            skipped: Vec::new(),
            slots: Vec::new(),
        });
        self.index.insert(client.clone(), i);
        i
    }

    /// Registers a push whose body is at `body_at` in the log; returns its number.
    pub fn new_push(&mut self, body_at: u64, body_len: u32) -> u64 {
        let n = self.next_push;
        self.next_push += 1;
        self.pushes.insert(
            n,
            Push {
                body_at,
                body_len,
                copies: 0,
            },
        );
        self.body_bytes += u64::from(body_len);
        n
    }

    /// Forgets a push when `entries` removed its last copies.
    fn release(&mut self, removed: impl IntoIterator<Item = u64>) {
        for push in removed {
            self.entries -= 1;
            if let Some(p) = self.pushes.get_mut(&push) {
                p.copies -= 1;
                if p.copies == 0 {
                    self.body_bytes -= u64::from(p.body_len);
                    self.pushes.remove(&push);
                }
            }
        }
    }

    /// Forgets a push that got no copy (every recipient's entry failed to be kept).
    pub fn forget_if_unused(&mut self, push: u64) {
        if let Some(p) = self.pushes.get(&push)
            && p.copies == 0
        {
            self.body_bytes -= u64::from(p.body_len);
            self.pushes.remove(&push);
        }
    }

    /// Appends a copy of `push` to `client`'s queue with the next id, at `now_ms` or, if the
    /// clock went back, the previous entry's time; then drops what falls beyond `cap`.
    ///
    /// Returns the id, the store time and how many entries the cap dropped.
    pub fn append(
        &mut self,
        client: &ClientId,
        push: u64,
        expires: u64,
        now_ms: u64,
        cap: u64,
    ) -> (MessageId, u64, u64) {
        let i = self.position(client);
        let q = &mut self.queues[i];
        q.last += 1;
        let id = q.last;
        self.high = self.high.max(id);
        let ts = q.entries.back().map_or(now_ms, |e| e.ts.max(now_ms));
        q.entries.push_back(Entry {
            id,
            ts,
            expires,
            push,
            acked: 0,
            recalled: false,
        });
        self.entries += 1;
        if let Some(p) = self.pushes.get_mut(&push) {
            p.copies += 1;
        }
        let capped = self.trim(i, cap);
        (MessageId(id), ts, capped)
    }

    /// Puts back a copy read from the log (replay), kept when it continues the queue;
    /// returns the queue's position (for [`Queues::trim`]).
    pub fn restore(&mut self, client: &ClientId, push: u64, entry: Entry) -> usize {
        let i = self.position(client);
        let q = &mut self.queues[i];
        q.last = q.last.max(entry.id);
        self.high = self.high.max(q.last);
        if q.entries.back().is_some_and(|e| e.id >= entry.id) {
            return i;
        }
        q.entries.push_back(Entry { push, ..entry });
        self.entries += 1;
        if let Some(p) = self.pushes.get_mut(&push) {
            p.copies += 1;
        }
        i
    }

    /// Raises `client`'s last id to `last` (replay of a compacted log).
    pub fn set_last(&mut self, client: &ClientId, last: MessageId) {
        let i = self.position(client);
        let q = &mut self.queues[i];
        q.last = q.last.max(last.0);
        self.high = self.high.max(q.last);
    }

    /// Raises every queue's last id to `floor`, and the start of every queue seen later:
    /// after records were lost, no id they may have handed out is handed out again. The ids a
    /// queue with kept entries skips are remembered, so that the cap does not count them.
    pub fn raise_floor(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
        self.high = self.high.max(floor);
        for q in &mut self.queues {
            if q.last < floor {
                if !q.entries.is_empty() {
                    q.skipped.push((q.last + 1, floor));
                }
                q.last = floor;
            }
        }
    }

    /// Records that ids `from..=to` of `client` were skipped (replay of a compacted log).
    pub fn add_skipped(&mut self, client: &ClientId, from: u64, to: u64) {
        let i = self.position(client);
        let q = &mut self.queues[i];
        q.skipped.push((from, to));
        q.last = q.last.max(to);
        self.high = self.high.max(q.last);
    }

    /// Drops the entries of queue `i` at or below `last - cap`, not counting ids a floor
    /// skipped; returns how many.
    pub fn trim(&mut self, i: usize, cap: u64) -> u64 {
        let q = &mut self.queues[i];
        let mut removed = Vec::new();
        while let Some(e) = q.entries.front() {
            let skipped: u64 = q
                .skipped
                .iter()
                .filter(|(from, _)| *from > e.id)
                .map(|(from, to)| to - from + 1)
                .sum();
            if e.id > q.last.saturating_sub(skipped).saturating_sub(cap) {
                break;
            }
            removed.push(e.push);
            q.entries.pop_front();
        }
        if !q.skipped.is_empty() {
            // A range below every kept entry no longer separates two of them.
            let first = q.entries.front().map_or(u64::MAX, |e| e.id);
            q.skipped.retain(|(from, _)| *from > first);
        }
        let n = removed.len() as u64;
        self.release(removed);
        n
    }

    /// [`Queues::trim`] for every queue.
    pub fn trim_all(&mut self, cap: u64) -> u64 {
        (0..self.queues.len()).map(|i| self.trim(i, cap)).sum()
    }

    /// Drops the expired entries (at `now_ms`) of queues `range`; returns how many.
    pub fn expire(&mut self, range: std::ops::Range<usize>, now_ms: u64) -> u64 {
        let mut removed = Vec::new();
        for q in &mut self.queues[range] {
            if q.entries.iter().all(|e| now_ms < e.expires) {
                continue;
            }
            q.entries.retain(|e| {
                let keep = now_ms < e.expires;
                if !keep {
                    removed.push(e.push);
                }
                keep
            });
        }
        let n = removed.len() as u64;
        self.release(removed);
        n
    }

    /// Marks `ids` of `client` acknowledged by `slot`; returns the ids that exist and were
    /// not acknowledged by it yet, in increasing order.
    pub fn ack(&mut self, client: &ClientId, slot: Slot, ids: &[MessageId]) -> Vec<MessageId> {
        let Some(&i) = self.index.get(client) else {
            return Vec::new();
        };
        if let Some(&high) = ids.iter().max() {
            self.queues[i].saw(slot, high.0);
        }
        let entries = &mut self.queues[i].entries;
        let mut ids: Vec<u64> = ids.iter().map(|m| m.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut changed = Vec::new();
        // Both lists are sorted: one pass from the first entry at or above the first id.
        let mut at = entries.partition_point(|e| e.id < ids.first().copied().unwrap_or(0));
        for id in ids {
            while at < entries.len() && entries[at].id < id {
                at += 1;
            }
            if let Some(e) = entries.get_mut(at)
                && e.id == id
                && e.acked & slot.bit() == 0
            {
                e.acked |= slot.bit();
                changed.push(MessageId(id));
            }
        }
        changed
    }

    /// `slot` read the queue of `client` (if it has one): it shows in [`Queues::slots`].
    pub fn seen(&mut self, client: &ClientId, slot: Slot) {
        if let Some(&i) = self.index.get(client) {
            self.queues[i].saw(slot, 0);
        }
    }

    /// The backlog of every slot that read or acknowledged `client`'s queue, and of those in
    /// `also`, by increasing slot, at `now_ms`.
    pub fn slots(&self, client: &ClientId, also: &[Slot], now_ms: u64) -> Vec<SlotBacklog> {
        let q = self.get(client);
        let mut known: Vec<(u8, u64)> = q.map(|q| q.slots.clone()).unwrap_or_default();
        for slot in also {
            if !known.iter().any(|(n, _)| *n == slot.get()) {
                known.push((slot.get(), 0));
            }
        }
        known.sort_unstable();
        known
            .into_iter()
            .filter_map(|(n, high)| {
                let slot = Slot::new(i64::from(n)).ok()?;
                let entries = q.into_iter().flat_map(|q| q.entries.iter());
                let (mut unacked, mut oldest, mut last) = (0, None, high);
                for e in entries {
                    if e.acked & slot.bit() != 0 {
                        last = last.max(e.id);
                    } else if now_ms < e.expires && !e.recalled {
                        unacked += 1;
                        oldest.get_or_insert(e.ts);
                    }
                }
                Some(SlotBacklog {
                    slot,
                    unacked,
                    oldest_unacked_ts: oldest,
                    last_acked: (last > 0).then_some(MessageId(last)),
                })
            })
            .collect()
    }

    /// The log bytes this index needs, by estimate (for the garbage estimate that decides
    /// compaction): the live bodies, a copy's client, id, time and acknowledgements for each
    /// entry and each client's last id, a push record's own fields.
    pub fn live_bytes(&self) -> u64 {
        /// Estimated log bytes of one kept copy, or of one client's last id.
        const COPY_BYTES: u64 = 40;
        /// Estimated log bytes of a push record besides its body and copies.
        const PUSH_BYTES: u64 = 25;
        self.body_bytes
            + self.entries * COPY_BYTES
            + (self.pushes.len() as u64) * PUSH_BYTES
            + (self.queues.len() as u64) * COPY_BYTES
    }

    /// Up to `limit` entries of `client` after `after`, not acknowledged by `slot` and not
    /// expired at `now_ms`, oldest first.
    pub fn unacked(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> Vec<Entry> {
        self.scan(
            client,
            |e| e.id <= after.0,
            |e| e.acked & slot.bit() == 0 && now_ms < e.expires && !e.recalled,
            limit,
        )
    }

    /// What the index knows of copy `id` of `client` at `now_ms`.
    pub fn facts(&self, client: &ClientId, id: MessageId, now_ms: u64) -> CopyFacts {
        let Some(q) = self.get(client) else {
            return CopyFacts::default();
        };
        let at = q.entries.partition_point(|e| e.id < id.0);
        match q.entries.get(at) {
            Some(e) if e.id == id.0 => CopyFacts {
                kept: now_ms < e.expires,
                acked: e.acked,
            },
            _ => CopyFacts::default(),
        }
    }

    /// Marks every kept copy of `push` recalled.
    pub fn mark_recalled(&mut self, push: PushId) {
        let Some(rec) = self.books.records.get(&push) else {
            return;
        };
        for (client, id) in &rec.copies {
            let Some(&i) = self.index.get(client) else {
                continue;
            };
            let entries = &mut self.queues[i].entries;
            let at = entries.partition_point(|e| e.id < id.0);
            if let Some(e) = entries.get_mut(at).filter(|e| e.id == id.0) {
                e.recalled = true;
            }
        }
    }

    /// Up to `limit` entries of `client` stored at or after `since_ms` and not expired at
    /// `now_ms`, oldest first (store times grow with ids, so the start is a binary search).
    pub fn history(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> Vec<Entry> {
        self.scan(client, |e| e.ts < since_ms, |e| now_ms < e.expires, limit)
    }

    /// Up to `limit` entries of `client` that `keep`, from the first that is not `before` (a
    /// prefix of the queue, found by binary search).
    fn scan(
        &self,
        client: &ClientId,
        before: impl Fn(&Entry) -> bool,
        keep: impl Fn(&Entry) -> bool,
        limit: usize,
    ) -> Vec<Entry> {
        let Some(q) = self.get(client) else {
            return Vec::new();
        };
        let from = q.entries.partition_point(before);
        q.entries
            .range(from..)
            .filter(|e| keep(e))
            .take(limit)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    #[test]
    fn pushes_are_forgotten_with_their_last_copy() {
        let mut q = Queues::default();
        let (a, b) = (cid("a"), cid("b"));
        let p = q.new_push(100, 10);
        assert_eq!(q.append(&a, p, 50, 1, 2), (MessageId(1), 1, 0));
        assert_eq!(q.append(&b, p, 50, 1, 2), (MessageId(1), 1, 0));
        let p2 = q.new_push(200, 5);
        q.append(&a, p2, 90, 2, 2);
        assert_eq!((q.entries, q.body_bytes), (3, 15));
        // The cap drops a's first copy; b still holds push p.
        let p3 = q.new_push(300, 1);
        assert_eq!(q.append(&a, p3, 90, 3, 2).2, 1);
        assert!(q.pushes.contains_key(&p));
        // Expiry at 50 drops b's copy: p is gone.
        assert_eq!(q.expire(0..2, 50), 1);
        assert!(!q.pushes.contains_key(&p));
        assert_eq!((q.entries, q.body_bytes), (2, 6));
        // Ids go on after the queue emptied.
        assert_eq!(q.expire(0..2, 90), 2);
        assert_eq!(q.entries, 0);
        let p4 = q.new_push(400, 1);
        assert_eq!(q.append(&a, p4, 900, 4, 2).0, MessageId(4));
    }

    #[test]
    fn ids_a_floor_skipped_are_not_counted_by_the_cap() {
        let mut q = Queues::default();
        let (a, b) = (cid("a"), cid("b"));
        for _ in 0..3 {
            let p = q.new_push(0, 1);
            q.append(&a, p, u64::MAX, 1, 3);
        }
        q.raise_floor(1000);
        assert_eq!(q.high, 1000);
        // a's next id is above the floor, and its three kept messages stay within the cap of
        // three until two more come: the skipped ids 4..=1000 are not messages.
        let p = q.new_push(0, 1);
        assert_eq!(q.append(&a, p, u64::MAX, 1, 4).0, MessageId(1001));
        let ids =
            |q: &Queues| -> Vec<u64> { q.history(&a, 0, 10, 0).iter().map(|e| e.id).collect() };
        assert_eq!(ids(&q), [1, 2, 3, 1001]);
        let p = q.new_push(0, 1);
        assert_eq!(q.append(&a, p, u64::MAX, 1, 3).2, 2);
        assert_eq!(ids(&q), [3, 1001, 1002]);
        let p = q.new_push(0, 1);
        q.append(&a, p, u64::MAX, 1, 3);
        assert_eq!(ids(&q), [1001, 1002, 1003]);
        assert!(
            q.queues[0].skipped.is_empty(),
            "the range is below every entry"
        );
        // A client first seen after the floor starts above it.
        let p = q.new_push(0, 1);
        assert_eq!(q.append(&b, p, u64::MAX, 1, 3).0, MessageId(1001));
    }

    #[test]
    fn store_times_never_go_back_and_acks_change_only_existing_ids() {
        let mut q = Queues::default();
        let a = cid("a");
        let s = Slot::new(2).unwrap();
        for now in [10, 5, 20] {
            let p = q.new_push(0, 1);
            q.append(&a, p, u64::MAX, now, 100);
        }
        let ts: Vec<u64> = q.history(&a, 0, 10, 0).iter().map(|e| e.ts).collect();
        assert_eq!(ts, [10, 10, 20]);
        assert_eq!(
            q.ack(
                &a,
                s,
                &[MessageId(3), MessageId(9), MessageId(1), MessageId(3)]
            ),
            [MessageId(1), MessageId(3)]
        );
        assert_eq!(q.ack(&a, s, &[MessageId(1)]), []);
        assert_eq!(q.ack(&cid("nobody"), s, &[MessageId(1)]), []);
        let left: Vec<u64> = q
            .unacked(&a, s, MessageId::ZERO, 10, 0)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, [2]);
        let other: Vec<u64> = q
            .unacked(&a, Slot::default(), MessageId(1), 10, 0)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(other, [2, 3]);
    }
}
