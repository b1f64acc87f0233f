//! A listener's connection slots and the budget listeners share (the process's file
//! descriptors), and the throttled warning about refusals.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::LOG_EVERY;

/// A connection budget several listeners share (the process's file descriptors): a
/// connection takes a slot of its listener and one of this.
#[derive(Debug)]
pub struct SharedLimit {
    pub(super) open: AtomicUsize,
    pub(super) max: usize,
}

impl SharedLimit {
    /// A budget of `max` connections.
    pub fn new(max: usize) -> Arc<SharedLimit> {
        Arc::new(SharedLimit {
            open: AtomicUsize::new(0),
            max,
        })
    }
}

/// A warning logged at most once per [`LOG_EVERY`], with how many times it happened.
pub(super) struct Throttled {
    what: String,
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Throttled {
    pub(super) fn new(what: String) -> Self {
        Throttled {
            what,
            count: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    pub(super) fn note(&self, detail: &str) {
        self.count.fetch_add(1, Relaxed);
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            return;
        }
        *last = Some(now);
        let n = self.count.swap(0, Relaxed);
        log::warn!("{}, {detail}: {n} since the last report", self.what);
    }
}

/// One of a listener's connection slots (and of the shared budget), given back on drop.
pub struct Slot {
    listener: Arc<AtomicUsize>,
    shared: Option<Arc<SharedLimit>>,
}

impl Slot {
    pub(super) fn take(
        open: &Arc<AtomicUsize>,
        max: usize,
        shared: Option<&Arc<SharedLimit>>,
    ) -> Option<Slot> {
        let up = |counter: &AtomicUsize, max: usize| {
            counter
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .is_ok()
        };
        if !up(open, max) {
            return None;
        }
        if let Some(shared) = shared
            && !up(&shared.open, shared.max)
        {
            open.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Slot {
            listener: open.clone(),
            shared: shared.cloned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Relaxed);
        if let Some(shared) = &self.shared {
            shared.open.fetch_sub(1, Relaxed);
        }
    }
}
