//! The runtime port: what an adapter needs from the application's executor, so that no
//! adapter picks one itself. The application implements [`Runtime`] once (apps/herald: async-std)
//! and hands it to every adapter that runs background tasks or waits.
//!
//! Futures cross the port boxed ([`Task`]): the trait stays object safe, so an adapter keeps an
//! `Arc<dyn Runtime>` and no adapter type is generic over the executor.
//!
//! The core itself never calls it: the engine takes time as an argument and owns no task.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// A future handed to the runtime, or got back from it.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What adapters need from the application's executor: running a task in the background and
/// a timer. An adapter whose client library needs a particular runtime's context (the MongoDB
/// driver needs tokio's) relies on the application's runtime providing it; see
/// shared/DEPENDENCIES.md.
pub trait Runtime: Send + Sync + 'static {
    /// Runs `task` to completion in the background.
    fn spawn(&self, task: Task);

    /// A future that is ready after `duration`.
    fn sleep(&self, duration: Duration) -> Task;
}

/// `fut`'s output, or `None` when `limit` passes first on `runtime`'s timer (`fut` is dropped
/// then). The timer is made only when `fut` has to wait: most reads and writes complete at
/// once, and then cost no timer.
pub async fn timeout<F: Future>(
    runtime: &dyn Runtime,
    limit: Duration,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut timer: Option<Task> = None;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let timer = timer.get_or_insert_with(|| runtime.sleep(limit));
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A runtime whose timer fires only when the test says so.
    #[derive(Default)]
    struct Manual {
        fired: Arc<AtomicBool>,
        spawned: Mutex<Vec<Task>>,
    }

    impl Runtime for Manual {
        fn spawn(&self, task: Task) {
            self.spawned.lock().expect("not poisoned").push(task);
        }

        fn sleep(&self, _: Duration) -> Task {
            let fired = self.fired.clone();
            Box::pin(std::future::poll_fn(move |_| {
                if fired.load(Ordering::SeqCst) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }))
        }
    }

    #[test]
    fn a_ready_future_wins_and_a_pending_one_times_out() {
        let rt = Manual::default();
        let ready = futures_executor::block_on(timeout(&rt, Duration::from_secs(1), async { 7 }));
        assert_eq!(ready, Some(7));
        rt.fired.store(true, Ordering::SeqCst);
        let never = std::future::pending::<u8>();
        let out = futures_executor::block_on(timeout(&rt, Duration::from_secs(1), never));
        assert_eq!(out, None);
        rt.spawn(Box::pin(async {}));
        assert_eq!(rt.spawned.lock().expect("not poisoned").len(), 1);
    }
}
