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
    AppendResult, Broker, BrokerError, BrokerEvents, ClientId, Generation, Message, MessageId,
    MessageStore, NewMessage, NodeId, RetentionReport, Slot, StoreError,
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
}
