//! The ports: what the engine needs from the outside world, as traits that adapters
//! implement (`herald-store-embedded`, `herald-store-mongo`, `herald-broker-redis`, and the
//! in-memory implementations in this crate).
//!
//! The traits are runtime-free: methods return `std` futures (`impl Future + Send`), and the
//! broker's events arrive on a [`futures_core::Stream`]. An adapter whose client library needs
//! a particular runtime keeps that inside itself.
//!
//! Every adapter runs the contract suite (`herald_core::contract`, cargo feature `contract`)
//! against itself with the real service behind it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;

use crate::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use crate::message::{Message, NewMessage};
use crate::push_id::PushId;
use crate::receipts::{IdempotencyClaim, IdempotencyTimes, PushStatus, RecallReport, Receipt};
use crate::webhook::{Event, EventId, OutboxAdded, OutboxEntry, OutboxStats};

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request (bad data, a limit); retrying the same request will not help.
    #[error("store refused the request: {0}")]
    Rejected(String),
}

/// Why a broker operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or did not answer in time; retrying later may succeed.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// How long messages are kept: the per-client cap and the default time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many messages per client are kept; older ones are dropped.
    pub cap: u64,
    /// A message without its own `ttl` expires this long after it was stored.
    pub ttl: Duration,
}

impl Default for Retention {
    /// DESIGN.md's defaults: 10 000 messages and 7 days.
    fn default() -> Self {
        Retention {
            cap: 10_000,
            ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What one retention pass dropped, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Messages dropped because their time to live ran out.
    pub expired: u64,
    /// Messages dropped because their client had more than the cap.
    pub capped: u64,
}

/// One slot's backlog in a client's queue, for the client view (`GET /clients/<id>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotBacklog {
    /// The slot.
    pub slot: Slot,
    /// Messages kept and not expired that the slot has not acknowledged.
    pub unacked: u64,
    /// The store time (Unix ms) of the oldest of them, `None` when there is none.
    pub oldest_unacked_ts: Option<u64>,
    /// The highest id the slot acknowledged, `None` when the store knows of none (nothing
    /// acknowledged, or what was is no longer kept and left no mark).
    pub last_acked: Option<MessageId>,
}

/// A session online somewhere in the cluster, as the broker's registry has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineSession {
    /// Its slot.
    pub slot: Slot,
    /// The node holding it.
    pub node: NodeId,
    /// The generation of its claim.
    pub generation: Generation,
    /// When its claim was taken (Unix ms, the holding node's clock): its connect, or the last
    /// broker resync, after which every session claims again.
    pub since_ms: u64,
}

/// The result of appending one message to many queues: per recipient, in the order given,
/// the id it got or why it failed.
pub type AppendResult = Vec<Result<MessageId, StoreError>>;

/// Durable, ordered, per-client message queues with a per-slot acknowledgement bitmask.
///
/// Rules every implementation keeps (the contract suite checks them):
/// - Ids are strictly increasing per client, starting at 1, in append order.
/// - Visibility follows ids: once `unacked` or `history` can return id `n` of a client, every
///   id below `n` of that client that will ever be visible is already visible. (Otherwise a
///   session could deliver `n` and then find `n - 1`, out of order.)
/// - A message is acknowledged per slot; acknowledging one slot never affects another.
/// - Reads never return a message whose time to live has run out (whether or not it has been
///   deleted yet). The cap is enforced by [`MessageStore::purge`] at the latest, and eagerly
///   where that is cheap.
/// - A successful `append` is durable: it survives a crash of the process.
pub trait MessageStore: Send + Sync + 'static {
    /// Appends `msg` to the queue of every recipient (one batch where the backend allows),
    /// stamped with `now_ms` (Unix milliseconds) as its store time.
    ///
    /// Returns one entry per recipient, in the order of `recipients`.
    ///
    /// # Errors
    /// The outer `Err` means nothing was stored (the store is down). A per-recipient `Err`
    /// means that recipient's copy was not stored and the others were.
    fn append(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> impl Future<Output = Result<AppendResult, StoreError>> + Send;

    /// Up to `limit` messages of `client` with id greater than `after` that `slot` has not
    /// acknowledged and that have not expired at `now_ms`, oldest first.
    ///
    /// # Errors
    /// When the store cannot answer.
    fn unacked(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send;

    /// Marks `ids` of `client` as acknowledged by `slot`. Ids that do not exist (dropped by
    /// retention, never stored) and ids already acknowledged are ignored.
    ///
    /// # Errors
    /// When the store cannot answer; then nothing may be assumed acknowledged.
    fn ack(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`MessageStore::ack`], told what the acknowledging session knows besides: every
    /// message of `client` with an id up to `through` is acknowledged by `slot` now (in this
    /// call or before), or never became visible to it (a hole, an expired message). Sessions
    /// read in id order and visibility follows ids, so a session knows this of every id below
    /// the oldest message it still holds. A store may record `through` instead of each id at
    /// or below it (one write per client and slot, not per message); ids above `through` it
    /// records one by one as `ack` does. Provided: `ack(client, slot, ids)`.
    ///
    /// # Errors
    /// As [`MessageStore::ack`].
    fn ack_through(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
        through: MessageId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = through;
        self.ack(client, slot, ids)
    }

    /// Up to `limit` messages of `client` stored at or after `since_ms` and not expired at
    /// `now_ms`, oldest first, whatever their acknowledgement state.
    ///
    /// # Errors
    /// When the store cannot answer.
    fn history(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send;

    /// Drops what retention no longer keeps at `now_ms`: expired messages and those beyond
    /// each client's cap. Returns how many of each were dropped.
    ///
    /// # Errors
    /// When the store cannot answer; a later pass catches up.
    fn purge(
        &self,
        now_ms: u64,
    ) -> impl Future<Output = Result<RetentionReport, StoreError>> + Send;

    /// A cheap round trip, for health checks.
    ///
    /// # Errors
    /// When the store cannot answer.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    // ---- the client view (issue 14) ----------------------------------------------------

    /// The backlog of every slot of `client` that the store knows to have read or acknowledged
    /// its queue, and of every slot in `also` (the slots online now), by increasing slot:
    /// unacknowledged messages not expired at `now_ms`, the oldest one's store time, the last
    /// id acknowledged. A client the store never heard of has an empty list (plus `also`,
    /// each with nothing unacknowledged). For an admin call: it may read every kept message
    /// of the client.
    ///
    /// # Errors
    /// When the store cannot answer.
    fn slots(
        &self,
        client: &ClientId,
        also: &[Slot],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<SlotBacklog>, StoreError>> + Send;

    // ---- Push receipts, status, recall and idempotency (issue 14; rules in
    // crate::receipts). A push appended with `NewMessage::push` set gets a push record. The
    // provided methods refuse (`StoreError::Rejected`): a store that keeps no push records
    // (a test wrapper) needs none of them. ----

    /// Records `receipts`: per copy, slot and kind, the earliest time given is kept. Receipts
    /// of unknown pushes or copies are ignored. A store may keep the last few of them less
    /// durably than acknowledgements (they are not on the delivery path).
    ///
    /// # Errors
    /// When the store cannot answer; the receipts may then be lost (times become unknown).
    fn record_receipts(
        &self,
        receipts: &[Receipt],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = receipts;
        unsupported()
    }

    /// The status of every copy of `push` for `slot` at `now_ms`, in the push's recipient
    /// order; `None` when the store has no record of the push (never stored, or expired).
    ///
    /// # Errors
    /// When the store cannot answer.
    fn push_status(
        &self,
        push: PushId,
        slot: Slot,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<PushStatus>, StoreError>> + Send {
        let _ = (push, slot, now_ms);
        unsupported()
    }

    /// Recalls `push` at `now_ms`: every copy is hidden from every slot that has not
    /// acknowledged it (`unacked` never returns it again). Idempotent: a repeat changes
    /// nothing and answers what the first recall answered. Returns the report and the push's
    /// recipients (to tell their sessions), `None` when the store has no record of the push.
    ///
    /// # Errors
    /// When the store cannot answer; then the recall may have been applied to some copies
    /// (a retry completes it).
    fn recall(
        &self,
        push: PushId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<(RecallReport, Vec<ClientId>)>, StoreError>> + Send
    {
        let _ = (push, now_ms);
        unsupported()
    }

    /// Up to `limit` pushes whose copies expired at or before `now_ms` and whose expiry was
    /// not reported yet ([`MessageStore::expiry_reported`]), the earliest expiry first: the
    /// webhook sender makes their `expired` events. Records the store no longer keeps are not
    /// listed.
    ///
    /// # Errors
    /// When the store cannot answer.
    fn expired_pushes(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PushId>, StoreError>> + Send {
        let _ = (now_ms, limit);
        unsupported()
    }

    /// Notes that the expiry of `pushes` was reported, so that
    /// [`MessageStore::expired_pushes`] lists them no more. Unknown pushes are ignored. Need not
    /// be durable at once: a mark lost in a crash lists the push again (events are at least
    /// once).
    ///
    /// # Errors
    /// When the store cannot answer; then the pushes may be listed again.
    fn expiry_reported(
        &self,
        pushes: &[PushId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = pushes;
        unsupported()
    }

    /// Claims the idempotency `key` for a push whose body has the SHA-256 `body_sha256`, at
    /// `now_ms`. [`IdempotencyClaim::Claimed`] when the key is free (never used, expired, or
    /// claimed longer than `times.lease` ago and never finished); otherwise what the key holds.
    ///
    /// # Errors
    /// When the store cannot answer; then the key may be claimed or not (a repeat tells).
    fn claim_idempotency(
        &self,
        key: &str,
        body_sha256: [u8; 32],
        now_ms: u64,
        times: IdempotencyTimes,
    ) -> impl Future<Output = Result<IdempotencyClaim, StoreError>> + Send {
        let _ = (key, body_sha256, now_ms, times);
        unsupported()
    }

    /// Finishes the claim of `key` with the `answer` its push got: repeats get it until the
    /// claim's time to live runs out. Durable when it returns.
    ///
    /// # Errors
    /// When the store cannot answer; the claim then stays pending until its lease runs out.
    fn finish_idempotency(
        &self,
        key: &str,
        answer: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (key, answer);
        unsupported()
    }

    /// Gives up the claim of `key` (its push stored nothing), so that a retry may run.
    ///
    /// # Errors
    /// When the store cannot answer; the claim then stays until its lease runs out.
    fn release_idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = key;
        unsupported()
    }

    // --- The webhook outbox (issue 14 step 2): events waiting to be POSTed. ---
    // The contract suite for these is `herald_core::contract_outbox`.

    /// Adds `events` to the webhook outbox, due at once with no attempt made. An event whose
    /// id is already in the outbox is ignored (a fact recorded twice). When the outbox holds
    /// `max` events, the rest are not stored and counted as dropped. The events are durable
    /// when the call returns.
    ///
    /// # Errors
    /// When the store cannot answer; then none may be assumed stored.
    fn outbox_add(
        &self,
        events: &[Event],
        max: u64,
    ) -> impl Future<Output = Result<OutboxAdded, StoreError>> + Send;

    /// Leases up to `limit` events due at `now_ms` (next attempt time at or before it), the
    /// earliest due first, to `node` for `lease`: until `now_ms + lease` no other lease gets
    /// them (on any node sharing the store). A lease is not a delete: an event not marked
    /// [`MessageStore::outbox_done`] or rescheduled comes due again when its lease runs out.
    ///
    /// # Errors
    /// When the store cannot answer.
    fn outbox_lease(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        node: &NodeId,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send;

    /// Removes `ids` from the outbox (sent, or given up). Unknown ids are ignored.
    ///
    /// # Errors
    /// When the store cannot answer; the events may then be sent again (at least once).
    fn outbox_done(&self, ids: &[EventId]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes `ids` due again at `next_ms`, their attempt count one higher. Unknown ids are
    /// ignored.
    ///
    /// # Errors
    /// When the store cannot answer; the events come due when their lease runs out.
    fn outbox_retry(
        &self,
        ids: &[EventId],
        next_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many events wait, and the time of the oldest.
    ///
    /// # Errors
    /// When the store cannot answer.
    fn outbox_stats(&self) -> impl Future<Output = Result<OutboxStats, StoreError>> + Send;
}

/// The answer of a store that keeps no push records (the provided receipt methods).
fn unsupported<T>() -> std::future::Ready<Result<T, StoreError>> {
    std::future::ready(Err(StoreError::Rejected(
        "this store keeps no push records".into(),
    )))
}

/// Something that happened on the broker, for the node that holds this broker handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// New messages were stored for `client`; `last` is the newest id.
    Notify {
        /// The client whose queue grew.
        client: ClientId,
        /// The newest id in its queue.
        last: MessageId,
        /// The message `last` itself, when the notifier attached it
        /// ([`Broker::notify_message`]) and the broker carried it: a session whose cursor is
        /// just below `last` delivers it without reading the store. `None` says only "look
        /// again"; a broker may always drop it.
        message: Option<Message>,
    },
    /// A session claimed `(client, slot)` with `generation` on `node`. Sessions of that
    /// `(client, slot)` with a lower generation, on any node, must be kicked.
    Claim {
        /// The client.
        client: ClientId,
        /// The slot claimed.
        slot: Slot,
        /// The generation the claiming session got.
        generation: Generation,
        /// The node holding the claiming session.
        node: NodeId,
    },
    /// The broker connection was lost and is back: notifications and claims may have been
    /// missed meanwhile, so every session must re-read its queue from the store.
    Resync,
    /// `push` was recalled: sessions of `client` drop the copies of it they hold and have not
    /// delivered yet ([`Broker::notify_recall`]).
    Recall {
        /// A recipient of the push.
        client: ClientId,
        /// The push recalled.
        push: PushId,
    },
}

/// A stream of broker events for one node.
pub type BrokerEvents = Pin<Box<dyn Stream<Item = BrokerEvent> + Send + 'static>>;

/// Coordination between nodes: new-message notifications, session claims, and the registry of
/// sessions online (for the client view).
///
/// A broker handle belongs to one node. It delivers [`BrokerEvent`]s for the clients that
/// node subscribed to, including the node's own notifications and claims. Losing the broker
/// must never lose a stored message: stores are the truth, the broker only says "look again".
pub trait Broker: Send + Sync + 'static {
    /// Starts delivering events of `client` to this node. Subscribing twice is the same as once.
    ///
    /// # Errors
    /// When the broker cannot be reached.
    fn subscribe(&self, client: &ClientId) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Stops delivering events of `client` to this node. Unknown clients are ignored.
    ///
    /// # Errors
    /// When the broker cannot be reached.
    fn unsubscribe(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Tells every node subscribed to `client` that its queue now ends at `last`.
    ///
    /// # Errors
    /// When the broker cannot be reached.
    fn notify(
        &self,
        client: &ClientId,
        last: MessageId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// [`Broker::notify`] with the message itself attached (`message.id` is the new last id),
    /// for the subscribers to deliver without a store read. `message` must be exactly what the
    /// store now holds under that id (its `ts` is the `now_ms` the append was given). The
    /// default sends the id alone; a broker that can carry the message overrides it.
    ///
    /// # Errors
    /// When the broker cannot be reached.
    fn notify_message(
        &self,
        client: &ClientId,
        message: &Message,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.notify(client, message.id)
    }

    /// The notifications of one push: [`Broker::notify_message`] for every `(client,
    /// message)` given. A broker that can send many in one round trip (pipelined) overrides
    /// it, so that a push to thousands of recipients does not cost thousands of round trips;
    /// the default sends them one after the other.
    ///
    /// # Errors
    /// When the broker cannot be reached; then some of the notifications may have gone out
    /// (every one is still attempted).
    fn notify_messages(
        &self,
        notes: &[(ClientId, Message)],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        async move {
            let mut first_error = None;
            for (client, message) in notes {
                if let Err(e) = self.notify_message(client, message).await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        }
    }

    /// Takes the next generation of `(client, slot)` (strictly increasing cluster-wide) and
    /// announces the claim, by `node`, to every node subscribed to `client`.
    ///
    /// # Errors
    /// When the broker cannot be reached; then no generation was taken or announced.
    fn claim(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send;

    /// A cheap round trip, for health checks.
    ///
    /// # Errors
    /// When the broker cannot be reached.
    fn ping(&self) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// The node's event stream. The first call takes it; later calls get a stream that ends
    /// at once.
    fn events(&self) -> BrokerEvents;

    // ---- the client view (issue 14) ----------------------------------------------------

    /// [`Broker::claim`], and records the session in the broker's registry of sessions
    /// online: `(client, slot)` is held by `node` with the generation taken, since `now_ms`
    /// (Unix ms). The entry replaces whatever the slot had (the generation taken is the
    /// highest).
    ///
    /// # Errors
    /// As [`Broker::claim`]; then nothing was taken, announced or recorded.
    fn claim_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send;

    /// The session of `(client, slot)` claimed by `node` with `generation` ended: its registry
    /// entry goes, if it is still that session's (a newer claim's entry stays).
    ///
    /// # Errors
    /// When the broker cannot be reached; the entry may then stay until a newer claim of the
    /// slot replaces it, or its node is no longer alive.
    fn end_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        generation: Generation,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// The sessions of `client` online now, on any node, by increasing slot: the registry's
    /// entries whose node is alive.
    ///
    /// # Errors
    /// When the broker cannot be reached.
    fn sessions(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<Vec<OnlineSession>, BrokerError>> + Send;

    // ---- Recall (issue 14) ----

    /// Tells every node subscribed to one of `clients` that `push` was recalled
    /// ([`BrokerEvent::Recall`]), all together (pipelined by a broker that can). The default
    /// tells nobody: sessions may then still deliver a copy they held in memory.
    ///
    /// # Errors
    /// When the broker cannot be reached; some of the notices may have gone out.
    fn notify_recall(
        &self,
        push: PushId,
        clients: &[ClientId],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        let _ = (push, clients);
        std::future::ready(Ok(()))
    }
}
