//! The [`MemoryStore`]: per-client queues, the webhook outbox and the push books in memory.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{lock, receipts};
use crate::ids::{ClientId, MessageId, NodeId, Slot};
use crate::message::{Message, NewMessage};
use crate::outbox::OutboxIndex;
use crate::ports::{
    AppendResult, MessageStore, Retention, RetentionReport, SlotBacklog, StoreError,
};
use crate::push_id::PushId;
use crate::receipts::{IdempotencyClaim, IdempotencyTimes, PushStatus, RecallReport, Receipt};
use crate::webhook::{Event, EventId, OutboxAdded, OutboxEntry, OutboxStats};

/// One stored message with its bookkeeping.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    message: Message,
    /// Bit `slot` set = acknowledged by that slot.
    pub(super) acked: u16,
    /// Unix milliseconds after which the message is gone.
    pub(super) expires_ms: u64,
    /// Recalled: no slot reads it as unacknowledged any more.
    pub(super) recalled: bool,
}

/// One client's queue.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// The last id given (ids are never reused, even after retention drops messages).
    last: u64,
    /// Messages by id.
    pub(super) messages: BTreeMap<u64, Stored>,
    /// Per slot that read or acknowledged this queue: the highest id it acknowledged (0: none).
    slots: BTreeMap<u8, u64>,
}

/// A [`MessageStore`] in memory: not durable, for tests, the simulation and the contract suite.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    pub(super) inner: Arc<StoreInner>,
}

#[derive(Debug)]
pub(super) struct StoreInner {
    retention: Retention,
    down: AtomicBool,
    /// Messages dropped by the cap at append time, not yet reported by a purge.
    capped_eagerly: AtomicU64,
    pub(super) queues: Mutex<HashMap<ClientId, Queue>>,
    /// Push records and idempotency claims (locked after `queues` when both are).
    pub(super) books: Mutex<receipts::Books>,
    /// The webhook outbox.
    outbox: Mutex<OutboxIndex>,
}

impl MemoryStore {
    /// An empty store keeping messages per `retention`.
    pub fn new(retention: Retention) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(StoreInner {
                retention,
                down: AtomicBool::new(false),
                capped_eagerly: AtomicU64::new(0),
                queues: Mutex::new(HashMap::new()),
                books: Mutex::new(receipts::Books::default()),
                outbox: Mutex::new(OutboxIndex::new()),
            }),
        }
    }

    /// While `down`, every call fails with [`StoreError::Unavailable`] and changes nothing.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Whether the store is switched down.
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::SeqCst)
    }

    pub(super) fn check_up(&self) -> Result<(), StoreError> {
        if self.is_down() {
            Err(StoreError::Unavailable("memory store switched down".into()))
        } else {
            Ok(())
        }
    }

    fn append_now(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> Result<AppendResult, StoreError> {
        self.check_up()?;
        let ttl = msg.ttl.unwrap_or(self.inner.retention.ttl);
        let expires_ms = now_ms.saturating_add(ttl.as_millis().min(u128::from(u64::MAX)) as u64);
        let cap = self.inner.retention.cap;
        let mut queues = lock(&self.inner.queues);
        let mut out = Vec::with_capacity(recipients.len());
        for client in recipients {
            let q = queues.entry(client.clone()).or_default();
            q.last += 1;
            let id = MessageId(q.last);
            q.messages.insert(
                q.last,
                Stored {
                    message: msg.to_message(id, now_ms),
                    acked: 0,
                    expires_ms,
                    recalled: false,
                },
            );
            // Enforce the cap eagerly once it is exceeded by a tenth (amortized).
            if q.messages.len() as u64 > cap + cap / 10 {
                let floor = q.last.saturating_sub(cap);
                let before = q.messages.len();
                q.messages.retain(|i, _| *i > floor);
                let dropped = (before - q.messages.len()) as u64;
                self.inner
                    .capped_eagerly
                    .fetch_add(dropped, Ordering::Relaxed);
            }
            out.push(Ok(id));
        }
        if let Some(push) = msg.push {
            let copies = recipients
                .iter()
                .zip(&out)
                .filter_map(|(c, r)| r.as_ref().ok().map(|id| (c.clone(), *id)))
                .collect();
            lock(&self.inner.books).stored(push, now_ms, expires_ms, copies);
        }
        Ok(out)
    }

    fn unacked_now(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Message>, StoreError> {
        self.check_up()?;
        let mut queues = lock(&self.inner.queues);
        let Some(q) = queues.get_mut(client) else {
            return Ok(Vec::new());
        };
        q.slots.entry(slot.get()).or_default();
        Ok(q.messages
            .range(after.0.saturating_add(1)..)
            .map(|(_, s)| s)
            .filter(|s| s.acked & slot.bit() == 0 && s.expires_ms > now_ms && !s.recalled)
            .take(limit)
            .map(|s| s.message.clone())
            .collect())
    }

    /// Acknowledges `ids`, and every message up to `through` (the store takes the session at
    /// its word, as a store recording only `through` would: the simulation checks the Hub's
    /// word against what was delivered).
    fn ack_now(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
        through: MessageId,
    ) -> Result<(), StoreError> {
        self.check_up()?;
        let mut queues = lock(&self.inner.queues);
        if let Some(q) = queues.get_mut(client) {
            // A recalled copy below `through` was skipped by the session, not acknowledged
            // (one it was handed before the recall comes with `ids`).
            let mut high = 0;
            for (i, s) in q.messages.range_mut(..=through.0) {
                if !s.recalled {
                    s.acked |= slot.bit();
                }
                high = *i;
            }
            for id in ids {
                if let Some(s) = q.messages.get_mut(&id.0) {
                    s.acked |= slot.bit();
                    high = high.max(id.0);
                }
            }
            let last = q.slots.entry(slot.get()).or_default();
            *last = (*last).max(high);
        }
        Ok(())
    }

    fn slots_now(
        &self,
        client: &ClientId,
        also: &[Slot],
        now_ms: u64,
    ) -> Result<Vec<SlotBacklog>, StoreError> {
        self.check_up()?;
        let queues = lock(&self.inner.queues);
        let q = queues.get(client);
        let mut known: BTreeMap<u8, u64> = q.map(|q| q.slots.clone()).unwrap_or_default();
        for slot in also {
            known.entry(slot.get()).or_default();
        }
        Ok(known
            .into_iter()
            .map(|(n, last)| {
                let slot = Slot::new(i64::from(n)).expect("a slot kept is in range");
                let mut unacked = q
                    .into_iter()
                    .flat_map(|q| q.messages.values())
                    .filter(|s| s.acked & slot.bit() == 0 && s.expires_ms > now_ms && !s.recalled);
                let oldest = unacked.next().map(|s| s.message.ts);
                SlotBacklog {
                    slot,
                    unacked: u64::from(oldest.is_some()) + unacked.count() as u64,
                    oldest_unacked_ts: oldest,
                    last_acked: (last > 0).then_some(MessageId(last)),
                }
            })
            .collect())
    }

    fn history_now(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Message>, StoreError> {
        self.check_up()?;
        let queues = lock(&self.inner.queues);
        let Some(q) = queues.get(client) else {
            return Ok(Vec::new());
        };
        Ok(q.messages
            .values()
            .filter(|s| s.message.ts >= since_ms && s.expires_ms > now_ms)
            .take(limit)
            .map(|s| s.message.clone())
            .collect())
    }

    fn purge_now(&self, now_ms: u64) -> Result<RetentionReport, StoreError> {
        self.check_up()?;
        let cap = self.inner.retention.cap;
        let mut report = RetentionReport {
            expired: 0,
            capped: self.inner.capped_eagerly.swap(0, Ordering::Relaxed),
        };
        let mut queues = lock(&self.inner.queues);
        for q in queues.values_mut() {
            let before = q.messages.len() as u64;
            q.messages.retain(|_, s| s.expires_ms > now_ms);
            report.expired += before - q.messages.len() as u64;
            let floor = q.last.saturating_sub(cap);
            let before = q.messages.len() as u64;
            q.messages.retain(|i, _| *i > floor);
            report.capped += before - q.messages.len() as u64;
        }
        queues.retain(|_, q| !q.messages.is_empty() || q.last > 0);
        drop(queues);
        lock(&self.inner.books).purge(now_ms);
        Ok(report)
    }
}

impl MessageStore for MemoryStore {
    fn append(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> impl Future<Output = Result<AppendResult, StoreError>> + Send {
        std::future::ready(self.append_now(msg, recipients, now_ms))
    }

    fn unacked(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send {
        std::future::ready(self.unacked_now(client, slot, after, limit, now_ms))
    }

    fn ack(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.ack_now(client, slot, ids, MessageId::ZERO))
    }

    fn ack_through(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
        through: MessageId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.ack_now(client, slot, ids, through))
    }

    fn history(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send {
        std::future::ready(self.history_now(client, since_ms, limit, now_ms))
    }

    fn purge(
        &self,
        now_ms: u64,
    ) -> impl Future<Output = Result<RetentionReport, StoreError>> + Send {
        std::future::ready(self.purge_now(now_ms))
    }

    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.check_up())
    }

    fn slots(
        &self,
        client: &ClientId,
        also: &[Slot],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<SlotBacklog>, StoreError>> + Send {
        std::future::ready(self.slots_now(client, also, now_ms))
    }

    // ---- Push receipts, status, recall and idempotency (memory/receipts.rs) ----

    fn record_receipts(
        &self,
        receipts: &[Receipt],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.record_receipts_now(receipts))
    }

    fn push_status(
        &self,
        push: PushId,
        slot: Slot,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<PushStatus>, StoreError>> + Send {
        std::future::ready(self.push_status_now(push, slot, now_ms))
    }

    fn recall(
        &self,
        push: PushId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<(RecallReport, Vec<ClientId>)>, StoreError>> + Send
    {
        std::future::ready(self.recall_now(push, now_ms))
    }

    fn expired_pushes(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PushId>, StoreError>> + Send {
        std::future::ready(self.expired_pushes_now(now_ms, limit))
    }

    fn expiry_reported(
        &self,
        pushes: &[PushId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.expiry_reported_now(pushes))
    }

    fn claim_idempotency(
        &self,
        key: &str,
        body_sha256: [u8; 32],
        now_ms: u64,
        times: IdempotencyTimes,
    ) -> impl Future<Output = Result<IdempotencyClaim, StoreError>> + Send {
        std::future::ready(
            self.check_up()
                .map(|()| lock(&self.inner.books).claim(key, body_sha256, now_ms, times)),
        )
    }

    fn finish_idempotency(
        &self,
        key: &str,
        answer: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(
            self.check_up()
                .map(|()| lock(&self.inner.books).finish(key, answer)),
        )
    }

    fn release_idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(
            self.check_up()
                .map(|()| lock(&self.inner.books).release(key)),
        )
    }

    fn outbox_add(
        &self,
        events: &[Event],
        max: u64,
    ) -> impl Future<Output = Result<OutboxAdded, StoreError>> + Send {
        std::future::ready(
            self.check_up()
                .map(|()| lock(&self.inner.outbox).add(events, max).0),
        )
    }

    fn outbox_lease(
        &self,
        now_ms: u64,
        limit: usize,
        lease: std::time::Duration,
        _node: &NodeId,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send {
        std::future::ready(
            self.check_up()
                .map(|()| lock(&self.inner.outbox).lease(now_ms, limit, lease)),
        )
    }

    fn outbox_done(&self, ids: &[EventId]) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.check_up().map(|()| {
            lock(&self.inner.outbox).done(ids);
        }))
    }

    fn outbox_retry(
        &self,
        ids: &[EventId],
        next_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.check_up().map(|()| {
            lock(&self.inner.outbox).retry(ids, next_ms);
        }))
    }

    fn outbox_stats(&self) -> impl Future<Output = Result<OutboxStats, StoreError>> + Send {
        std::future::ready(self.check_up().map(|()| lock(&self.inner.outbox).stats()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::now_or_never;
    use crate::message::Payload;

    fn c(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    fn msg(n: u32) -> NewMessage {
        NewMessage {
            from: "t".into(),
            channel: vec![],
            data: Payload::from_json(&n.to_string()).unwrap(),
            ttl: None,
            push: None,
        }
    }

    #[test]
    fn store_ids_acks_and_down_switch() {
        let s = MemoryStore::new(Retention::default());
        let ids = now_or_never(s.append(&msg(1), &[c("a"), c("b"), c("a")], 10)).unwrap();
        assert_eq!(
            ids,
            vec![Ok(MessageId(1)), Ok(MessageId(1)), Ok(MessageId(2))]
        );
        let slot0 = Slot::new(0).unwrap();
        now_or_never(s.ack(&c("a"), slot0, &[MessageId(1), MessageId(99)])).unwrap();
        let left = now_or_never(s.unacked(&c("a"), slot0, MessageId::ZERO, 10, 10)).unwrap();
        assert_eq!(
            left.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![MessageId(2)]
        );
        s.set_down(true);
        assert!(now_or_never(s.append(&msg(2), &[c("a")], 10)).is_err());
        assert!(now_or_never(s.ping()).is_err());
        s.set_down(false);
        let left = now_or_never(s.unacked(&c("a"), slot0, MessageId::ZERO, 10, 10)).unwrap();
        assert_eq!(left.len(), 1, "nothing changed while down");
    }

    #[test]
    fn store_retention() {
        let s = MemoryStore::new(Retention {
            cap: 3,
            ttl: Duration::from_secs(10),
        });
        for i in 0..5 {
            now_or_never(s.append(&msg(i), &[c("a")], 1_000)).unwrap();
        }
        let report = now_or_never(s.purge(1_000)).unwrap();
        assert_eq!(
            report,
            RetentionReport {
                expired: 0,
                capped: 2
            }
        );
        let h = now_or_never(s.history(&c("a"), 0, 100, 1_000)).unwrap();
        assert_eq!(h.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(
            now_or_never(s.history(&c("a"), 0, 100, 11_000))
                .unwrap()
                .is_empty()
        );
        let report = now_or_never(s.purge(11_000)).unwrap();
        assert_eq!(report.expired, 3);
        let ids = now_or_never(s.append(&msg(9), &[c("a")], 20_000)).unwrap();
        assert_eq!(ids, vec![Ok(MessageId(6))], "ids are never reused");
    }
}
