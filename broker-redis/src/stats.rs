//! What the broker counts for metrics and health: reconnections, failovers, notifications
//! dropped or lost, and time without Redis.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Counters and the outage clock of one broker, shared with its tasks.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// The subscriber connection came back (subscribed again, resync sent) after a loss.
    pub(crate) reconnects: AtomicU64,
    /// The master moved to another address (Sentinel).
    pub(crate) failovers: AtomicU64,
    /// Notifications dropped because the pending bound was full.
    pub(crate) dropped: AtomicU64,
    /// Notifications sent that Redis did not take (an error or no answer in time).
    pub(crate) failed: AtomicU64,
    /// Notifications waiting for Redis now (queued or sent without an answer).
    pub(crate) pending: AtomicU64,
    /// Their payload bytes.
    pub(crate) pending_bytes: AtomicU64,
    /// Which parts see Redis down now, and since when.
    down: Mutex<Down>,
}

/// The outage clock: Redis counts as down while either the subscriber or the publisher
/// cannot reach it.
#[derive(Debug, Default)]
struct Down {
    /// The subscriber connection is lost and not yet subscribed again.
    subscriber: bool,
    /// The last notifications sent failed and Redis has not answered since.
    publisher: bool,
    /// When the present outage began.
    since: Option<Instant>,
    /// Outages that ended, summed.
    total: Duration,
    /// The last reason seen, for `/healthy`.
    reason: String,
}

/// Which part of the broker saw Redis go or come back.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Part {
    /// The subscriber connection (events).
    Subscriber,
    /// The command connection (notifications, claims).
    Publisher,
}

/// A snapshot of [`BrokerStats`] for metrics and health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerReport {
    /// Times the subscriber connection came back after a loss.
    pub reconnects: u64,
    /// Times the master moved to another server (Sentinel).
    pub failovers: u64,
    /// Notifications dropped because too many were waiting for Redis.
    pub dropped: u64,
    /// Notifications sent that Redis did not take.
    pub failed: u64,
    /// Notifications waiting for Redis now.
    pub pending: u64,
    /// Their payload bytes.
    pub pending_bytes: u64,
    /// How long the present outage has lasted, `None` when Redis is up.
    pub down_for: Option<Duration>,
    /// Time without Redis since start, the present outage included.
    pub down_total: Duration,
    /// Why Redis counts as down (empty when up).
    pub reason: String,
}

impl BrokerStats {
    /// Marks `part` as having lost Redis for `reason`.
    pub(crate) fn down(&self, part: Part, reason: &str) {
        let mut d = self.lock();
        match part {
            Part::Subscriber => d.subscriber = true,
            Part::Publisher => d.publisher = true,
        }
        d.since.get_or_insert_with(Instant::now);
        reason.clone_into(&mut d.reason);
    }

    /// Marks `part` as reaching Redis again; the outage ends when no part is down.
    pub(crate) fn up(&self, part: Part) {
        let mut d = self.lock();
        match part {
            Part::Subscriber => d.subscriber = false,
            Part::Publisher => d.publisher = false,
        }
        if !d.subscriber && !d.publisher {
            if let Some(since) = d.since.take() {
                d.total += since.elapsed();
            }
            d.reason.clear();
        }
    }

    /// Everything, read once.
    pub fn report(&self) -> BrokerReport {
        let (down_for, down_total, reason) = {
            let d = self.lock();
            let now = d.since.map(|s| s.elapsed());
            (now, d.total + now.unwrap_or_default(), d.reason.clone())
        };
        BrokerReport {
            reconnects: self.reconnects.load(Relaxed),
            failovers: self.failovers.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            failed: self.failed.load(Relaxed),
            pending: self.pending.load(Relaxed),
            pending_bytes: self.pending_bytes.load(Relaxed),
            down_for,
            down_total,
            reason,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Down> {
        // Plain fields, each update complete: a panic elsewhere cannot leave them half-set.
        self.down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outage_lasts_until_every_part_is_back() {
        let s = BrokerStats::default();
        assert_eq!(s.report().down_for, None);
        s.down(Part::Subscriber, "lost");
        s.down(Part::Publisher, "timeout");
        s.up(Part::Subscriber);
        let r = s.report();
        let during = r.down_for.expect("still down: the publisher is");
        assert_eq!(r.reason, "timeout");
        s.up(Part::Publisher);
        let r = s.report();
        assert_eq!(r.down_for, None);
        assert!(r.reason.is_empty());
        assert!(r.down_total >= during, "the ended outage is summed");
    }
}
