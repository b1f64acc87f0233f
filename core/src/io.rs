//! What goes into a [`Hub`](crate::hub::Hub) and what comes out of it.

use crate::identity::Identity;
use crate::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use crate::message::Message;
use crate::ports::{BrokerError, BrokerEvent, StoreError};

/// The caller's handle of one client connection. Must be unique for the Hub's lifetime
/// (never reuse one after its `Disconnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The id of one delivered batch, carried by the transport as the Socket.IO ack id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckId(pub u64);

/// The caller's handle of one watcher: someone waiting for a client's queue to grow (a
/// `GET /watch` request). Must be unique for the Hub's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);

/// The id of one store or broker request; its result comes back with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// How logs name the handles: `conn 7`, `ack 3`, `watch 2`, `request 9`.
macro_rules! handle_display {
    ($($ty:ident => $word:literal),*) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($word, " {}"), self.0)
            }
        }
    )*};
}
handle_display!(ConnId => "conn", AckId => "ack", WatchId => "watch", RequestId => "request");

/// An event for the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A connection authenticated as `identity` (see [`crate::auth`]) wants its messages.
    Connect {
        /// The caller's connection handle.
        conn: ConnId,
        /// Who it is.
        identity: Identity,
    },
    /// The connection is gone (closed by the client, the network or the caller).
    Disconnect {
        /// The connection.
        conn: ConnId,
    },
    /// The client acknowledged the batch delivered with `ack` (ack mode).
    Ack {
        /// The connection.
        conn: ConnId,
        /// The batch.
        ack: AckId,
    },
    /// The client committed `n` messages (commit mode: the seed's `commit` event).
    Commit {
        /// The connection.
        conn: ConnId,
        /// How many of the oldest in-flight messages are acknowledged.
        n: u64,
    },
    /// A store request finished.
    StoreDone {
        /// The request.
        req: RequestId,
        /// Its result.
        result: Result<StoreReply, StoreError>,
    },
    /// A broker request finished.
    BrokerDone {
        /// The request.
        req: RequestId,
        /// Its result.
        result: Result<BrokerReply, BrokerError>,
    },
    /// The broker delivered an event for this node.
    Broker(BrokerEvent),
    /// Someone starts waiting for `client`'s queue to grow: the Hub holds the client's broker
    /// subscription for it and answers with [`Output::Wake`] whenever the queue may have grown.
    Watch {
        /// The caller's watcher handle.
        watch: WatchId,
        /// The client watched.
        client: ClientId,
    },
    /// The watcher stopped waiting; the subscription is released after its last holder.
    Unwatch {
        /// The watcher.
        watch: WatchId,
    },
}

/// The successful result of a [`StoreOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    /// The answer to [`StoreOp::Unacked`].
    Messages(Vec<Message>),
    /// The answer to [`StoreOp::Ack`].
    Acked,
    /// The answer to [`StoreOp::Receipts`].
    Recorded,
}

/// The successful result of a [`BrokerOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerReply {
    /// The answer to [`BrokerOp::Subscribe`].
    Subscribed,
    /// The answer to [`BrokerOp::Unsubscribe`].
    Unsubscribed,
    /// The answer to [`BrokerOp::Claim`].
    Claimed(Generation),
    /// The answer to [`BrokerOp::EndSession`].
    SessionEnded,
}

/// Store work for the caller: one call of [`MessageStore`](crate::ports::MessageStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// `store.unacked(client, slot, after, limit, now_ms)`, with the caller's wall clock.
    Unacked {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// Only ids above this one.
        after: MessageId,
        /// At most this many.
        limit: usize,
    },
    /// `store.ack_through(client, slot, ids, through)`.
    Ack {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// The acknowledged ids.
        ids: Vec<MessageId>,
        /// Every id up to this one is acknowledged by the slot (see
        /// [`MessageStore::ack_through`](crate::ports::MessageStore::ack_through)).
        through: MessageId,
    },
    /// `store.record_receipts(receipts)`, every receipt's `at_ms` set to the caller's wall
    /// clock (the Hub has none: it leaves them 0). The Hub gathers the receipts of all its
    /// deliveries and acknowledgements into one such call per drain of its outputs.
    Receipts {
        /// What happened, to which copies.
        receipts: Vec<crate::receipts::Receipt>,
    },
}

/// Broker work for the caller: one call of [`Broker`](crate::ports::Broker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerOp {
    /// `broker.subscribe(client)`.
    Subscribe {
        /// The client.
        client: ClientId,
    },
    /// `broker.unsubscribe(client)`.
    Unsubscribe {
        /// The client.
        client: ClientId,
    },
    /// `broker.claim_session(client, slot, node, now_ms)`, with the caller's wall clock.
    Claim {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// This node.
        node: NodeId,
    },
    /// `broker.end_session(client, slot, node, generation)`: a session that held a claim
    /// ended (its result changes nothing in the Hub).
    EndSession {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// This node.
        node: NodeId,
        /// The generation the session held.
        generation: Generation,
    },
}

/// Why a session was kicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// A newer session of the same client and slot claimed it (event `kicked`
    /// `{"reason":"replaced"}`).
    Replaced,
}

impl KickReason {
    /// The `reason` the client is told.
    pub fn as_str(self) -> &'static str {
        match self {
            KickReason::Replaced => "replaced",
        }
    }
}

/// Why the Hub asks the caller to close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A delivered batch was not acknowledged within the ack timeout: the client is stuck or
    /// gone. Its messages stay unacknowledged and go to its next session.
    AckTimeout,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::AckTimeout => "a delivered batch was not acknowledged in time",
        })
    }
}

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Emit event `message` with `messages` as its one argument, with Socket.IO ack id `ack`
    /// when given (ack mode), without one otherwise (commit mode).
    Deliver {
        /// The connection.
        conn: ConnId,
        /// The ack id to request, in ack mode.
        ack: Option<AckId>,
        /// The batch, oldest first (empty: commit mode's first `message`).
        messages: Vec<Message>,
    },
    /// Emit event `kicked` `{"reason": reason}` and close the connection. The Hub has
    /// already forgotten the session (no `Disconnect` is needed, one is ignored).
    Kick {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: KickReason,
    },
    /// Close the connection. The Hub has already forgotten the session.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// The watched client's queue may have grown (a notification, a broker resync, or its
    /// subscription just started, after which nothing more is missed): the watcher reads
    /// the store again.
    Wake {
        /// The watcher.
        watch: WatchId,
    },
    /// Carry out a store call and feed its result back as [`Input::StoreDone`] with `req`.
    Store {
        /// The request id.
        req: RequestId,
        /// The call.
        op: StoreOp,
    },
    /// Carry out a broker call and feed its result back as [`Input::BrokerDone`] with `req`.
    Broker {
        /// The request id.
        req: RequestId,
        /// The call.
        op: BrokerOp,
    },
}

impl StoreOp {
    /// Carries out this call on `store` (reads at `now_ms`, Unix milliseconds), giving the
    /// result to feed back as [`Input::StoreDone`].
    pub async fn run<S: crate::ports::MessageStore>(
        self,
        store: &S,
        now_ms: u64,
    ) -> Result<StoreReply, StoreError> {
        match self {
            StoreOp::Unacked {
                client,
                slot,
                after,
                limit,
            } => store
                .unacked(&client, slot, after, limit, now_ms)
                .await
                .map(StoreReply::Messages),
            StoreOp::Ack {
                client,
                slot,
                ids,
                through,
            } => store
                .ack_through(&client, slot, &ids, through)
                .await
                .map(|()| StoreReply::Acked),
            StoreOp::Receipts { mut receipts } => {
                for r in &mut receipts {
                    r.at_ms = now_ms;
                }
                store
                    .record_receipts(&receipts)
                    .await
                    .map(|()| StoreReply::Recorded)
            }
        }
    }
}

impl BrokerOp {
    /// Carries out this call on `broker` (a claim records its session as online since
    /// `now_ms`, Unix milliseconds), giving the result to feed back as [`Input::BrokerDone`].
    pub async fn run<B: crate::ports::Broker>(
        self,
        broker: &B,
        now_ms: u64,
    ) -> Result<BrokerReply, BrokerError> {
        match self {
            BrokerOp::Subscribe { client } => broker
                .subscribe(&client)
                .await
                .map(|()| BrokerReply::Subscribed),
            BrokerOp::Unsubscribe { client } => broker
                .unsubscribe(&client)
                .await
                .map(|()| BrokerReply::Unsubscribed),
            BrokerOp::Claim { client, slot, node } => broker
                .claim_session(&client, slot, &node, now_ms)
                .await
                .map(BrokerReply::Claimed),
            BrokerOp::EndSession {
                client,
                slot,
                node,
                generation,
            } => broker
                .end_session(&client, slot, &node, generation)
                .await
                .map(|()| BrokerReply::SessionEnded),
        }
    }
}
