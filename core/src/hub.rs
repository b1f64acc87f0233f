//! The [`Hub`]: every session of one node, as a sans-IO state machine.
//!
//! A session goes: subscribed (its client's broker channels reach this node) → claimed (it
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::identity::Mode;
use crate::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use crate::io::{
    AckId, BrokerOp, BrokerReply, CloseReason, ConnId, Input, KickReason, Output, RequestId,
    StoreOp, StoreReply, WatchId,
};
use crate::message::Message;
use crate::ports::BrokerEvent;

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
    /// ([`CloseReason::AckTimeout`]); `None` waits forever.
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

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for its client's broker subscription.
    Subscribing,
    /// Waiting for (or retrying) its claim.
    Claiming,
    /// Delivering.
    Live,
}

/// The store read of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// No read under way.
    Idle,
    /// A read is under way; `again` = read once more when it returns (something was notified
    /// meanwhile).
    Reading { again: bool },
    /// The last read failed; a retry timer is set.
    Waiting,
}

/// One delivered, unacknowledged batch.
#[derive(Debug)]
struct Batch {
    ack: Option<AckId>,
    ids: Vec<MessageId>,
    /// The ack-timeout timer of this batch.
    timer: Option<TimerKey>,
}

/// One session.
#[derive(Debug)]
struct Session {
    /// Internal id, unique for the Hub's life: results for ended sessions are recognized.
    sid: u64,
    client: ClientId,
    slot: Slot,
    mode: Mode,
    phase: Phase,
    generation: Option<Generation>,
    /// Every unacknowledged message up to this id has been loaded (and buffered, delivered or
    /// acknowledged).
    cursor: MessageId,
    /// Loaded, not yet delivered, oldest first.
    buffer: VecDeque<Message>,
    /// Delivered, not yet acknowledged, oldest first.
    in_flight: VecDeque<Batch>,
    in_flight_count: usize,
    load: Load,
    /// The last read returned less than asked: the store has nothing beyond the cursor until
    /// a notification says otherwise.
    drained: bool,
    /// Consecutive failures of the current step, for backoff.
    failures: u32,
    /// Commit mode: the client asked for the next message.
    commit_owed: bool,
}

/// The broker subscription of one client on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Unsubscribed,
    Subscribing,
    /// The last attempt failed; a retry timer is set.
    Retrying,
    Subscribed,
    /// Unsubscribe under way; `resubscribe` = a session arrived meanwhile.
    Unsubscribing {
        resubscribe: bool,
    },
}

/// What this node holds for one client: the holders of its broker subscription (sessions
/// and watchers) and the subscription's state.
#[derive(Debug)]
struct ClientEntry {
    /// Its sessions on this node.
    conns: HashSet<ConnId>,
    /// Its watchers on this node (ordered: they are woken in a fixed order).
    watchers: BTreeSet<WatchId>,
    sub: Sub,
    /// Consecutive failed subscribe attempts, for backoff.
    failures: u32,
}

impl ClientEntry {
    fn new() -> ClientEntry {
        ClientEntry {
            conns: HashSet::new(),
            watchers: BTreeSet::new(),
            sub: Sub::Unsubscribed,
            failures: 0,
        }
    }

    /// Nothing on this node needs the subscription any more.
    fn unused(&self) -> bool {
        self.conns.is_empty() && self.watchers.is_empty()
    }
}

/// What a request was for.
#[derive(Debug)]
enum Pending {
    Load {
        conn: ConnId,
        sid: u64,
    },
    Claim {
        conn: ConnId,
        sid: u64,
        /// A live session renewing its claim after a broker resync (it keeps delivering).
        renew: bool,
        /// [`Hub::epoch`] when the claim was asked for: a generation handed out before the
        /// latest resync may come from a broker state that is gone.
        epoch: u64,
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
        attempt: u32,
    },
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    RetryLoad {
        conn: ConnId,
        sid: u64,
    },
    RetryClaim {
        conn: ConnId,
        sid: u64,
        renew: bool,
    },
    RetrySubscribe {
        client: ClientId,
    },
    RetryAck {
        client: ClientId,
        slot: Slot,
        ids: Vec<MessageId>,
        attempt: u32,
    },
    AckDeadline {
        conn: ConnId,
        sid: u64,
    },
}

/// The items in order: what the Hub does for many sessions or clients at once happens in an
/// order that does not depend on hash maps' per-process random seeds, so a simulation replays
/// exactly from its seed.
fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort_unstable();
    v
}

/// Timers are ordered by deadline, then by creation.
type TimerKey = (Instant, u64);

/// Bound of the per-slot "highest delivered" memory used to count redeliveries.
const DELIVERED_MEMORY: usize = 100_000;

/// All sessions of one node. See the module docs and the crate docs for the run loop.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    now: Option<Instant>,
    sessions: HashMap<ConnId, Session>,
    by_slot: HashMap<(ClientId, Slot), Vec<ConnId>>,
    clients: HashMap<ClientId, ClientEntry>,
    /// The client of every watcher.
    watches: HashMap<WatchId, ClientId>,
    highest: HashMap<(ClientId, Slot), Generation>,
    /// How many broker resyncs this Hub has seen; claims are tagged with it.
    epoch: u64,
    delivered_high: HashMap<(ClientId, Slot), MessageId>,
    pending: HashMap<RequestId, Pending>,
    timers: BTreeMap<TimerKey, Timer>,
    outputs: VecDeque<Output>,
    next_id: u64,
    stats: HubStats,
}

impl Hub {
    /// A Hub with no session.
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            config,
            now: None,
            sessions: HashMap::new(),
            by_slot: HashMap::new(),
            clients: HashMap::new(),
            watches: HashMap::new(),
            highest: HashMap::new(),
            epoch: 0,
            delivered_high: HashMap::new(),
            pending: HashMap::new(),
            timers: BTreeMap::new(),
            outputs: VecDeque::new(),
            next_id: 1,
            stats: HubStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Counters since start.
    pub fn stats(&self) -> HubStats {
        HubStats {
            sessions: self.sessions.len() as u64,
            ..self.stats
        }
    }

    /// Whether `conn` holds a session (connected and not yet ended, kicked or closed).
    pub fn has_session(&self, conn: ConnId) -> bool {
        self.sessions.contains_key(&conn)
    }

    /// Handles one input at `now`. Drain [`Hub::poll_output`] afterwards.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.now = Some(now);
        match input {
            Input::Connect { conn, identity } => self.connect(conn, identity),
            Input::Disconnect { conn } => {
                if self.end_session(conn).is_none() {
                    log::debug!("disconnect of unknown connection {conn:?}");
                }
            }
            Input::Ack { conn, ack } => self.ack(conn, ack),
            Input::Commit { conn, n } => self.commit(conn, n),
            Input::StoreDone { req, result } => self.store_done(req, result),
            Input::BrokerDone { req, result } => self.broker_done(req, result),
            Input::Broker(event) => self.broker_event(event),
            Input::Watch { watch, client } => self.watch(watch, client),
            Input::Unwatch { watch } => match self.watches.remove(&watch) {
                Some(client) => {
                    if let Some(e) = self.clients.get_mut(&client) {
                        e.watchers.remove(&watch);
                    }
                    self.let_go(&client);
                }
                None => log::debug!("unwatch of unknown watcher {watch:?}"),
            },
        }
    }

    /// The next thing for the caller to do, if any.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Hub::handle_timeout`] must be called next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Fires every timer due at `now`. Drain [`Hub::poll_output`] afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        while let Some((&key, _)) = self.timers.iter().next() {
            if key.0 > now {
                break;
            }
            let timer = self.timers.remove(&key).expect("key just seen");
            self.fire(timer);
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    fn connect(&mut self, conn: ConnId, identity: crate::identity::Identity) {
        if self.sessions.contains_key(&conn) {
            log::warn!("connect of {conn:?} which already has a session: ignored");
            return;
        }
        let sid = self.fresh_id();
        let client = identity.client.clone();
        log::debug!(
            "session {conn:?} for {} slot {} ({:?})",
            client,
            identity.slot,
            identity.mode
        );
        self.sessions.insert(
            conn,
            Session {
                sid,
                client: client.clone(),
                slot: identity.slot,
                mode: identity.mode,
                phase: Phase::Subscribing,
                generation: None,
                cursor: MessageId::ZERO,
                buffer: VecDeque::new(),
                in_flight: VecDeque::new(),
                in_flight_count: 0,
                load: Load::Idle,
                drained: false,
                failures: 0,
                commit_owed: false,
            },
        );
        self.by_slot
            .entry((client.clone(), identity.slot))
            .or_default()
            .push(conn);
        self.clients
            .entry(client.clone())
            .or_insert_with(ClientEntry::new)
            .conns
            .insert(conn);
        if self.hold(client) {
            self.request_claim(conn, false);
        }
    }

    fn watch(&mut self, watch: WatchId, client: ClientId) {
        if self.watches.contains_key(&watch) {
            log::warn!("watch of {watch:?} which already watches: ignored");
            return;
        }
        self.watches.insert(watch, client.clone());
        self.clients
            .entry(client.clone())
            .or_insert_with(ClientEntry::new)
            .watchers
            .insert(watch);
        // Already subscribed: every notification from now on reaches the watcher.
        // Otherwise the watcher is woken once the subscription starts.
        self.hold(client);
    }

    /// Makes sure `client`'s subscription is (or is being) taken, for a holder just added to
    /// its entry. True when it is in place already.
    fn hold(&mut self, client: ClientId) -> bool {
        let Some(entry) = self.clients.get_mut(&client) else {
            return false;
        };
        match entry.sub {
            Sub::Subscribed => return true,
            Sub::Unsubscribed => {
                entry.sub = Sub::Subscribing;
                self.request_broker(
                    BrokerOp::Subscribe {
                        client: client.clone(),
                    },
                    Pending::Subscribe { client },
                );
            }
            Sub::Unsubscribing { .. } => entry.sub = Sub::Unsubscribing { resubscribe: true },
            Sub::Subscribing | Sub::Retrying => {}
        }
        false
    }

    /// After a holder of `client`'s subscription left: releases the subscription when nothing
    /// on this node needs it any more.
    fn let_go(&mut self, client: &ClientId) {
        let Some(entry) = self.clients.get_mut(client) else {
            return;
        };
        if !entry.unused() {
            return;
        }
        match entry.sub {
            Sub::Subscribed => {
                self.release(client.clone());
                return;
            }
            Sub::Unsubscribing { .. } => entry.sub = Sub::Unsubscribing { resubscribe: false },
            // Finishes (or is dropped) when its result or timer comes.
            Sub::Subscribing | Sub::Retrying | Sub::Unsubscribed => {}
        }
        if entry.sub == Sub::Retrying || entry.sub == Sub::Unsubscribed {
            self.clients.remove(client);
            self.forget_generations(client);
        }
    }

    /// Tells every watcher of `client` to read again.
    fn wake(&mut self, client: &ClientId) {
        if let Some(e) = self.clients.get(client) {
            for &watch in &e.watchers {
                self.outputs.push_back(Output::Wake { watch });
            }
        }
    }

    fn ack(&mut self, conn: ConnId, ack: AckId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            log::debug!("ack {ack:?} for unknown connection {conn:?}");
            return;
        };
        let Some(pos) = s.in_flight.iter().position(|b| b.ack == Some(ack)) else {
            log::debug!("unknown or repeated ack {ack:?} on {conn:?}: ignored");
            return;
        };
        let batch = s.in_flight.remove(pos).expect("position is valid");
        s.in_flight_count -= batch.ids.len();
        let (client, slot) = (s.client.clone(), s.slot);
        if let Some(t) = batch.timer {
            self.timers.remove(&t);
        }
        self.write_acks(client, slot, batch.ids, 0);
        self.progress(conn);
    }

    fn commit(&mut self, conn: ConnId, n: u64) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            log::debug!("commit for unknown connection {conn:?}");
            return;
        };
        if s.mode != Mode::Commit {
            log::debug!("commit on ack-mode session {conn:?}: ignored");
            return;
        }
        let mut ids = Vec::new();
        let mut timers = Vec::new();
        let mut left = n;
        while left > 0 {
            let Some(batch) = s.in_flight.pop_front() else {
                log::debug!("commit {n} on {conn:?} exceeds what is in flight; the rest ignored");
                break;
            };
            s.in_flight_count -= batch.ids.len();
            left = left.saturating_sub(batch.ids.len() as u64);
            ids.extend(batch.ids);
            timers.extend(batch.timer);
        }
        s.commit_owed = true;
        let (client, slot) = (s.client.clone(), s.slot);
        for t in timers {
            self.timers.remove(&t);
        }
        if !ids.is_empty() {
            self.write_acks(client, slot, ids, 0);
        }
        self.progress(conn);
    }

    fn store_done(&mut self, req: RequestId, result: Result<StoreReply, crate::StoreError>) {
        let Some(pending) = self.pending.remove(&req) else {
            log::debug!("result of unknown store request {req:?}");
            return;
        };
        if result.is_err() {
            self.stats.store_errors += 1;
        }
        match pending {
            Pending::Load { conn, sid } => self.load_done(conn, sid, result),
            Pending::Ack {
                client,
                slot,
                ids,
                attempt,
            } => match result {
                Ok(_) => self.stats.acks += ids.len() as u64,
                Err(e) if attempt < self.config.ack_retries => {
                    log::warn!("ack write for {client} slot {slot} failed, retrying: {e}");
                    let delay = self.backoff(attempt + 1);
                    self.set_timer(
                        delay,
                        Timer::RetryAck {
                            client,
                            slot,
                            ids,
                            attempt: attempt + 1,
                        },
                    );
                }
                Err(e) => log::warn!(
                    "ack write for {client} slot {slot} failed {attempt} times, giving up \
                     (the messages will be delivered again): {e}"
                ),
            },
            other => log::warn!("store result for a broker request {other:?}: ignored"),
        }
    }

    fn load_done(&mut self, conn: ConnId, sid: u64, result: Result<StoreReply, crate::StoreError>) {
        let limit = self.config.load_limit;
        let retry_delay;
        {
            let Some(s) = self.session_mut(conn, sid) else {
                return;
            };
            match result {
                Ok(StoreReply::Messages(messages)) => {
                    let again = matches!(s.load, Load::Reading { again: true });
                    s.load = Load::Idle;
                    s.failures = 0;
                    s.drained = messages.len() < limit && !again;
                    for m in messages {
                        // Only ids beyond the cursor, in increasing order.
                        if m.id > s.cursor {
                            s.cursor = m.id;
                            s.buffer.push_back(m);
                        }
                    }
                    self.progress(conn);
                    return;
                }
                Ok(StoreReply::Acked) => {
                    log::warn!("store answered a read with Acked: treated as a failure");
                    s.failures += 1;
                }
                Err(ref e) => {
                    log::warn!(
                        "read for {} slot {} failed, retrying: {e}",
                        s.client,
                        s.slot
                    );
                    s.failures += 1;
                }
            }
            s.load = Load::Waiting;
            retry_delay = s.failures;
        }
        let delay = self.backoff(retry_delay);
        self.set_timer(delay, Timer::RetryLoad { conn, sid });
    }

    fn broker_done(&mut self, req: RequestId, result: Result<BrokerReply, crate::BrokerError>) {
        let Some(pending) = self.pending.remove(&req) else {
            log::debug!("result of unknown broker request {req:?}");
            return;
        };
        if result.is_err() {
            self.stats.broker_errors += 1;
        }
        match pending {
            Pending::Subscribe { client } => self.subscribe_done(client, result.is_ok()),
            Pending::Unsubscribe { client } => self.unsubscribe_done(client, result.is_ok()),
            Pending::Claim {
                conn,
                sid,
                renew,
                epoch,
            } => match result {
                Ok(BrokerReply::Claimed(_)) if epoch != self.epoch => {
                    // Answered across a resync: claim again in the broker's present state.
                    let live = self.session_mut(conn, sid).map(|s| s.phase == Phase::Live);
                    if let Some(live) = live {
                        self.request_claim(conn, live);
                    }
                }
                Ok(BrokerReply::Claimed(g)) => self.claimed(conn, sid, g, renew),
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
                    self.set_timer(delay, Timer::RetryClaim { conn, sid, renew });
                }
            },
            other => log::warn!("broker result for a store request {other:?}: ignored"),
        }
    }

    fn broker_event(&mut self, event: BrokerEvent) {
        match event {
            BrokerEvent::Notify {
                client,
                last,
                message,
            } => {
                let conns = match self.clients.get(&client) {
                    Some(e) => sorted(e.conns.iter().copied()),
                    None => return,
                };
                self.wake(&client);
                // The notified message, when attached, is usable only as `last` itself.
                let message = message.filter(|m| m.id == last);
                let room = self.config.window.max(1);
                for conn in conns {
                    if let Some(s) = self.sessions.get_mut(&conn) {
                        match &message {
                            // The very next message after the cursor, and room to buffer it:
                            // exactly what a read would return next, so no read is needed.
                            // (Anything later than the cursor + 1 may have a gap before it,
                            // and a full buffer is left to reads, to stay bounded.)
                            Some(m)
                                if s.cursor.0.checked_add(1) == Some(last.0)
                                    && s.buffer.len() < room =>
                            {
                                s.cursor = last;
                                s.buffer.push_back(m.clone());
                            }
                            _ if last > s.cursor => {
                                s.drained = false;
                                if let Load::Reading { .. } = s.load {
                                    s.load = Load::Reading { again: true };
                                }
                            }
                            _ => {}
                        }
                    }
                    self.progress(conn);
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
                let high = self.highest.entry(key.clone()).or_default();
                if generation > *high {
                    *high = generation;
                }
                self.kick_older(&key, generation);
            }
            BrokerEvent::Resync => {
                log::info!("broker resync: every session renews its claim and re-reads its queue");
                // The broker may have lost its state (a restarted Redis counts generations from
                // zero again): generations seen before mean nothing now. Every live session
                // claims anew, so that a login after the resync gets a higher generation than
                // the sessions that were already there, and wins as it should.
                self.highest.clear();
                self.epoch += 1;
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
                        s.drained = false;
                        if let Load::Reading { .. } = s.load {
                            s.load = Load::Reading { again: true };
                        }
                    }
                    self.progress(conn);
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
        }
    }

    // ---- timers -------------------------------------------------------------------------

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::RetryLoad { conn, sid } => {
                if let Some(s) = self.session_mut(conn, sid) {
                    if s.load == Load::Waiting {
                        s.load = Load::Idle;
                        s.drained = false;
                    }
                    self.progress(conn);
                }
            }
            Timer::RetryClaim { conn, sid, renew } => {
                if self.session_mut(conn, sid).is_some() {
                    self.request_claim(conn, renew);
                }
            }
            Timer::RetrySubscribe { client } => {
                if self
                    .clients
                    .get(&client)
                    .is_some_and(|e| e.sub == Sub::Retrying)
                {
                    self.resubscribe(client);
                }
            }
            Timer::RetryAck {
                client,
                slot,
                ids,
                attempt,
            } => {
                self.write_acks(client, slot, ids, attempt);
            }
            Timer::AckDeadline { conn, sid } => {
                let timeout = self.config.ack_timeout;
                let Some(s) = self.session_mut(conn, sid) else {
                    return;
                };
                log::info!(
                    "{} slot {} did not acknowledge within {:?}: closing",
                    s.client,
                    s.slot,
                    timeout
                );
                self.stats.ack_timeouts += 1;
                self.end_session(conn);
                self.outputs.push_back(Output::Close {
                    conn,
                    reason: CloseReason::AckTimeout,
                });
            }
        }
    }

    // ---- steps --------------------------------------------------------------------------

    /// Claims a generation for a session: a new one (`renew` false) waits for it before it
    /// delivers; a live one renewing its claim (`renew` true) keeps delivering meanwhile, and
    /// holds no generation until the answer, so that its own renewed claim, echoed by the
    /// broker, does not kick it.
    fn request_claim(&mut self, conn: ConnId, renew: bool) {
        let node = self.config.node.clone();
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if renew {
            s.generation = None;
        } else {
            s.phase = Phase::Claiming;
        }
        let (client, slot, sid) = (s.client.clone(), s.slot, s.sid);
        let epoch = self.epoch;
        self.request_broker(
            BrokerOp::Claim { client, slot, node },
            Pending::Claim {
                conn,
                sid,
                renew,
                epoch,
            },
        );
    }

    fn claimed(&mut self, conn: ConnId, sid: u64, generation: Generation, renew: bool) {
        let Some(s) = self.session_mut(conn, sid) else {
            return;
        };
        let key = (s.client.clone(), s.slot);
        let high = self.highest.get(&key).copied().unwrap_or_default();
        if generation < high {
            log::info!(
                "{} slot {} claimed generation {generation} but {high} exists: kicked",
                key.0,
                key.1
            );
            self.kick(conn);
            return;
        }
        let s = self.sessions.get_mut(&conn).expect("checked above");
        s.generation = Some(generation);
        if renew {
            self.highest.insert(key.clone(), generation);
            self.kick_older(&key, generation);
            return;
        }
        s.phase = Phase::Live;
        s.failures = 0;
        let commit_mode = s.mode == Mode::Commit;
        self.highest.insert(key.clone(), generation);
        self.kick_older(&key, generation);
        if commit_mode {
            // The seed's protocol: an empty `message` right after connect.
            self.outputs.push_back(Output::Deliver {
                conn,
                ack: None,
                messages: Vec::new(),
            });
        }
        self.progress(conn);
    }

    /// Kicks local sessions of `key` whose generation is below `generation`.
    fn kick_older(&mut self, key: &(ClientId, Slot), generation: Generation) {
        let Some(conns) = self.by_slot.get(key) else {
            return;
        };
        let older: Vec<ConnId> = conns
            .iter()
            .copied()
            .filter(|c| {
                self.sessions
                    .get(c)
                    .and_then(|s| s.generation)
                    .is_some_and(|g| g < generation)
            })
            .collect();
        for conn in older {
            self.kick(conn);
        }
    }

    fn kick(&mut self, conn: ConnId) {
        if self.end_session(conn).is_some() {
            self.stats.kicks += 1;
            self.outputs.push_back(Output::Kick {
                conn,
                reason: KickReason::Replaced,
            });
        }
    }

    /// Delivers what can be delivered and reads more when needed.
    fn progress(&mut self, conn: ConnId) {
        let window = self.config.window.max(1);
        let limit = self.config.load_limit.max(1);
        let ack_timeout = self.config.ack_timeout;
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.phase != Phase::Live {
            return;
        }
        let mut delivered: Vec<Message> = Vec::new();
        let mut ack = None;
        match s.mode {
            Mode::Ack => {
                let room = window.saturating_sub(s.in_flight_count);
                if room > 0 && !s.buffer.is_empty() {
                    let n = room.min(s.buffer.len());
                    delivered = s.buffer.drain(..n).collect();
                    ack = Some(AckId(self.next_id));
                    self.next_id += 1;
                }
            }
            Mode::Commit => {
                if s.commit_owed
                    && s.in_flight_count == 0
                    && let Some(m) = s.buffer.pop_front()
                {
                    s.commit_owed = false;
                    delivered.push(m);
                }
            }
        }
        let need_read = s.load == Load::Idle && !s.drained && s.buffer.len() < window;
        let (client, slot, cursor, sid) = (s.client.clone(), s.slot, s.cursor, s.sid);
        if !delivered.is_empty() {
            let ids: Vec<MessageId> = delivered.iter().map(|m| m.id).collect();
            s.in_flight_count += ids.len();
            let timer = ack_timeout.map(|d| {
                let key = (self.now.expect("time set by handle") + d, self.next_id);
                self.next_id += 1;
                key
            });
            if let Some(key) = timer {
                self.timers.insert(key, Timer::AckDeadline { conn, sid });
            }
            s.in_flight.push_back(Batch { ack, ids, timer });
            self.stats.deliveries += delivered.len() as u64;
            self.count_redeliveries(&client, slot, &delivered);
            self.outputs.push_back(Output::Deliver {
                conn,
                ack,
                messages: delivered,
            });
        }
        if need_read {
            if let Some(s) = self.sessions.get_mut(&conn) {
                s.load = Load::Reading { again: false };
            }
            self.request_store(
                StoreOp::Unacked {
                    client,
                    slot,
                    after: cursor,
                    limit,
                },
                Pending::Load { conn, sid },
            );
        }
    }

    fn count_redeliveries(&mut self, client: &ClientId, slot: Slot, delivered: &[Message]) {
        let key = (client.clone(), slot);
        let high = self.delivered_high.get(&key).copied().unwrap_or_default();
        let again = delivered.iter().filter(|m| m.id <= high).count();
        self.stats.redeliveries += again as u64;
        let top = delivered.last().map(|m| m.id).unwrap_or_default();
        if top > high {
            if self.delivered_high.len() >= DELIVERED_MEMORY
                && !self.delivered_high.contains_key(&key)
            {
                self.delivered_high.clear();
            }
            self.delivered_high.insert(key, top);
        }
    }

    fn write_acks(&mut self, client: ClientId, slot: Slot, ids: Vec<MessageId>, attempt: u32) {
        let op = StoreOp::Ack {
            client: client.clone(),
            slot,
            ids: ids.clone(),
        };
        self.request_store(
            op,
            Pending::Ack {
                client,
                slot,
                ids,
                attempt,
            },
        );
    }

    /// Forgets a session; releases its client's subscription after the last one.
    fn end_session(&mut self, conn: ConnId) -> Option<Session> {
        let s = self.sessions.remove(&conn)?;
        for b in &s.in_flight {
            if let Some(t) = b.timer {
                self.timers.remove(&t);
            }
        }
        let key = (s.client.clone(), s.slot);
        if let Some(list) = self.by_slot.get_mut(&key) {
            list.retain(|c| *c != conn);
            if list.is_empty() {
                self.by_slot.remove(&key);
            }
        }
        if let Some(entry) = self.clients.get_mut(&s.client) {
            entry.conns.remove(&conn);
        }
        self.let_go(&s.client);
        Some(s)
    }

    fn release(&mut self, client: ClientId) {
        if let Some(e) = self.clients.get_mut(&client) {
            e.sub = Sub::Unsubscribing { resubscribe: false };
        }
        self.request_broker(
            BrokerOp::Unsubscribe {
                client: client.clone(),
            },
            Pending::Unsubscribe { client },
        );
    }

    fn forget_generations(&mut self, client: &ClientId) {
        for n in 0..Slot::COUNT {
            let slot = Slot::new(i64::from(n)).expect("in range");
            self.highest.remove(&(client.clone(), slot));
        }
    }

    fn subscribe_done(&mut self, client: ClientId, ok: bool) {
        let Some(entry) = self.clients.get_mut(&client) else {
            return;
        };
        if !ok {
            entry.failures += 1;
            entry.sub = Sub::Retrying;
            let n = entry.failures;
            log::warn!("subscribe of {client} failed, retrying");
            let delay = self.backoff(n);
            self.set_timer(delay, Timer::RetrySubscribe { client });
            return;
        }
        entry.failures = 0;
        entry.sub = Sub::Subscribed;
        if entry.unused() {
            self.release(client);
            return;
        }
        // Pushes stored before the subscription started were not notified to this node.
        self.wake(&client);
        let Some(entry) = self.clients.get(&client) else {
            return;
        };
        let conns = sorted(entry.conns.iter().copied());
        for conn in conns {
            if self
                .sessions
                .get(&conn)
                .is_some_and(|s| s.phase == Phase::Subscribing)
            {
                self.request_claim(conn, false);
            }
        }
    }

    fn unsubscribe_done(&mut self, client: ClientId, ok: bool) {
        if !ok {
            // A stale subscription only brings events nobody needs; they are ignored.
            log::warn!("unsubscribe of {client} failed; its events will be ignored");
        }
        let Some(entry) = self.clients.get_mut(&client) else {
            return;
        };
        match entry.sub {
            Sub::Unsubscribing { resubscribe: true } if !entry.unused() => {
                self.resubscribe(client);
            }
            _ => {
                if entry.unused() {
                    self.clients.remove(&client);
                    self.forget_generations(&client);
                } else {
                    self.resubscribe(client);
                }
            }
        }
    }

    fn resubscribe(&mut self, client: ClientId) {
        if let Some(e) = self.clients.get_mut(&client) {
            e.sub = Sub::Subscribing;
        }
        self.request_broker(
            BrokerOp::Subscribe {
                client: client.clone(),
            },
            Pending::Subscribe { client },
        );
    }

    // ---- plumbing -----------------------------------------------------------------------

    fn session_mut(&mut self, conn: ConnId, sid: u64) -> Option<&mut Session> {
        self.sessions.get_mut(&conn).filter(|s| s.sid == sid)
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn request_store(&mut self, op: StoreOp, pending: Pending) {
        let req = RequestId(self.fresh_id());
        self.pending.insert(req, pending);
        self.outputs.push_back(Output::Store { req, op });
    }

    fn request_broker(&mut self, op: BrokerOp, pending: Pending) {
        let req = RequestId(self.fresh_id());
        self.pending.insert(req, pending);
        self.outputs.push_back(Output::Broker { req, op });
    }

    /// Delay before retry number `failures` (1 = first retry).
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.config
            .retry_min
            .saturating_mul(factor)
            .min(self.config.retry_max)
    }

    fn set_timer(&mut self, delay: Duration, timer: Timer) {
        let at = self.now.expect("time set by handle") + delay;
        let seq = self.fresh_id();
        self.timers.insert((at, seq), timer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::message::Payload;
    use crate::ports::{BrokerError, StoreError};

    fn c(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    fn msg(id: u64) -> Message {
        Message {
            id: MessageId(id),
            from: "t".into(),
            channel: vec![],
            data: Payload::from_json("1").unwrap(),
            ts: 0,
        }
    }

    struct T {
        hub: Hub,
        now: Instant,
    }

    impl T {
        fn new(window: usize) -> T {
            let mut cfg = HubConfig::new(NodeId::new("n1").unwrap());
            cfg.window = window;
            cfg.load_limit = 4;
            #[allow(clippy::disallowed_methods, reason = "a test's base instant")]
            let now = Instant::now();
            T {
                hub: Hub::new(cfg),
                now,
            }
        }
        fn input(&mut self, i: Input) -> Vec<Output> {
            self.hub.handle(self.now, i);
            std::iter::from_fn(|| self.hub.poll_output()).collect()
        }
        fn advance(&mut self, d: Duration) -> Vec<Output> {
            self.now += d;
            self.hub.handle_timeout(self.now);
            std::iter::from_fn(|| self.hub.poll_output()).collect()
        }
        /// Connects and completes subscribe + claim; returns the outputs after the claim.
        fn live(
            &mut self,
            conn: u64,
            client: &str,
            slot: i64,
            mode: Mode,
            gen_: u64,
        ) -> Vec<Output> {
            let out = self.input(Input::Connect {
                conn: ConnId(conn),
                identity: Identity {
                    client: c(client),
                    slot: Slot::new(slot).unwrap(),
                    mode,
                },
            });
            let mut out = self.answer_broker(out);
            if let Some(req) = claim_req(&out) {
                out = self.input(Input::BrokerDone {
                    req,
                    result: Ok(BrokerReply::Claimed(Generation(gen_))),
                });
            }
            out
        }
        /// Answers Subscribe requests with success; returns the rest.
        fn answer_broker(&mut self, out: Vec<Output>) -> Vec<Output> {
            let mut rest = Vec::new();
            for o in out {
                match o {
                    Output::Broker {
                        req,
                        op: BrokerOp::Subscribe { .. },
                    } => rest.extend(self.input(Input::BrokerDone {
                        req,
                        result: Ok(BrokerReply::Subscribed),
                    })),
                    other => rest.push(other),
                }
            }
            rest
        }
    }

    fn claim_req(out: &[Output]) -> Option<RequestId> {
        out.iter().find_map(|o| match o {
            Output::Broker {
                req,
                op: BrokerOp::Claim { .. },
            } => Some(*req),
            _ => None,
        })
    }

    fn load_req(out: &[Output]) -> Option<(RequestId, MessageId)> {
        out.iter().find_map(|o| match o {
            Output::Store {
                req,
                op: StoreOp::Unacked { after, .. },
            } => Some((*req, *after)),
            _ => None,
        })
    }

    fn delivers(out: &[Output]) -> Vec<(Option<AckId>, Vec<u64>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Deliver { ack, messages, .. } => {
                    Some((*ack, messages.iter().map(|m| m.id.0).collect()))
                }
                _ => None,
            })
            .collect()
    }

    fn messages(ids: &[u64]) -> Result<StoreReply, StoreError> {
        Ok(StoreReply::Messages(ids.iter().map(|i| msg(*i)).collect()))
    }

    #[test]
    fn connect_subscribes_claims_then_reads_from_zero() {
        let mut t = T::new(2);
        let out = t.input(Input::Connect {
            conn: ConnId(1),
            identity: Identity {
                client: c("a"),
                slot: Slot::new(0).unwrap(),
                mode: Mode::Ack,
            },
        });
        assert!(matches!(
            out.as_slice(),
            [Output::Broker {
                op: BrokerOp::Subscribe { .. },
                ..
            }]
        ));
        let out = t.answer_broker(out);
        assert!(claim_req(&out).is_some());
        assert!(load_req(&out).is_none(), "no read before the claim");
        let req = claim_req(&out).unwrap();
        let out = t.input(Input::BrokerDone {
            req,
            result: Ok(BrokerReply::Claimed(Generation(1))),
        });
        assert_eq!(load_req(&out).map(|l| l.1), Some(MessageId::ZERO));
    }

    #[test]
    fn ack_mode_respects_the_window_and_forwards_acks() {
        let mut t = T::new(2);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[1, 2, 3]),
        });
        let d = delivers(&out);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].1, vec![1, 2], "window of 2");
        // Less than asked: drained, no further read.
        assert!(load_req(&out).is_none());
        let out = t.input(Input::Ack {
            conn: ConnId(1),
            ack: d[0].0.unwrap(),
        });
        assert!(out.iter().any(|o| matches!(o, Output::Store { op: StoreOp::Ack { ids, .. }, .. } if ids == &[MessageId(1), MessageId(2)])));
        assert_eq!(delivers(&out)[0].1, vec![3]);
        // The same ack again is ignored.
        let again = t.input(Input::Ack {
            conn: ConnId(1),
            ack: d[0].0.unwrap(),
        });
        assert!(again.is_empty());
        // Unknown ack id, unknown conn: ignored.
        assert!(
            t.input(Input::Ack {
                conn: ConnId(1),
                ack: AckId(9999)
            })
            .is_empty()
        );
        assert!(
            t.input(Input::Ack {
                conn: ConnId(7),
                ack: AckId(1)
            })
            .is_empty()
        );
    }

    #[test]
    fn notify_reads_after_the_cursor() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[1]),
        });
        assert_eq!(delivers(&out)[0].1, vec![1]);
        // Notified of something it already has: nothing.
        assert!(
            t.input(Input::Broker(BrokerEvent::Notify {
                client: c("a"),
                last: MessageId(1),
                message: None,
            }))
            .is_empty()
        );
        let out = t.input(Input::Broker(BrokerEvent::Notify {
            client: c("a"),
            last: MessageId(2),
            message: None,
        }));
        let (req, after) = load_req(&out).unwrap();
        assert_eq!(after, MessageId(1));
        // A notification while reading causes one more read.
        let none = t.input(Input::Broker(BrokerEvent::Notify {
            client: c("a"),
            last: MessageId(3),
            message: None,
        }));
        assert!(load_req(&none).is_none());
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[1, 2]),
        });
        assert_eq!(
            delivers(&out)[0].1,
            vec![2],
            "ids at or below the cursor are dropped"
        );
        assert_eq!(load_req(&out).map(|l| l.1), Some(MessageId(2)));
    }

    #[test]
    fn a_notified_next_message_is_delivered_without_a_read() {
        let mut t = T::new(2);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[1]),
        });
        let (first_ack, ids) = delivers(&out).remove(0);
        assert_eq!(ids, vec![1]);
        let notify = |id: u64, message: Option<Message>| {
            Input::Broker(BrokerEvent::Notify {
                client: c("a"),
                last: MessageId(id),
                message,
            })
        };
        // The next id, attached: delivered at once, no read.
        let out = t.input(notify(2, Some(msg(2))));
        assert_eq!(delivers(&out).len(), 1);
        let (second_ack, ids) = delivers(&out).remove(0);
        assert_eq!(ids, vec![2]);
        assert!(load_req(&out).is_none(), "no read for a message in hand");
        // The window (2) is full: the next two are buffered (the buffer holds up to a window),
        // still without a read.
        let out = t.input(notify(3, Some(msg(3))));
        assert!(out.is_empty(), "buffered until an ack makes room: {out:?}");
        let out = t.input(notify(4, Some(msg(4))));
        assert!(out.is_empty(), "buffered: {out:?}");
        // The buffer is full: the next one is left to the store, read once there is room.
        let out = t.input(notify(5, Some(msg(5))));
        assert!(out.is_empty(), "no read while the buffer is full: {out:?}");
        let out = t.input(Input::Ack {
            conn: ConnId(1),
            ack: first_ack.expect("ack mode"),
        });
        assert_eq!(
            delivers(&out)[0].1,
            vec![3],
            "room for one: from the buffer"
        );
        let (req, after) = load_req(&out).expect("5 was not taken: read it");
        assert_eq!(after, MessageId(4));
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[5]),
        });
        assert!(delivers(&out).is_empty(), "the window is full again");
        let out = t.input(Input::Ack {
            conn: ConnId(1),
            ack: second_ack.expect("ack mode"),
        });
        assert_eq!(delivers(&out)[0].1, vec![4]);
        assert!(load_req(&out).is_none(), "the store had nothing beyond 5");
        // An attached message past a gap (7 while the cursor is at 5) is not taken: 6 may
        // still be on its way, so the store is asked.
        let out = t.input(notify(7, Some(msg(7))));
        let (_, after) = load_req(&out).expect("a read after the gap");
        assert_eq!(after, MessageId(5));
        assert!(delivers(&out).is_empty());
    }

    #[test]
    fn store_failure_retries_with_backoff() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: Err(StoreError::Unavailable("x".into())),
        });
        assert!(out.is_empty());
        assert_eq!(
            t.hub.poll_timeout(),
            Some(t.now + Duration::from_millis(100))
        );
        assert!(t.advance(Duration::from_millis(50)).is_empty());
        let out = t.advance(Duration::from_millis(50));
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: Err(StoreError::Unavailable("x".into())),
        });
        assert!(out.is_empty());
        assert_eq!(
            t.hub.poll_timeout(),
            Some(t.now + Duration::from_millis(200))
        );
        let out = t.advance(Duration::from_millis(200));
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[1]),
        });
        assert_eq!(delivers(&out)[0].1, vec![1]);
        assert_eq!(t.hub.stats().store_errors, 2);
    }

    #[test]
    fn failed_ack_writes_are_retried() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[1]),
        });
        let ack = delivers(&out)[0].0.unwrap();
        let out = t.input(Input::Ack {
            conn: ConnId(1),
            ack,
        });
        let req = out
            .iter()
            .find_map(|o| match o {
                Output::Store {
                    req,
                    op: StoreOp::Ack { .. },
                } => Some(*req),
                _ => None,
            })
            .unwrap();
        assert!(
            t.input(Input::StoreDone {
                req,
                result: Err(StoreError::Unavailable("x".into()))
            })
            .is_empty()
        );
        let out = t.advance(Duration::from_millis(100));
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Store {
                op: StoreOp::Ack { .. },
                ..
            }
        )));
    }

    #[test]
    fn commit_mode_follows_the_seed_protocol() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Commit, 1);
        assert_eq!(
            delivers(&out),
            vec![(None, vec![])],
            "the empty first message"
        );
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[1, 2]),
        });
        assert!(
            delivers(&out).is_empty(),
            "nothing until the client commits"
        );
        let out = t.input(Input::Commit {
            conn: ConnId(1),
            n: 0,
        });
        assert_eq!(delivers(&out), vec![(None, vec![1])]);
        let out = t.input(Input::Commit {
            conn: ConnId(1),
            n: 1,
        });
        assert!(out.iter().any(|o| matches!(o, Output::Store { op: StoreOp::Ack { ids, .. }, .. } if ids == &[MessageId(1)])));
        assert_eq!(delivers(&out), vec![(None, vec![2])]);
        // An oversized commit acks what is in flight and nothing more.
        let out = t.input(Input::Commit {
            conn: ConnId(1),
            n: 50,
        });
        assert!(out.iter().any(|o| matches!(o, Output::Store { op: StoreOp::Ack { ids, .. }, .. } if ids == &[MessageId(2)])));
        assert!(delivers(&out).is_empty());
        // The next stored message goes out at once: a commit is owed.
        let out = t.input(Input::Broker(BrokerEvent::Notify {
            client: c("a"),
            last: MessageId(3),
            message: None,
        }));
        let (req, _) = load_req(&out).unwrap();
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[3]),
        });
        assert_eq!(delivers(&out), vec![(None, vec![3])]);
    }

    #[test]
    fn newer_generation_kicks_older_local_and_remote() {
        let mut t = T::new(8);
        t.live(1, "a", 0, Mode::Ack, 1);
        let out = t.live(2, "a", 0, Mode::Ack, 2);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Kick {
                conn: ConnId(1),
                reason: KickReason::Replaced
            }
        )));
        assert!(!t.hub.has_session(ConnId(1)));
        // A claim from another node with a higher generation kicks session 2.
        let out = t.input(Input::Broker(BrokerEvent::Claim {
            client: c("a"),
            slot: Slot::new(0).unwrap(),
            generation: Generation(3),
            node: NodeId::new("n2").unwrap(),
        }));
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Kick {
                conn: ConnId(2),
                ..
            }
        )));
        assert_eq!(t.hub.stats().kicks, 2);
        // Other slots are independent.
        t.live(3, "a", 1, Mode::Ack, 1);
        assert!(t.hub.has_session(ConnId(3)));
    }

    #[test]
    fn a_claim_below_one_seen_is_kicked_at_once() {
        let mut t = T::new(8);
        let out = t.input(Input::Connect {
            conn: ConnId(1),
            identity: Identity {
                client: c("a"),
                slot: Slot::new(0).unwrap(),
                mode: Mode::Ack,
            },
        });
        let out = t.answer_broker(out);
        let req = claim_req(&out).unwrap();
        t.input(Input::Broker(BrokerEvent::Claim {
            client: c("a"),
            slot: Slot::new(0).unwrap(),
            generation: Generation(5),
            node: NodeId::new("n2").unwrap(),
        }));
        let out = t.input(Input::BrokerDone {
            req,
            result: Ok(BrokerReply::Claimed(Generation(4))),
        });
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Kick {
                conn: ConnId(1),
                ..
            }
        )));
    }

    #[test]
    fn claim_and_subscribe_failures_are_retried() {
        let mut t = T::new(8);
        let out = t.input(Input::Connect {
            conn: ConnId(1),
            identity: Identity {
                client: c("a"),
                slot: Slot::new(0).unwrap(),
                mode: Mode::Ack,
            },
        });
        let Output::Broker { req, .. } = &out[0] else {
            panic!()
        };
        let out = t.input(Input::BrokerDone {
            req: *req,
            result: Err(BrokerError::Unavailable("x".into())),
        });
        assert!(out.is_empty());
        let out = t.advance(Duration::from_millis(100));
        let out = t.answer_broker(out);
        let req = claim_req(&out).unwrap();
        assert!(
            t.input(Input::BrokerDone {
                req,
                result: Err(BrokerError::Unavailable("x".into()))
            })
            .is_empty()
        );
        let out = t.advance(Duration::from_millis(100));
        assert!(claim_req(&out).is_some());
    }

    #[test]
    fn last_session_releases_the_subscription() {
        let mut t = T::new(8);
        t.live(1, "a", 0, Mode::Ack, 1);
        t.live(2, "a", 1, Mode::Ack, 1);
        let out = t.input(Input::Disconnect { conn: ConnId(1) });
        assert!(!out.iter().any(|o| matches!(
            o,
            Output::Broker {
                op: BrokerOp::Unsubscribe { .. },
                ..
            }
        )));
        let out = t.input(Input::Disconnect { conn: ConnId(2) });
        let req = out
            .iter()
            .find_map(|o| match o {
                Output::Broker {
                    req,
                    op: BrokerOp::Unsubscribe { .. },
                } => Some(*req),
                _ => None,
            })
            .unwrap();
        // A session arriving while unsubscribing waits, then subscribes again.
        let out = t.input(Input::Connect {
            conn: ConnId(3),
            identity: Identity {
                client: c("a"),
                slot: Slot::new(0).unwrap(),
                mode: Mode::Ack,
            },
        });
        assert!(out.is_empty());
        let out = t.input(Input::BrokerDone {
            req,
            result: Ok(BrokerReply::Unsubscribed),
        });
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Broker {
                op: BrokerOp::Subscribe { .. },
                ..
            }
        )));
        // Disconnects of unknown connections are ignored.
        assert!(t.input(Input::Disconnect { conn: ConnId(99) }).is_empty());
    }

    fn wakes(out: &[Output]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                Output::Wake { watch } => Some(watch.0),
                _ => None,
            })
            .collect()
    }

    fn broker_op(out: &[Output]) -> Option<(RequestId, BrokerOp)> {
        out.iter().find_map(|o| match o {
            Output::Broker { req, op } => Some((*req, op.clone())),
            _ => None,
        })
    }

    #[test]
    fn watchers_share_the_subscription_and_are_woken() {
        let mut t = T::new(8);
        let watch = |n| Input::Watch {
            watch: WatchId(n),
            client: c("a"),
        };
        // The first watcher subscribes; it is woken once the subscription is in place.
        let out = t.input(watch(1));
        let (req, op) = broker_op(&out).expect("a subscribe");
        assert_eq!(op, BrokerOp::Subscribe { client: c("a") });
        assert!(wakes(&out).is_empty());
        let out = t.input(Input::BrokerDone {
            req,
            result: Ok(BrokerReply::Subscribed),
        });
        assert_eq!(wakes(&out), vec![1]);
        // A session and a second watcher share it: no second subscribe.
        t.live(1, "a", 0, Mode::Ack, 1);
        assert!(broker_op(&t.input(watch(2))).is_none());
        // A notification wakes both watchers; a resync too.
        let out = t.input(Input::Broker(BrokerEvent::Notify {
            client: c("a"),
            last: MessageId(1),
            message: None,
        }));
        assert_eq!(wakes(&out), vec![1, 2]);
        assert_eq!(
            wakes(&t.input(Input::Broker(BrokerEvent::Resync))),
            vec![1, 2]
        );
        // The subscription goes with its last holder, watcher or session.
        assert!(broker_op(&t.input(Input::Unwatch { watch: WatchId(1) })).is_none());
        assert!(broker_op(&t.input(Input::Disconnect { conn: ConnId(1) })).is_none());
        let out = t.input(Input::Unwatch { watch: WatchId(2) });
        let (_, op) = broker_op(&out).expect("an unsubscribe");
        assert_eq!(op, BrokerOp::Unsubscribe { client: c("a") });
        // Unknown and repeated unwatches change nothing.
        assert!(t.input(Input::Unwatch { watch: WatchId(2) }).is_empty());
    }

    #[test]
    fn a_watcher_outlives_a_failed_subscribe() {
        let mut t = T::new(8);
        let out = t.input(Input::Watch {
            watch: WatchId(7),
            client: c("a"),
        });
        let (req, _) = broker_op(&out).unwrap();
        let out = t.input(Input::BrokerDone {
            req,
            result: Err(BrokerError::Unavailable("x".into())),
        });
        assert!(out.is_empty());
        let out = t.advance(Duration::from_millis(100));
        let (req, op) = broker_op(&out).expect("the subscribe is retried for the watcher");
        assert_eq!(op, BrokerOp::Subscribe { client: c("a") });
        let out = t.input(Input::BrokerDone {
            req,
            result: Ok(BrokerReply::Subscribed),
        });
        assert_eq!(wakes(&out), vec![7]);
    }

    #[test]
    fn unacked_batches_time_out() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        t.input(Input::StoreDone {
            req,
            result: messages(&[1]),
        });
        let out = t.advance(Duration::from_secs(60));
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Close {
                conn: ConnId(1),
                reason: CloseReason::AckTimeout
            }
        )));
        assert!(!t.hub.has_session(ConnId(1)));
    }

    #[test]
    fn results_for_ended_sessions_are_ignored() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        t.input(Input::Disconnect { conn: ConnId(1) });
        let out = t.input(Input::StoreDone {
            req,
            result: messages(&[1]),
        });
        assert!(delivers(&out).is_empty());
        assert!(
            t.input(Input::StoreDone {
                req,
                result: messages(&[1])
            })
            .is_empty()
        );
    }

    #[test]
    fn resync_rereads_every_session() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        t.input(Input::StoreDone {
            req,
            result: messages(&[1]),
        });
        let out = t.input(Input::Broker(BrokerEvent::Resync));
        assert_eq!(load_req(&out).map(|l| l.1), Some(MessageId(1)));
    }

    #[test]
    fn after_a_resync_live_sessions_renew_their_claims_and_a_newer_login_still_wins() {
        let mut t = T::new(8);
        t.live(1, "a", 0, Mode::Ack, 5);
        // The broker comes back empty (a restarted Redis counts from zero again).
        let out = t.input(Input::Broker(BrokerEvent::Resync));
        let renew = claim_req(&out).expect("the live session claims anew");
        // Its own renewed claim, echoed before the answer, does not kick it.
        let out = t.input(Input::Broker(BrokerEvent::Claim {
            client: c("a"),
            slot: Slot::new(0).unwrap(),
            generation: Generation(1),
            node: NodeId::new("n1").unwrap(),
        }));
        assert!(!out.iter().any(|o| matches!(o, Output::Kick { .. })));
        let out = t.input(Input::BrokerDone {
            req: renew,
            result: Ok(BrokerReply::Claimed(Generation(1))),
        });
        assert!(!out.iter().any(|o| matches!(o, Output::Kick { .. })));
        assert!(t.hub.has_session(ConnId(1)));
        // A login after the resync gets generation 2 and replaces the older session, instead
        // of being refused for being below the generation 5 seen before the reset.
        let out = t.live(2, "a", 0, Mode::Ack, 2);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Kick {
                conn: ConnId(1),
                ..
            }
        )));
        assert!(t.hub.has_session(ConnId(2)));
    }

    #[test]
    fn a_failed_renewal_is_retried_and_the_session_keeps_delivering() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Ack, 3);
        let (req, _) = load_req(&out).unwrap();
        t.input(Input::StoreDone {
            req,
            result: messages(&[]),
        });
        let out = t.input(Input::Broker(BrokerEvent::Resync));
        let renew = claim_req(&out).unwrap();
        let (load, _) = load_req(&out).expect("the resync re-reads too");
        t.input(Input::BrokerDone {
            req: renew,
            result: Err(crate::BrokerError::Unavailable("down".into())),
        });
        // Still live: what the read finds is delivered while the claim is retried.
        let out = t.input(Input::StoreDone {
            req: load,
            result: messages(&[1]),
        });
        let batches: Vec<Vec<u64>> = delivers(&out).into_iter().map(|(_, ids)| ids).collect();
        assert_eq!(batches, vec![vec![1]]);
        let out = t.advance(Duration::from_secs(60));
        assert!(claim_req(&out).is_some(), "the renewal is retried");
    }

    #[test]
    fn redeliveries_are_counted_per_slot() {
        let mut t = T::new(8);
        let out = t.live(1, "a", 0, Mode::Ack, 1);
        let (req, _) = load_req(&out).unwrap();
        t.input(Input::StoreDone {
            req,
            result: messages(&[1, 2]),
        });
        // A newer session of the same slot (kicking the first) gets 1 and 2 again.
        let out = t.live(2, "a", 0, Mode::Ack, 2);
        let (req, _) = load_req(&out).unwrap();
        t.input(Input::StoreDone {
            req,
            result: messages(&[1, 2, 3]),
        });
        let s = t.hub.stats();
        assert_eq!((s.deliveries, s.redeliveries), (5, 2));
    }
}
