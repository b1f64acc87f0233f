//! [`OutboxIndex`]: the webhook outbox's rules in memory, shared by the stores that keep the
//! outbox in their own process ([`MemoryStore`](crate::MemoryStore), the embedded store, which
//! adds its log for durability).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::webhook::{Event, EventId, OutboxAdded, OutboxEntry, OutboxStats};

/// One waiting event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Waiting {
    /// The event.
    event: Event,
    /// Failed attempts so far.
    attempts: u32,
    /// When it is due (Unix ms): the next attempt, or the end of its lease.
    next_ms: u64,
}

/// The outbox's events with their schedule: due order and age order kept as indexes, so
/// that a lease and the stats cost a logarithm, not a scan.
#[derive(Debug, Default)]
pub struct OutboxIndex {
    /// Every waiting event by id.
    events: HashMap<EventId, Waiting>,
    /// `(next_ms, id)` of every event: the due order.
    due: BTreeSet<(u64, EventId)>,
    /// `(ts, id)` of every event: the age order.
    age: BTreeSet<(u64, EventId)>,
}

impl OutboxIndex {
    /// An empty outbox.
    pub fn new() -> OutboxIndex {
        OutboxIndex::default()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether `id` waits.
    pub fn contains(&self, id: &EventId) -> bool {
        self.events.contains_key(id)
    }

    /// Puts `event` in with its schedule, unless its id is already there; says whether it was
    /// put in. No bound: for replaying a log.
    pub fn insert(&mut self, event: Event, attempts: u32, next_ms: u64) -> bool {
        if self.events.contains_key(&event.id) {
            return false;
        }
        self.due.insert((next_ms, event.id.clone()));
        self.age.insert((event.ts, event.id.clone()));
        self.events.insert(
            event.id.clone(),
            Waiting {
                event,
                attempts,
                next_ms,
            },
        );
        true
    }

    /// [`MessageStore::outbox_add`](crate::MessageStore::outbox_add): returns the counts and
    /// the positions in `events` of those put in.
    pub fn add(&mut self, events: &[Event], max: u64) -> (OutboxAdded, Vec<usize>) {
        let mut out = OutboxAdded::default();
        let mut put = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            if self.events.contains_key(&ev.id) {
                out.duplicates += 1;
            } else if self.events.len() as u64 >= max {
                out.dropped += 1;
            } else {
                self.insert(ev.clone(), 0, 0);
                out.added += 1;
                put.push(i);
            }
        }
        (out, put)
    }

    /// Reschedules `id` at `next_ms` with `attempts`; false when it is not there.
    fn schedule(&mut self, id: &EventId, attempts: u32, next_ms: u64) -> bool {
        let Some(w) = self.events.get_mut(id) else {
            return false;
        };
        self.due.remove(&(w.next_ms, id.clone()));
        w.next_ms = next_ms;
        w.attempts = attempts;
        self.due.insert((next_ms, id.clone()));
        true
    }

    /// [`MessageStore::outbox_lease`](crate::MessageStore::outbox_lease) in one process: the
    /// leased events are due again at `now_ms + lease`.
    pub fn lease(&mut self, now_ms: u64, limit: usize, lease: Duration) -> Vec<OutboxEntry> {
        let until = now_ms.saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
        let ids: Vec<EventId> = self
            .due
            .iter()
            .take_while(|(next, _)| *next <= now_ms)
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(w) = self.events.get(&id) {
                let (event, attempts) = (w.event.clone(), w.attempts);
                self.schedule(&id, attempts, until);
                out.push(OutboxEntry { event, attempts });
            }
        }
        out
    }

    /// Removes `ids`; returns those that were there.
    pub fn done(&mut self, ids: &[EventId]) -> Vec<EventId> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(w) = self.events.remove(id) {
                self.due.remove(&(w.next_ms, id.clone()));
                self.age.remove(&(w.event.ts, id.clone()));
                out.push(id.clone());
            }
        }
        out
    }

    /// Makes `ids` due at `next_ms` with one more attempt; returns those that were there.
    pub fn retry(&mut self, ids: &[EventId], next_ms: u64) -> Vec<EventId> {
        let mut out = Vec::new();
        for id in ids {
            let attempts = self.events.get(id).map(|w| w.attempts.saturating_add(1));
            if let Some(attempts) = attempts {
                self.schedule(id, attempts, next_ms);
                out.push(id.clone());
            }
        }
        out
    }

    /// Depth and oldest time.
    pub fn stats(&self) -> OutboxStats {
        OutboxStats {
            depth: self.events.len() as u64,
            oldest_ts: self.age.first().map(|(ts, _)| *ts),
        }
    }

    /// Every waiting event with its attempts and next time, in no particular order (for a
    /// compaction).
    pub fn iter(&self) -> impl Iterator<Item = (&Event, u32, u64)> {
        self.events
            .values()
            .map(|w| (&w.event, w.attempts, w.next_ms))
    }
}
