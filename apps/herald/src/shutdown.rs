//! Graceful stop: stop accepting, tell every client the server is going away, wait for the
//! sessions to end and for the store writes under way (the engine's acknowledgements and the
//! pushes' appends) to finish. Every wait is on an event, bounded by a limit.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use event_listener::Event;
use herald_socketio::SocketIo;

/// How long a stopping node waits (`shutdown.*` keys); the defaults fit within a container
/// engine's usual grace period (10 s for `docker stop` after the sessions' close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownLimits {
    /// How long the sessions get to receive their close and end.
    pub sessions: Duration,
    /// How long the store writes under way get to finish.
    pub writes: Duration,
}

impl Default for ShutdownLimits {
    fn default() -> Self {
        ShutdownLimits {
            sessions: Duration::from_secs(5),
            writes: Duration::from_secs(10),
        }
    }
}

/// Work that must finish before the process exits: store writes under way. A push's append
/// and an acknowledgement's write each hold an [`InflightGuard`] until they are done.
#[derive(Default)]
pub struct Inflight {
    /// How many are under way.
    count: AtomicUsize,
    /// Notified each time the count drops to zero.
    idle: Event,
}

impl Inflight {
    /// Counts one write under way until the guard is dropped.
    pub fn enter(&self) -> InflightGuard<'_> {
        self.count.fetch_add(1, SeqCst);
        InflightGuard(self)
    }

    /// Waits until nothing is in flight, at most `limit`. False when the limit ran out first.
    pub async fn drain(&self, limit: Duration) -> bool {
        let idle = async {
            loop {
                if self.count.load(SeqCst) == 0 {
                    return;
                }
                // Listen before looking again: a drop to zero in between is not missed.
                let listener = self.idle.listen();
                if self.count.load(SeqCst) == 0 {
                    return;
                }
                listener.await;
            }
        };
        async_std::future::timeout(limit, idle).await.is_ok()
    }
}

/// One write under way (see [`Inflight::enter`]).
pub struct InflightGuard<'a>(&'a Inflight);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify(usize::MAX);
        }
    }
}

/// Stops the node: `listeners` (the accept loops) are cancelled, every Socket.IO client is
/// told the server is going away, then the sessions and the writes under way get their time.
pub async fn stop(
    listeners: Vec<async_std::task::JoinHandle<()>>,
    io: &SocketIo,
    inflight: &Inflight,
    limits: ShutdownLimits,
) {
    for task in listeners {
        task.cancel().await;
    }
    io.close_all();
    if async_std::future::timeout(limits.sessions, io.sessions_ended())
        .await
        .is_err()
    {
        log::warn!(
            "{} sessions still open after {:?}: stopping anyway",
            io.session_count(),
            limits.sessions
        );
    }
    if !inflight.drain(limits.writes).await {
        log::warn!(
            "store writes still under way after {:?}: stopping anyway",
            limits.writes
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[async_std::test]
    async fn drain_waits_for_the_last_write_and_no_longer() {
        let inflight = std::sync::Arc::new(Inflight::default());
        assert!(inflight.drain(Duration::ZERO).await, "nothing under way");
        let (tx, rx) = async_std::channel::bounded::<()>(1);
        let held = inflight.clone();
        let writer = async_std::task::spawn(async move {
            let _a = held.enter();
            let _b = held.enter();
            let _ = rx.recv().await;
        });
        while inflight.count.load(SeqCst) < 2 {
            async_std::task::yield_now().await;
        }
        assert!(
            !inflight.drain(Duration::from_millis(20)).await,
            "still held"
        );
        drop(tx);
        assert!(inflight.drain(Duration::from_secs(60)).await, "released");
        writer.await;
    }
}
