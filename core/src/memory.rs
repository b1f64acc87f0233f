//! In-memory implementations of the ports: [`MemoryStore`] and [`MemoryBroker`].
//!
//! They serve the single-node server (the broker), core's simulation and the contract suite.
//! Every future they return is ready at once, so a caller without a runtime can poll them once.
//! Both can be switched "down" to inject faults.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_core::Stream;

use crate::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use crate::message::{Message, NewMessage};
use crate::outbox::OutboxIndex;
use crate::ports::{
    AppendResult, Broker, BrokerError, BrokerEvent, BrokerEvents, MessageStore, OnlineSession,
    Retention, RetentionReport, SlotBacklog, StoreError,
};
use crate::push_id::PushId;
use crate::receipts::{IdempotencyClaim, IdempotencyTimes, PushStatus, RecallReport, Receipt};

mod receipts;
use crate::webhook::{Event, EventId, OutboxAdded, OutboxEntry, OutboxStats};

/// Locks `m`, recovering the data if another thread panicked while holding it (every update
/// here leaves the maps consistent at each step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One stored message with its bookkeeping.
#[derive(Debug, Clone)]
struct Stored {
    message: Message,
    /// Bit `slot` set = acknowledged by that slot.
    acked: u16,
    /// Unix milliseconds after which the message is gone.
    expires_ms: u64,
    /// Recalled: no slot reads it as unacknowledged any more.
    recalled: bool,
}

/// One client's queue.
#[derive(Debug, Default)]
struct Queue {
    /// The last id given (ids are never reused, even after retention drops messages).
    last: u64,
    /// Messages by id.
    messages: BTreeMap<u64, Stored>,
    /// Per slot that read or acknowledged this queue: the highest id it acknowledged (0: none).
    slots: BTreeMap<u8, u64>,
}

/// A [`MessageStore`] in memory: not durable, for tests, the simulation and the contract suite.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    retention: Retention,
    down: AtomicBool,
    /// Messages dropped by the cap at append time, not yet reported by a purge.
    capped_eagerly: AtomicU64,
    queues: Mutex<HashMap<ClientId, Queue>>,
    /// Push records and idempotency claims (locked after `queues` when both are).
    books: Mutex<receipts::Books>,
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

    fn check_up(&self) -> Result<(), StoreError> {
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

/// The shared bus of [`MemoryBrokerNode`]s: one per process for the single-node server, one
/// per simulated cluster in tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<BusInner>,
}

#[derive(Debug, Default)]
struct BusInner {
    down: AtomicBool,
    next_node: AtomicU64,
    state: Mutex<BusState>,
}

#[derive(Debug, Default)]
struct BusState {
    /// Per node: its subscriptions and its event queue.
    nodes: HashMap<u64, NodeState>,
    /// Per (client, slot): the last generation given.
    generations: HashMap<(ClientId, Slot), u64>,
    /// The registry of sessions online: per client and slot, the node handle that claimed it
    /// and the session (an entry of a dropped handle is a dead node's: not shown).
    online: HashMap<ClientId, BTreeMap<u8, (u64, OnlineSession)>>,
}

#[derive(Debug)]
struct NodeState {
    subscribed: HashSet<ClientId>,
    events: UnboundedSender<BrokerEvent>,
}

impl MemoryBroker {
    /// A bus with no node.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    /// A new node handle on this bus.
    pub fn node(&self) -> MemoryBrokerNode {
        let id = self.inner.next_node.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded();
        lock(&self.inner.state).nodes.insert(
            id,
            NodeState {
                subscribed: HashSet::new(),
                events: tx,
            },
        );
        MemoryBrokerNode {
            bus: self.clone(),
            id,
            events: Mutex::new(Some(rx)),
        }
    }

    /// While `down`, every call fails with [`BrokerError::Unavailable`]. Coming back up sends
    /// [`BrokerEvent::Resync`] to every node, as a reconnecting real broker would.
    pub fn set_down(&self, down: bool) {
        let was = self.inner.down.swap(down, Ordering::SeqCst);
        if was && !down {
            for node in lock(&self.inner.state).nodes.values() {
                let _ = node.events.unbounded_send(BrokerEvent::Resync);
            }
        }
    }

    /// Forgets every generation handed out, as a Redis restarted without persistence does:
    /// the next claim of each `(client, slot)` gets generation 1 again.
    pub fn forget_generations(&self) {
        lock(&self.inner.state).generations.clear();
    }

    fn check_up(&self) -> Result<(), BrokerError> {
        if self.inner.down.load(Ordering::SeqCst) {
            Err(BrokerError::Unavailable(
                "memory broker switched down".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Sends `event` to every node subscribed to `client`.
    fn fan_out(state: &BusState, client: &ClientId, event: &BrokerEvent) {
        for node in state.nodes.values() {
            if node.subscribed.contains(client) {
                let _ = node.events.unbounded_send(event.clone());
            }
        }
    }
}

/// One node's handle on a [`MemoryBroker`]. Dropping it removes the node's subscriptions, as a
/// crashed node's would vanish.
#[derive(Debug)]
pub struct MemoryBrokerNode {
    bus: MemoryBroker,
    id: u64,
    events: Mutex<Option<UnboundedReceiver<BrokerEvent>>>,
}

impl MemoryBrokerNode {
    fn with_node<T>(&self, f: impl FnOnce(&mut BusState) -> T) -> Result<T, BrokerError> {
        self.bus.check_up()?;
        Ok(f(&mut lock(&self.bus.inner.state)))
    }

    fn subscribe_now(&self, client: &ClientId) -> Result<(), BrokerError> {
        self.with_node(|s| {
            if let Some(n) = s.nodes.get_mut(&self.id) {
                n.subscribed.insert(client.clone());
            }
        })
    }

    fn unsubscribe_now(&self, client: &ClientId) -> Result<(), BrokerError> {
        self.with_node(|s| {
            if let Some(n) = s.nodes.get_mut(&self.id) {
                n.subscribed.remove(client);
            }
        })
    }

    fn notify_now(
        &self,
        client: &ClientId,
        last: MessageId,
        message: Option<&Message>,
    ) -> Result<(), BrokerError> {
        self.with_node(|s| {
            let event = BrokerEvent::Notify {
                client: client.clone(),
                last,
                message: message.cloned(),
            };
            MemoryBroker::fan_out(s, client, &event);
        })
    }

    fn claim_now(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        now_ms: Option<u64>,
    ) -> Result<Generation, BrokerError> {
        self.with_node(|s| {
            let g = s.generations.entry((client.clone(), slot)).or_insert(0);
            *g += 1;
            let generation = Generation(*g);
            if let Some(since_ms) = now_ms {
                let session = OnlineSession {
                    slot,
                    node: node.clone(),
                    generation,
                    since_ms,
                };
                s.online
                    .entry(client.clone())
                    .or_default()
                    .insert(slot.get(), (self.id, session));
            }
            let event = BrokerEvent::Claim {
                client: client.clone(),
                slot,
                generation,
                node: node.clone(),
            };
            MemoryBroker::fan_out(s, client, &event);
            generation
        })
    }
}

impl MemoryBrokerNode {
    fn end_session_now(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        generation: Generation,
    ) -> Result<(), BrokerError> {
        self.with_node(|s| {
            if let Some(slots) = s.online.get_mut(client) {
                let ours = slots
                    .get(&slot.get())
                    .is_some_and(|(_, o)| o.node == *node && o.generation == generation);
                if ours {
                    slots.remove(&slot.get());
                }
                if slots.is_empty() {
                    s.online.remove(client);
                }
            }
        })
    }

    fn sessions_now(&self, client: &ClientId) -> Result<Vec<OnlineSession>, BrokerError> {
        self.with_node(|s| {
            s.online.get(client).map_or_else(Vec::new, |slots| {
                slots
                    .values()
                    .filter(|(handle, _)| s.nodes.contains_key(handle))
                    .map(|(_, o)| o.clone())
                    .collect()
            })
        })
    }
}

impl Drop for MemoryBrokerNode {
    fn drop(&mut self) {
        lock(&self.bus.inner.state).nodes.remove(&self.id);
    }
}

/// An event stream that ends at once (the second call of `events()`).
struct Ended;

impl Stream for Ended {
    type Item = BrokerEvent;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<BrokerEvent>> {
        Poll::Ready(None)
    }
}

impl Broker for MemoryBrokerNode {
    fn subscribe(&self, client: &ClientId) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.subscribe_now(client))
    }

    fn unsubscribe(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.unsubscribe_now(client))
    }

    fn notify(
        &self,
        client: &ClientId,
        last: MessageId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.notify_now(client, last, None))
    }

    fn notify_message(
        &self,
        client: &ClientId,
        message: &Message,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.notify_now(client, message.id, Some(message)))
    }

    fn claim(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send {
        std::future::ready(self.claim_now(client, slot, node, None))
    }

    fn ping(&self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.bus.check_up())
    }

    fn events(&self) -> BrokerEvents {
        match lock(&self.events).take() {
            Some(rx) => Box::pin(rx),
            None => Box::pin(Ended),
        }
    }

    fn claim_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send {
        std::future::ready(self.claim_now(client, slot, node, Some(now_ms)))
    }

    fn end_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        generation: Generation,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.end_session_now(client, slot, node, generation))
    }

    fn sessions(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<Vec<OnlineSession>, BrokerError>> + Send {
        std::future::ready(self.sessions_now(client))
    }

    fn notify_recall(
        &self,
        push: PushId,
        clients: &[ClientId],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.with_node(|s| {
            for client in clients {
                let event = BrokerEvent::Recall {
                    client: client.clone(),
                    push,
                };
                MemoryBroker::fan_out(s, client, &event);
            }
        }))
    }
}

/// Polls a future that is ready at once (every future of this module) without a runtime.
///
/// # Panics
/// When the future is not ready on its first poll: that is a misuse of this helper.
pub fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("now_or_never: the future was not ready"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
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

    fn next_event(s: &mut BrokerEvents) -> Option<BrokerEvent> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match s.as_mut().poll_next(&mut cx) {
            Poll::Ready(e) => e,
            Poll::Pending => None,
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

    #[test]
    fn broker_fan_out_claims_and_resync() {
        let bus = MemoryBroker::new();
        let n1 = bus.node();
        let n2 = bus.node();
        let mut e1 = n1.events();
        let mut e2 = n2.events();
        let mut again = n1.events();
        assert_eq!(next_event(&mut again), None);
        now_or_never(n1.subscribe(&c("a"))).unwrap();
        now_or_never(n2.notify(&c("a"), MessageId(3))).unwrap();
        assert_eq!(
            next_event(&mut e1),
            Some(BrokerEvent::Notify {
                client: c("a"),
                last: MessageId(3),
                message: None,
            })
        );
        assert_eq!(next_event(&mut e2), None, "n2 is not subscribed");
        let slot = Slot::new(2).unwrap();
        let node = NodeId::new("x").unwrap();
        assert_eq!(
            now_or_never(n2.claim(&c("a"), slot, &node)).unwrap(),
            Generation(1)
        );
        assert_eq!(
            now_or_never(n2.claim(&c("a"), slot, &node)).unwrap(),
            Generation(2)
        );
        assert!(matches!(
            next_event(&mut e1),
            Some(BrokerEvent::Claim {
                generation: Generation(1),
                ..
            })
        ));
        bus.set_down(true);
        assert!(now_or_never(n1.notify(&c("a"), MessageId(4))).is_err());
        bus.set_down(false);
        assert!(matches!(
            next_event(&mut e1),
            Some(BrokerEvent::Claim {
                generation: Generation(2),
                ..
            })
        ));
        assert_eq!(next_event(&mut e1), Some(BrokerEvent::Resync));
        assert_eq!(next_event(&mut e2), Some(BrokerEvent::Resync));
        now_or_never(n1.unsubscribe(&c("a"))).unwrap();
        now_or_never(n2.notify(&c("a"), MessageId(5))).unwrap();
        assert_eq!(next_event(&mut e1), None);
        drop(n1);
        assert_eq!(lock(&bus.inner.state).nodes.len(), 1);
    }
}
