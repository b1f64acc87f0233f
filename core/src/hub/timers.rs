//! The timer table behind [`Hub::poll_timeout`]: retries with exponential backoff and
//! ack deadlines, each a value in a table keyed by deadline, never a task.

use std::time::{Duration, Instant};

use super::Hub;
use super::session::Load;
use super::subscriptions::Sub;
use crate::ids::{ClientId, MessageId, Slot};
use crate::io::{CloseReason, ConnId, Output};

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Timer {
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
        through: MessageId,
        attempt: u32,
    },
    AckDeadline {
        conn: ConnId,
        sid: u64,
    },
}

/// Timers are ordered by deadline, then by creation.
pub(super) type TimerKey = (Instant, u64);

impl Hub {
    pub(super) fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::RetryLoad { conn, sid } => {
                if let Some(s) = self.session_mut(conn, sid) {
                    if s.load == Load::Waiting {
                        s.load = Load::Idle;
                        s.drained = false;
                    }
                    self.progress(now, conn);
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
                through,
                attempt,
            } => {
                self.write_acks(client, slot, ids, through, attempt);
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

    /// Delay before retry number `failures` (1 = first retry).
    pub(super) fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.config
            .retry_min
            .saturating_mul(factor)
            .min(self.config.retry_max)
    }

    pub(super) fn set_timer(&mut self, now: Instant, delay: Duration, timer: Timer) {
        let at = now + delay;
        let seq = self.fresh_id();
        self.timers.insert((at, seq), timer);
    }
}
