//! What reaches the store thread: requests on its channel, each answered on a reply
//! channel, and acknowledgements on the queue it shares with the handle.

use super::*;

/// A reply channel.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One request to the database thread.
pub(super) enum Request {
    /// Append a message to many queues.
    Append {
        /// The encoded body, shared by all recipients.
        body: Vec<u8>,
        /// The push id, for the push record.
        push: Option<herald_core::PushId>,
        /// Its time to live, if the push gave one.
        ttl: Option<std::time::Duration>,
        /// The queues.
        recipients: Vec<ClientId>,
        /// The store time.
        now_ms: u64,
        /// Where the ids go.
        reply: Reply<AppendResult>,
    },
    /// Read unacknowledged messages.
    Unacked {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// The cursor.
        after: MessageId,
        /// At most this many.
        limit: usize,
        /// Expiry reference.
        now_ms: u64,
        /// The messages.
        reply: Reply<Vec<Message>>,
    },
    /// Read messages by store time.
    History {
        /// The client.
        client: ClientId,
        /// Oldest store time.
        since_ms: u64,
        /// At most this many.
        limit: usize,
        /// Expiry reference.
        now_ms: u64,
        /// The messages.
        reply: Reply<Vec<Message>>,
    },
    /// Drop expired messages and report retention drops.
    Purge {
        /// Expiry reference.
        now_ms: u64,
        /// The report.
        reply: Reply<RetentionReport>,
    },
    /// Round trip.
    Ping {
        /// Done.
        reply: Reply<()>,
    },
    /// The client view's per-slot backlog.
    Slots {
        /// The client.
        client: ClientId,
        /// Slots to report besides those known.
        also: Vec<Slot>,
        /// Expiry reference.
        now_ms: u64,
        /// The backlog.
        reply: Reply<Vec<SlotBacklog>>,
    },
    /// Push records, receipts, recall and idempotency (issue 14): see [`receipts`].
    Books(receipts::BookRequest),
}

/// Awaits the thread's answer to a request (`sent` says whether it could be sent at all).
pub(super) async fn await_answer<T>(
    sent: bool,
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    if !sent {
        return Err(stopped());
    }
    answer.await.unwrap_or_else(|_| Err(stopped()))
}

/// The error when the thread is gone (it panicked, or the store is being dropped).
pub(super) fn stopped() -> StoreError {
    StoreError::Unavailable("the embedded store thread has stopped".into())
}

impl Request {
    /// Answers the request with `err`.
    pub(super) fn fail(self, err: StoreError) {
        match self {
            Request::Append { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Ping { reply } => {
                let _ = reply.send(Err(err));
            }
            Request::Unacked { reply, .. } | Request::History { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Purge { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Slots { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Books(req) => req.fail(err),
        }
    }
}

/// Acknowledgements on their way to the index.
///
/// An acknowledgement needs no answer from the disk (it is synced lazily anyway), so `ack`
/// only queues it here and answers at once: no message to the thread, no wake-up, no reply
/// channel. The thread takes the queue whole at the start of each turn, after it collected
/// the turn's requests and before it applies them, and at least every [`LAZY_ACKS_FOR`]; so
/// a read sent after an `ack` answered sees it, and an ack of an id not stored yet (which no
/// session sends) stays ignored.
#[derive(Debug, Default)]
pub(super) struct AckQueue {
    /// The acknowledgements, in the order they were made.
    queue: std::sync::Mutex<Vec<QueuedAck>>,
    /// Set by the thread when it stops serving (it stopped, or a failed write left it
    /// broken): acknowledgements are refused from then on.
    closed: std::sync::atomic::AtomicBool,
}

/// One queued acknowledgement.
#[derive(Debug)]
pub(super) struct QueuedAck {
    /// The client.
    pub(super) client: ClientId,
    /// The slot.
    pub(super) slot: Slot,
    /// The ids.
    pub(super) ids: Vec<MessageId>,
}

impl AckQueue {
    /// Queues an acknowledgement, unless the thread stopped serving.
    pub(super) fn push(&self, ack: QueuedAck) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self.closed.load(Ordering::Acquire) {
            return Err(stopped());
        }
        match self.queue.lock() {
            Ok(mut queue) => {
                queue.push(ack);
                Ok(())
            }
            Err(_) => Err(stopped()),
        }
    }

    /// Everything queued so far.
    pub(super) fn take(&self) -> Vec<QueuedAck> {
        match self.queue.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Refuses acknowledgements from now on.
    pub(super) fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }
}
