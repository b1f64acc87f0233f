//! One session's delivery: its life phase, its store reads, what it buffered and what is in
//! flight (ack-mode batches, commit mode's one message), and the Hub steps that move it on.

use std::time::Instant;

use std::collections::VecDeque;

use super::timers::{Timer, TimerKey};
use super::{DELIVERED_MEMORY, Hub, Purpose};
use crate::identity::{Identity, Mode};
use crate::ids::{ClientId, Generation, MessageId, Slot};
use crate::io::{AckId, ConnId, KickReason, Output, StoreOp, StoreReply};
use crate::message::Message;
use crate::push_id::PushId;
use crate::receipts::ReceiptKind;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for its client's broker subscription.
    Subscribing,
    /// Waiting for (or retrying) its claim.
    Claiming,
    /// Delivering.
    Live,
}

/// The store read of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
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
pub(super) struct Batch {
    pub(super) ack: Option<AckId>,
    pub(super) ids: Vec<MessageId>,
    /// The copies of the batch that name their push, for receipts.
    pub(super) pushes: Vec<(PushId, MessageId)>,
    /// The ack-timeout timer of this batch.
    pub(super) timer: Option<TimerKey>,
}

/// One session.
#[derive(Debug)]
pub(super) struct Session {
    /// Internal id, unique for the Hub's life: results for ended sessions are recognized.
    pub(super) sid: u64,
    pub(super) client: ClientId,
    pub(super) slot: Slot,
    pub(super) mode: Mode,
    pub(super) phase: Phase,
    pub(super) generation: Option<Generation>,
    /// Every unacknowledged message up to this id has been loaded (and buffered, delivered or
    /// acknowledged).
    pub(super) cursor: MessageId,
    /// Loaded, not yet delivered, oldest first.
    pub(super) buffer: VecDeque<Message>,
    /// Delivered, not yet acknowledged, oldest first.
    pub(super) in_flight: VecDeque<Batch>,
    pub(super) in_flight_count: usize,
    pub(super) load: Load,
    /// The last read returned less than asked: the store has nothing beyond the cursor until
    /// a notification says otherwise.
    pub(super) drained: bool,
    /// Consecutive failures of the current step, for backoff.
    pub(super) failures: u32,
    /// Commit mode: the client asked for the next message.
    pub(super) commit_owed: bool,
}

impl Session {
    /// A new session of `identity`, waiting for its client's subscription.
    pub(super) fn new(sid: u64, identity: &Identity) -> Session {
        Session {
            sid,
            client: identity.client.clone(),
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
        }
    }

    /// Takes the in-flight batch delivered with `ack`, if it is still in flight.
    pub(super) fn acknowledged(&mut self, ack: AckId) -> Option<Batch> {
        let pos = self.in_flight.iter().position(|b| b.ack == Some(ack))?;
        let batch = self.in_flight.remove(pos)?;
        self.in_flight_count -= batch.ids.len();
        Some(batch)
    }

    /// The highest id up to which every message of this client is acknowledged by this slot,
    /// as far as this session knows: everything it loaded was delivered in id order, so every
    /// id below the oldest message it still holds (in flight or buffered) was acknowledged,
    /// in this session or before, or never existed (a hole, expired); with nothing held, that
    /// is true of everything up to the cursor.
    pub(super) fn acked_through(&self) -> MessageId {
        let held = self
            .in_flight
            .iter()
            .filter_map(|b| b.ids.first())
            .chain(self.buffer.front().map(|m| &m.id))
            .min();
        match held {
            Some(id) => MessageId(id.0.saturating_sub(1)),
            None => self.cursor,
        }
    }

    /// Commit mode: takes the oldest in-flight batches holding `n` messages (what is in flight,
    /// when that is less) and owes the client its next message. Returns their ids and their
    /// ack-deadline timers and the copies that name their push.
    pub(super) fn committed(
        &mut self,
        n: u64,
    ) -> (Vec<MessageId>, Vec<TimerKey>, Vec<(PushId, MessageId)>) {
        let mut ids = Vec::new();
        let mut timers = Vec::new();
        let mut pushes = Vec::new();
        let mut left = n;
        while left > 0 {
            let Some(batch) = self.in_flight.pop_front() else {
                log::debug!("commit {n} exceeds what is in flight; the rest ignored");
                break;
            };
            self.in_flight_count -= batch.ids.len();
            left = left.saturating_sub(batch.ids.len() as u64);
            ids.extend(batch.ids);
            timers.extend(batch.timer);
            pushes.extend(batch.pushes);
        }
        self.commit_owed = true;
        (ids, timers, pushes)
    }

    /// A store read of at most `limit` messages returned `messages`; those `dropped` (copies of
    /// a recalled push) move the cursor on and are not buffered.
    pub(super) fn loaded(
        &mut self,
        messages: Vec<Message>,
        limit: usize,
        dropped: impl Fn(&Message) -> bool,
    ) {
        let again = matches!(self.load, Load::Reading { again: true });
        self.load = Load::Idle;
        self.failures = 0;
        self.drained = messages.len() < limit && !again;
        for m in messages {
            // Only ids beyond the cursor, in increasing order.
            if m.id > self.cursor {
                self.cursor = m.id;
                if !dropped(&m) {
                    self.buffer.push_back(m);
                }
            }
        }
    }

    /// The client's queue now ends at `last`; `message` is `last` itself when the notifier
    /// attached it. `room`: how many messages the buffer may hold.
    pub(super) fn notified(&mut self, last: MessageId, message: Option<&Message>, room: usize) {
        match message {
            // The very next message after the cursor, and room to buffer it: exactly what a
            // read would return next, so no read is needed. (Anything later than the cursor + 1
            // may have a gap before it, and a full buffer is left to reads, to stay bounded.)
            Some(m) if self.cursor.0.checked_add(1) == Some(last.0) && self.buffer.len() < room => {
                self.cursor = last;
                self.buffer.push_back(m.clone());
            }
            _ if last > self.cursor => self.look_again(),
            _ => {}
        }
    }

    /// The store may hold more than was read: read again (once the read under way returns).
    pub(super) fn look_again(&mut self) {
        self.drained = false;
        if let Load::Reading { .. } = self.load {
            self.load = Load::Reading { again: true };
        }
    }
}

impl Hub {
    pub(super) fn load_done(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: u64,
        result: Result<StoreReply, crate::StoreError>,
    ) {
        let limit = self.config.load_limit;
        let retry_delay;
        {
            let recalled = &self.recalled;
            let Some(s) = self.sessions.get_mut(&conn).filter(|s| s.sid == sid) else {
                return;
            };
            match result {
                Ok(StoreReply::Messages(messages)) => {
                    s.loaded(messages, limit, |m| {
                        m.push.is_some_and(|p| recalled.contains(&p))
                    });
                    self.progress(now, conn);
                    return;
                }
                Ok(StoreReply::Acked | StoreReply::Recorded) => {
                    log::warn!("store answered a read with another answer: treated as a failure");
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
        self.set_timer(now, delay, Timer::RetryLoad { conn, sid });
    }

    pub(super) fn kick(&mut self, conn: ConnId) {
        if self.end_session(conn).is_some() {
            self.stats.kicks += 1;
            self.outputs.push_back(Output::Kick {
                conn,
                reason: KickReason::Replaced,
            });
        }
    }

    /// Delivers what can be delivered and reads more when needed.
    pub(super) fn progress(&mut self, now: Instant, conn: ConnId) {
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
                let key = (now + d, self.next_id);
                self.next_id += 1;
                key
            });
            if let Some(key) = timer {
                self.timers.insert(key, Timer::AckDeadline { conn, sid });
            }
            let pushes: Vec<(PushId, MessageId)> = delivered
                .iter()
                .filter_map(|m| m.push.map(|p| (p, m.id)))
                .collect();
            s.in_flight.push_back(Batch {
                ack,
                ids,
                pushes: pushes.clone(),
                timer,
            });
            self.receipts_of(&client, slot, ReceiptKind::Delivered, &pushes);
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
                Purpose::Load { conn, sid },
            );
        }
    }

    pub(super) fn count_redeliveries(
        &mut self,
        client: &ClientId,
        slot: Slot,
        delivered: &[Message],
    ) {
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

    pub(super) fn write_acks(
        &mut self,
        client: ClientId,
        slot: Slot,
        ids: Vec<MessageId>,
        through: MessageId,
        attempt: u32,
    ) {
        let op = StoreOp::Ack {
            client: client.clone(),
            slot,
            ids: ids.clone(),
            through,
        };
        self.request_store(
            op,
            Purpose::Ack {
                client,
                slot,
                ids,
                through,
                attempt,
            },
        );
    }

    /// Forgets a session; releases its client's subscription after the last one.
    pub(super) fn end_session(&mut self, conn: ConnId) -> Option<Session> {
        let s = *self.sessions.remove(&conn)?;
        for b in &s.in_flight {
            if let Some(t) = b.timer {
                self.timers.remove(&t);
            }
        }
        if let Some(entry) = self.clients.get_mut(&s.client) {
            entry.conns.retain(|c| *c != conn);
        }
        if let Some(generation) = s.generation {
            // Its entry in the broker's registry of sessions online goes (if still its own). A
            // claim still under way removes its own when answered (see `broker_done`).
            self.end_claim((s.client.clone(), s.slot), generation);
        }
        self.let_go(&s.client);
        Some(s)
    }
}
