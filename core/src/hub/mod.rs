//! The [`Hub`]: every session of one node, as a sans-IO state machine.
//!
//! A session goes: subscribed (its client's broker subscription reaches this node) → claimed (it
//! holds the newest generation of its `(client, slot)`) → live: it loads what its slot has not
//! acknowledged, delivers it in order and forwards acknowledgements to the store, until the
//! connection ends, a newer session kicks it, or it stops acknowledging.
//!
//! Rules kept here:
//! - Delivered ids strictly increase within a session; a session never skips an unacknowledged
//!   message the store can see (it reads from its cursor, in id order).
//! - At most `window` messages are in flight per session in ack mode, one in commit mode.
//! - A failed store or broker call pauses the session's progress and is retried with
//!   exponential backoff; nothing is dropped or reordered because of it.
//! - A session with a lower generation than one seen for its `(client, slot)` is kicked.
//! - A broker resync starts a new epoch: the broker may have lost its state (a Redis restarted
//!   without persistence counts generations from zero again), so the generations seen before
//!   are forgotten, every live session claims anew (delivering meanwhile), and a claim answered
//!   across the resync is asked again. A login after the resync thus still outranks the sessions
//!   that were already there.
//! - Unknown, duplicate or late acknowledgements and results are ignored (logged at debug).
//! - Receipts: every delivery and every acknowledgement of a copy that names its push is
//!   reported to the store in a [`StoreOp::Receipts`] (the last output of a drain of
//!   [`Hub::poll_output`]). One such call is under way at a time: the receipts gathered
//!   meanwhile go in the next one, so under load a call carries many drains' receipts (group
//!   commit) and their cost per copy stays that of a few bytes. A failed receipt write is
//!   logged, never retried: receipts are not on the delivery path.
//! - A recalled push ([`BrokerEvent::Recall`]) is dropped from what sessions hold and have not
//!   delivered, and from reads and notifications answered after the recall (the Hub remembers
//!   the last [`RECALLED_MEMORY`] recalled pushes). A copy already delivered may still be acked.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::identity::Mode;
use crate::ids::{ClientId, MessageId, NodeId, Slot};
use crate::io::{
    AckId, BrokerOp, BrokerReply, ConnId, Input, Output, RequestId, StoreOp, StoreReply, WatchId,
};
use crate::ports::BrokerEvent;
use crate::push_id::PushId;
use crate::receipts::{Receipt, ReceiptKind};

mod claims;
mod session;
mod subscriptions;
mod timers;

use claims::Claims;
use session::{Phase, Session};
use subscriptions::{ClientEntry, Sub};
use timers::{Timer, TimerKey};

/// How a Hub behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// This node, named in its claims.
    pub node: NodeId,
    /// Messages in flight per session in ack mode (commit mode always has one).
    pub window: usize,
    /// Messages asked from the store per read.
    pub load_limit: usize,
    /// First retry delay after a failed store or broker call.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// A delivered batch not acknowledged within this time closes the session
    /// ([`CloseReason::AckTimeout`](crate::io::CloseReason::AckTimeout)); `None` waits forever.
    pub ack_timeout: Option<Duration>,
    /// How many times a failed acknowledgement write is retried before it is given up (the
    /// messages are then delivered again to a later session: at-least-once).
    pub ack_retries: u32,
}

impl HubConfig {
    /// DESIGN.md's defaults: window 64; retries from 100 ms doubling to 5 s; ack timeout 60 s.
    pub fn new(node: NodeId) -> HubConfig {
        HubConfig {
            node,
            window: 64,
            load_limit: 128,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            ack_timeout: Some(Duration::from_secs(60)),
            ack_retries: 10,
        }
    }
}

/// Counters of a Hub since it started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Sessions currently held (from connect to end).
    pub sessions: u64,
    /// Watchers currently waiting (from [`Input::Watch`] to [`Input::Unwatch`]).
    pub watchers: u64,
    /// Messages delivered.
    pub deliveries: u64,
    /// Messages acknowledged by clients.
    pub acks: u64,
    /// Messages delivered again to a slot that had already been sent them by this node.
    pub redeliveries: u64,
    /// Sessions kicked by a newer one.
    pub kicks: u64,
    /// Sessions closed because they did not acknowledge in time.
    pub ack_timeouts: u64,
    /// Store calls that failed.
    pub store_errors: u64,
    /// Broker calls that failed.
    pub broker_errors: u64,
}

/// What a store or broker request under way is for (its result goes there).
#[derive(Debug)]
enum Purpose {
    Load {
        conn: ConnId,
        sid: u64,
    },
    Claim {
        conn: ConnId,
        sid: u64,
        /// A live session renewing its claim after a broker resync (it keeps delivering).
        renew: bool,
        /// [`Claims::epoch`] when the claim was asked for: a generation handed out before the
        /// latest resync may come from a broker state that is gone.
        epoch: u64,
        /// The session's client and slot: a claim answered after its session ended recorded
        /// the session online in the broker, and that entry must go.
        key: (ClientId, Slot),
    },
    Subscribe {
        client: ClientId,
    },
    Unsubscribe {
        client: ClientId,
    },
    Ack {
        client: ClientId,
        slot: Slot,
        ids: Vec<MessageId>,
        through: MessageId,
        attempt: u32,
    },
    /// A session's registry entry going; the result changes nothing (logged on failure).
    EndSession,
    /// A [`StoreOp::Receipts`] of this many receipts.
    Receipts(usize),
}

/// The items in order: what the Hub does for many sessions or clients at once happens in an
/// order that does not depend on hash maps' per-process random seeds, so a simulation replays
/// exactly from its seed.
fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort_unstable();
    v
}

/// Bound of the per-slot "highest delivered" memory used to count redeliveries.
const DELIVERED_MEMORY: usize = 100_000;

/// Bound of the memory of recalled pushes (forgotten all at once when full: a read answered
/// after a recall that is older than this many recalls is not expected).
pub const RECALLED_MEMORY: usize = 10_000;

/// All sessions of one node. See the module docs and the crate docs for the run loop.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    /// Every session, by its connection. Boxed: the table keeps room for up to twice its
    /// entries, and with a session inline (136 bytes) that room cost an idle connection about
    /// 65 bytes more than with a pointer.
    sessions: HashMap<ConnId, Box<Session>>,
    /// Each client with a session or a watcher here, its sessions (who a claim of one of its
    /// slots may kick: no table by `(client, slot)`, which cost an idle connection about 110
    /// bytes) and its broker subscription.
    clients: HashMap<ClientId, ClientEntry>,
    /// The client of every watcher.
    watches: HashMap<WatchId, ClientId>,
    /// Generations seen, and the broker epoch.
    claims: Claims,
    /// The highest id this node delivered to each `(client, slot)`, across its sessions: a
    /// delivery at or below it is a redelivery (for [`HubStats::redeliveries`]). Bounded by
    /// [`DELIVERED_MEMORY`] entries.
    delivered_high: HashMap<(ClientId, Slot), MessageId>,
    /// What each store or broker request under way is for.
    pending: HashMap<RequestId, Purpose>,
    /// Retries and ack deadlines, earliest first.
    timers: BTreeMap<TimerKey, Timer>,
    /// Outputs not yet taken by [`Hub::poll_output`].
    outputs: VecDeque<Output>,
    /// Source of session, request, ack and timer ids (one counter: each is unique).
    next_id: u64,
    stats: HubStats,
    /// Receipts not yet handed out: the last output of a drain carries them all, when no
    /// earlier [`StoreOp::Receipts`] is under way.
    receipts: Vec<Receipt>,
    /// A [`StoreOp::Receipts`] is under way.
    receipts_in_flight: bool,
    /// Pushes recalled lately: their copies are dropped from reads and notifications.
    recalled: HashSet<PushId>,
}

impl Hub {
    /// A Hub with no session.
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            config,
            sessions: HashMap::new(),
            clients: HashMap::new(),
            watches: HashMap::new(),
            claims: Claims::default(),
            delivered_high: HashMap::new(),
            pending: HashMap::new(),
            timers: BTreeMap::new(),
            outputs: VecDeque::new(),
            next_id: 1,
            stats: HubStats::default(),
            receipts: Vec::new(),
            receipts_in_flight: false,
            recalled: HashSet::new(),
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> HubStats {
        HubStats {
            sessions: self.sessions.len() as u64,
            watchers: self.watches.len() as u64,
            ..self.stats
        }
    }

    /// Whether `conn` holds a session (connected and not yet ended, kicked or closed).
    pub fn has_session(&self, conn: ConnId) -> bool {
        self.sessions.contains_key(&conn)
    }

    /// Handles one input at `now`. Drain [`Hub::poll_output`] afterwards.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connect { conn, identity } => self.connect(conn, identity),
            Input::Disconnect { conn } => {
                if self.end_session(conn).is_none() {
                    log::debug!("disconnect of unknown connection {conn}");
                }
            }
            Input::Ack { conn, ack } => self.ack(now, conn, ack),
            Input::Commit { conn, n } => self.commit(now, conn, n),
            Input::StoreDone { req, result } => self.store_done(now, req, result),
            Input::BrokerDone { req, result } => self.broker_done(now, req, result),
            Input::Broker(event) => self.broker_event(now, event),
            Input::Watch { watch, client } => self.watch(watch, client),
            Input::Unwatch { watch } => match self.watches.remove(&watch) {
                Some(client) => {
                    if let Some(e) = self.clients.get_mut(&client) {
                        e.watchers.remove(&watch);
                    }
                    self.let_go(&client);
                }
                None => log::debug!("unwatch of unknown watcher {watch}"),
            },
        }
    }

    /// The next thing for the caller to do, if any.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() && !self.receipts.is_empty() && !self.receipts_in_flight {
            self.receipts_in_flight = true;
            let receipts = std::mem::take(&mut self.receipts);
            let n = receipts.len();
            self.request_store(StoreOp::Receipts { receipts }, Purpose::Receipts(n));
        }
        self.outputs.pop_front()
    }

    /// When [`Hub::handle_timeout`] must be called next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Fires every timer due at `now`. Drain [`Hub::poll_output`] afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.timers.first_entry() {
            if due.key().0 > now {
                break;
            }
            let timer = due.remove();
            self.fire(now, timer);
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    fn connect(&mut self, conn: ConnId, identity: crate::identity::Identity) {
        if self.sessions.contains_key(&conn) {
            log::warn!("connect of {conn} which already has a session: ignored");
            return;
        }
        let sid = self.fresh_id();
        let client = identity.client.clone();
        log::debug!(
            "session {conn} for {} slot {} ({:?})",
            client,
            identity.slot,
            identity.mode
        );
        self.sessions
            .insert(conn, Box::new(Session::new(sid, &identity)));
        let conns = &mut self
            .clients
            .entry(client.clone())
            .or_insert_with(ClientEntry::new)
            .conns;
        if let Err(at) = conns.binary_search(&conn) {
            conns.insert(at, conn);
        }
        if self.hold(client) {
            self.request_claim(conn, false);
        }
    }

    fn ack(&mut self, now: Instant, conn: ConnId, ack: AckId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            log::debug!("ack {ack} for unknown connection {conn}");
            return;
        };
        let Some(batch) = s.acknowledged(ack) else {
            log::debug!("unknown or repeated ack {ack} on {conn}: ignored");
            return;
        };
        let (client, slot, through) = (s.client.clone(), s.slot, s.acked_through());
        if let Some(t) = batch.timer {
            self.timers.remove(&t);
        }
        self.receipts_of(&client, slot, ReceiptKind::Acked, &batch.pushes);
        self.write_acks(client, slot, batch.ids, through, 0);
        self.progress(now, conn);
    }

    fn commit(&mut self, now: Instant, conn: ConnId, n: u64) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            log::debug!("commit for unknown connection {conn}");
            return;
        };
        if s.mode != Mode::Commit {
            log::debug!("commit on ack-mode session {conn}: ignored");
            return;
        }
        let (ids, timers, pushes) = s.committed(n);
        let (client, slot, through) = (s.client.clone(), s.slot, s.acked_through());
        for t in timers {
            self.timers.remove(&t);
        }
        self.receipts_of(&client, slot, ReceiptKind::Acked, &pushes);
        if !ids.is_empty() {
            self.write_acks(client, slot, ids, through, 0);
        }
        self.progress(now, conn);
    }

    fn store_done(
        &mut self,
        now: Instant,
        req: RequestId,
        result: Result<StoreReply, crate::StoreError>,
    ) {
        let Some(pending) = self.pending.remove(&req) else {
            log::debug!("result of unknown store request {req}");
            return;
        };
        if result.is_err() {
            self.stats.store_errors += 1;
        }
        match pending {
            Purpose::Load { conn, sid } => self.load_done(now, conn, sid, result),
            Purpose::Ack {
                client,
                slot,
                ids,
                through,
                attempt,
            } => match result {
                Ok(_) => self.stats.acks += ids.len() as u64,
                Err(e) if attempt < self.config.ack_retries => {
                    log::warn!("ack write for {client} slot {slot} failed, retrying: {e}");
                    let delay = self.backoff(attempt + 1);
                    self.set_timer(
                        now,
                        delay,
                        Timer::RetryAck {
                            client,
                            slot,
                            ids,
                            through,
                            attempt: attempt + 1,
                        },
                    );
                }
                Err(e) => log::warn!(
                    "ack write for {client} slot {slot} failed {attempt} times, giving up \
                     (the messages will be delivered again): {e}"
                ),
            },
            Purpose::Receipts(n) => {
                self.receipts_in_flight = false;
                if let Err(e) = result {
                    log::warn!(
                        "{n} receipts could not be recorded (their times stay unknown): {e}"
                    );
                }
            }
            other => log::warn!("store result for a broker request {other:?}: ignored"),
        }
    }

    fn broker_done(
        &mut self,
        now: Instant,
        req: RequestId,
        result: Result<BrokerReply, crate::BrokerError>,
    ) {
        let Some(pending) = self.pending.remove(&req) else {
            log::debug!("result of unknown broker request {req}");
            return;
        };
        if result.is_err() {
            self.stats.broker_errors += 1;
        }
        match pending {
            Purpose::Subscribe { client } => self.subscribe_done(now, client, result.is_ok()),
            Purpose::Unsubscribe { client } => self.unsubscribe_done(client, result.is_ok()),
            Purpose::Claim {
                conn,
                sid,
                renew,
                epoch,
                key,
            } => match result {
                Ok(BrokerReply::Claimed(g)) if self.session_mut(conn, sid).is_none() => {
                    // The session ended while its claim was under way: the claim recorded it
                    // online; that entry goes.
                    self.end_claim(key, g);
                }
                Ok(BrokerReply::Claimed(_)) if epoch != self.claims.epoch => {
                    // Answered across a resync: claim again in the broker's present state.
                    let live = self.session_mut(conn, sid).map(|s| s.phase == Phase::Live);
                    if let Some(live) = live {
                        self.request_claim(conn, live);
                    }
                }
                Ok(BrokerReply::Claimed(g)) => self.claimed(now, conn, sid, g, renew),
                other => {
                    let Some(s) = self.session_mut(conn, sid) else {
                        return;
                    };
                    log::warn!(
                        "claim of {} slot {} failed, retrying: {other:?}",
                        s.client,
                        s.slot
                    );
                    s.failures += 1;
                    let n = s.failures;
                    let delay = self.backoff(n);
                    self.set_timer(now, delay, Timer::RetryClaim { conn, sid, renew });
                }
            },
            Purpose::EndSession => {
                if let Err(e) = result {
                    log::warn!("a session's end could not be recorded in the broker: {e}");
                }
            }
            other => log::warn!("broker result for a store request {other:?}: ignored"),
        }
    }

    fn broker_event(&mut self, now: Instant, event: BrokerEvent) {
        match event {
            BrokerEvent::Notify {
                client,
                last,
                message,
            } => {
                let conns = match self.clients.get(&client) {
                    Some(e) => e.conns.clone(),
                    None => return,
                };
                self.wake(&client);
                // The notified message, when attached, is usable only as `last` itself, and
                // not when its push was recalled meanwhile (a read then skips it).
                let message = message.filter(|m| m.id == last && !self.is_recalled(m));
                let room = self.config.window.max(1);
                for conn in conns {
                    if let Some(s) = self.sessions.get_mut(&conn) {
                        s.notified(last, message.as_ref(), room);
                    }
                    self.progress(now, conn);
                }
            }
            BrokerEvent::Claim {
                client,
                slot,
                generation,
                node,
            } => {
                log::debug!("claim of {client} slot {slot} generation {generation} by {node}");
                let key = (client, slot);
                self.claims.seen(&key, generation);
                self.kick_older(&key, generation);
            }
            BrokerEvent::Resync => {
                log::info!("broker resync: every session renews its claim and re-reads its queue");
                // The broker may have lost its state (a restarted Redis counts generations from
                // zero again): generations seen before mean nothing now. Every live session
                // claims anew, so that a login after the resync gets a higher generation than
                // the sessions that were already there, and wins as it should.
                self.claims.resync();
                let conns = sorted(self.sessions.keys().copied());
                for conn in &conns {
                    if self
                        .sessions
                        .get(conn)
                        .is_some_and(|s| s.phase == Phase::Live)
                    {
                        self.request_claim(*conn, true);
                    }
                }
                for conn in conns {
                    if let Some(s) = self.sessions.get_mut(&conn) {
                        s.look_again();
                    }
                    self.progress(now, conn);
                }
                // Notifications may have been missed: every watcher reads again.
                for watch in sorted(self.watches.keys().copied()) {
                    self.outputs.push_back(Output::Wake { watch });
                }
                // Subscriptions that were being retried go now.
                let retry = sorted(
                    self.clients
                        .iter()
                        .filter(|(_, e)| e.sub == Sub::Retrying)
                        .map(|(c, _)| c.clone()),
                );
                for client in retry {
                    self.resubscribe(client);
                }
            }
            BrokerEvent::Recall { client, push } => self.recalled(&client, push),
        }
    }

    /// Recall of `push`: the sessions of `client` drop what they hold of it undelivered.
    fn recalled(&mut self, client: &ClientId, push: PushId) {
        if self.recalled.len() >= RECALLED_MEMORY {
            self.recalled.clear();
        }
        self.recalled.insert(push);
        let Some(e) = self.clients.get(client) else {
            return;
        };
        for conn in e.conns.clone() {
            if let Some(s) = self.sessions.get_mut(&conn) {
                s.buffer.retain(|m| m.push != Some(push));
            }
        }
    }

    /// Whether `m` is a copy of a push recalled lately.
    pub(super) fn is_recalled(&self, m: &crate::message::Message) -> bool {
        m.push.is_some_and(|p| self.recalled.contains(&p))
    }

    /// Queues receipts of `kind` for the copies `pushes` of `client` on `slot`.
    pub(super) fn receipts_of(
        &mut self,
        client: &ClientId,
        slot: Slot,
        kind: ReceiptKind,
        pushes: &[(PushId, MessageId)],
    ) {
        self.receipts
            .extend(pushes.iter().map(|(push, id)| Receipt {
                push: *push,
                client: client.clone(),
                id: *id,
                slot,
                kind,
                at_ms: 0,
            }));
    }

    // ---- plumbing -----------------------------------------------------------------------

    fn session_mut(&mut self, conn: ConnId, sid: u64) -> Option<&mut Session> {
        self.sessions
            .get_mut(&conn)
            .map(|s| &mut **s)
            .filter(|s| s.sid == sid)
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn request_store(&mut self, op: StoreOp, pending: Purpose) {
        let req = RequestId(self.fresh_id());
        self.pending.insert(req, pending);
        self.outputs.push_back(Output::Store { req, op });
    }

    fn request_broker(&mut self, op: BrokerOp, pending: Purpose) {
        let req = RequestId(self.fresh_id());
        self.pending.insert(req, pending);
        self.outputs.push_back(Output::Broker { req, op });
    }
}

#[cfg(test)]
mod tests;
