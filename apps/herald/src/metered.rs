//! The ports, metered: [`Metered`] wraps the node's store or broker and times every call
//! (`herald_store_latency_seconds`, `herald_broker_latency_seconds`) and counts every failure
//! (`herald_store_errors_total`, `herald_broker_errors_total`). Everything that uses a port
//! goes through the wrapper, so no caller writes the "time it and count errors" pattern again.
//!
//! Health checks (`ping`) go through untimed: they are not the traffic the latencies describe,
//! and `/healthy` reports their failures itself.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use herald_core::{
    AppendResult, Broker, BrokerError, BrokerEvents, ClientId, Generation, IdempotencyClaim,
    IdempotencyTimes, Message, MessageId, MessageStore, NewMessage, NodeId, OnlineSession, PushId,
    PushStatus, RecallReport, Receipt, RetentionReport, Slot, SlotBacklog, StoreError,
};
use herald_core::{Event, EventId, OutboxAdded, OutboxEntry, OutboxStats};

use crate::metrics::{Histogram, Metrics};

/// A store or broker whose calls are timed and whose failures are counted in `metrics`.
pub struct Metered<P> {
    /// The port itself.
    inner: P,
    /// Where the latencies and errors go.
    metrics: Arc<Metrics>,
}

impl<P> Metered<P> {
    /// `inner`, metered into `metrics`.
    pub fn new(inner: P, metrics: Arc<Metrics>) -> Self {
        Metered { inner, metrics }
    }

    /// The port itself (for what the wrapper does not forward, such as a test's fault switch).
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

/// Runs `call`, observing its time in `latency` and counting a failure in `errors`.
async fn timed<T, E>(
    latency: &Histogram,
    errors: &AtomicU64,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    latency.observe(started.elapsed());
    if result.is_err() {
        Metrics::inc(errors);
    }
    result
}

impl<S: MessageStore> Metered<S> {
    async fn store<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        timed(
            &self.metrics.store_latency,
            &self.metrics.store_errors,
            call,
        )
        .await
    }
}

impl<B: Broker> Metered<B> {
    async fn broker<T>(
        &self,
        call: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        timed(
            &self.metrics.broker_latency,
            &self.metrics.broker_errors,
            call,
        )
        .await
    }
}

impl<S: MessageStore> MessageStore for Metered<S> {
    fn append(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> impl Future<Output = Result<AppendResult, StoreError>> + Send {
        self.store(self.inner.append(msg, recipients, now_ms))
    }

    fn unacked(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send {
        self.store(self.inner.unacked(client, slot, after, limit, now_ms))
    }

    fn ack(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store(self.inner.ack(client, slot, ids))
    }

    fn ack_through(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
        through: MessageId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store(self.inner.ack_through(client, slot, ids, through))
    }

    fn history(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send {
        self.store(self.inner.history(client, since_ms, limit, now_ms))
    }

    fn purge(
        &self,
        now_ms: u64,
    ) -> impl Future<Output = Result<RetentionReport, StoreError>> + Send {
        self.store(self.inner.purge(now_ms))
    }

    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.ping()
    }

    fn slots(
        &self,
        client: &ClientId,
        also: &[Slot],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<SlotBacklog>, StoreError>> + Send {
        self.store(self.inner.slots(client, also, now_ms))
    }

    // ---- Push receipts, status, recall and idempotency ----

    fn record_receipts(
        &self,
        receipts: &[Receipt],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store(self.inner.record_receipts(receipts))
    }

    fn push_status(
        &self,
        push: PushId,
        slot: Slot,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<PushStatus>, StoreError>> + Send {
        self.store(self.inner.push_status(push, slot, now_ms))
    }

    fn recall(
        &self,
        push: PushId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<(RecallReport, Vec<ClientId>)>, StoreError>> + Send
    {
        self.store(self.inner.recall(push, now_ms))
    }

    fn expired_pushes(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PushId>, StoreError>> + Send {
        self.store(self.inner.expired_pushes(now_ms, limit))
    }

    fn expiry_reported(
        &self,
        pushes: &[PushId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store(self.inner.expiry_reported(pushes))
    }

    fn claim_idempotency(
        &self,
        key: &str,
        body_sha256: [u8; 32],
        now_ms: u64,
        times: IdempotencyTimes,
    ) -> impl Future<Output = Result<IdempotencyClaim, StoreError>> + Send {
        self.store(
            self.inner
                .claim_idempotency(key, body_sha256, now_ms, times),
        )
    }

    fn finish_idempotency(
        &self,
        key: &str,
        answer: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store(self.inner.finish_idempotency(key, answer))
    }

    fn release_idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store(self.inner.release_idempotency(key))
    }

    fn outbox_add(
        &self,
        events: &[Event],
        max: u64,
    ) -> impl Future<Output = Result<OutboxAdded, StoreError>> + Send {
        self.store(self.inner.outbox_add(events, max))
    }

    fn outbox_lease(
        &self,
        now_ms: u64,
        limit: usize,
        lease: std::time::Duration,
        node: &NodeId,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send {
        self.store(self.inner.outbox_lease(now_ms, limit, lease, node))
    }

    fn outbox_done(&self, ids: &[EventId]) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store(self.inner.outbox_done(ids))
    }

    fn outbox_retry(
        &self,
        ids: &[EventId],
        next_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store(self.inner.outbox_retry(ids, next_ms))
    }

    fn outbox_stats(&self) -> impl Future<Output = Result<OutboxStats, StoreError>> + Send {
        self.store(self.inner.outbox_stats())
    }
}

impl<B: Broker> Broker for Metered<B> {
    fn subscribe(&self, client: &ClientId) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.broker(self.inner.subscribe(client))
    }

    fn unsubscribe(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.broker(self.inner.unsubscribe(client))
    }

    fn notify(
        &self,
        client: &ClientId,
        last: MessageId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.broker(self.inner.notify(client, last))
    }

    fn notify_message(
        &self,
        client: &ClientId,
        message: &Message,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.broker(self.inner.notify_message(client, message))
    }

    fn notify_messages(
        &self,
        notes: &[(ClientId, Message)],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.broker(self.inner.notify_messages(notes))
    }

    fn claim(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send {
        self.broker(self.inner.claim(client, slot, node))
    }

    fn ping(&self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.inner.ping()
    }

    fn events(&self) -> BrokerEvents {
        self.inner.events()
    }

    fn claim_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send {
        self.broker(self.inner.claim_session(client, slot, node, now_ms))
    }

    fn end_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        generation: Generation,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.broker(self.inner.end_session(client, slot, node, generation))
    }

    fn sessions(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<Vec<OnlineSession>, BrokerError>> + Send {
        self.broker(self.inner.sessions(client))
    }

    fn notify_recall(
        &self,
        push: PushId,
        clients: &[ClientId],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.broker(self.inner.notify_recall(push, clients))
    }
}
