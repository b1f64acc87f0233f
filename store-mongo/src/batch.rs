//! Group commit without a task of our own: concurrent requests of one node wait in a queue,
//! and one of their callers (the leader) writes everything queued with one set of database
//! round trips, answers every caller of that batch, and passes the lead to the first caller
//! still waiting. At most one batch per [`Batcher`] is under way, so while it is, the next
//! batch gathers: the more load, the larger the batches, the same number of round trips each.
//!
//! Cancellation: a caller whose future is dropped while it waits is skipped (its request is
//! dropped with it, or, when already in a batch, written and its answer discarded). A leader
//! dropped in the middle of its batch answers nobody of that batch (they get
//! [`Abandoned`]: the outcome is unknown, as after a lost connection) and still passes the
//! lead on; the lead is a value whose drop passes it on, so it can never be lost.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_channel::oneshot;

/// A batch's leader went away before answering (its future was dropped): whether the request
/// was written is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Abandoned;

/// The queue of one kind of request (appends, acknowledgements), shared by its callers.
pub(crate) struct Batcher<R, A> {
    /// The waiting requests and whether a leader exists.
    state: Arc<Mutex<State<R, A>>>,
}

struct State<R, A> {
    /// Requests not yet taken into a batch, oldest first.
    queue: VecDeque<Entry<R, A>>,
    /// Whether some caller holds the lead (then it, or whoever it passes the lead to, takes
    /// the queue next); false only when the queue is empty.
    leading: bool,
}

/// A waiting request and where its caller waits.
struct Entry<R, A> {
    req: R,
    tx: oneshot::Sender<Turn<R, A>>,
}

/// What a waiting caller is told.
enum Turn<R, A> {
    /// Its request was written: the answer.
    Done(A),
    /// It leads the next batch (its request is at the front of the queue); it waits for its
    /// own answer on the new receiver.
    Lead(Lead<R, A>, oneshot::Receiver<Turn<R, A>>),
}

/// The lead. Dropping it passes it to the first caller still waiting.
struct Lead<R, A> {
    /// `None` once disarmed (it was never delivered, so there is nothing to pass on).
    state: Option<Arc<Mutex<State<R, A>>>>,
}

impl<R, A> Drop for Lead<R, A> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            pass_lead(&state);
        }
    }
}

fn lock<R, A>(state: &Mutex<State<R, A>>) -> MutexGuard<'_, State<R, A>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives the lead to the first waiting caller, or clears `leading` when none waits. Sends
/// happen outside the lock: a send can drop a lead (a receiver gone at that moment), whose
/// drop comes back here.
fn pass_lead<R, A>(state: &Arc<Mutex<State<R, A>>>) {
    loop {
        let (tx, rx) = oneshot::channel();
        let waiter = {
            let mut s = lock(state);
            let Some(front) = s.queue.pop_front() else {
                s.leading = false;
                return;
            };
            // The new leader's request stays first in the queue, answered through `tx`. Only
            // the lead's holder takes from the queue, so it stays there until then.
            s.queue.push_front(Entry { req: front.req, tx });
            front.tx
        };
        let lead = Lead {
            state: Some(state.clone()),
        };
        match waiter.send(Turn::Lead(lead, rx)) {
            Ok(()) => return,
            Err(Turn::Lead(mut lead, _)) => {
                // That caller is gone: drop its request and try the next one.
                lead.state = None;
                lock(state).queue.pop_front();
            }
            Err(Turn::Done(_)) => unreachable!("a lead was sent"),
        }
    }
}

impl<R, A> Batcher<R, A> {
    /// An empty queue.
    pub(crate) fn new() -> Batcher<R, A> {
        Batcher {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                leading: false,
            })),
        }
    }

    /// Queues `req` and waits for its answer. When this caller leads, `commit` writes the
    /// batch (this request and every other queued one, oldest first) and returns one answer
    /// per request, in their order; otherwise `commit` is not called.
    ///
    /// # Errors
    /// [`Abandoned`] when the leader of this request's batch was dropped before answering.
    pub(crate) async fn submit<F, Fut>(&self, req: R, commit: F) -> Result<A, Abandoned>
    where
        F: FnOnce(Vec<R>) -> Fut,
        Fut: Future<Output = Vec<A>>,
    {
        let (tx, mut rx) = oneshot::channel();
        let first = {
            let mut s = lock(&self.state);
            s.queue.push_back(Entry { req, tx });
            !std::mem::replace(&mut s.leading, true)
        };
        let lead = if first {
            Lead {
                state: Some(self.state.clone()),
            }
        } else {
            match rx.await {
                Ok(Turn::Done(answer)) => return Ok(answer),
                Ok(Turn::Lead(lead, own)) => {
                    rx = own;
                    lead
                }
                Err(oneshot::Canceled) => return Err(Abandoned),
            }
        };
        let batch: Vec<Entry<R, A>> = lock(&self.state).queue.drain(..).collect();
        let (reqs, txs): (Vec<R>, Vec<_>) = batch.into_iter().map(|e| (e.req, e.tx)).unzip();
        let answers = commit(reqs).await;
        debug_assert_eq!(answers.len(), txs.len(), "one answer per request");
        for (tx, answer) in txs.into_iter().zip(answers) {
            // A caller that went away does not need its answer.
            let _ = tx.send(Turn::Done(answer));
        }
        drop(lead);
        match rx.await {
            Ok(Turn::Done(answer)) => Ok(answer),
            // Our own request was in the batch we just answered.
            Ok(Turn::Lead(..)) | Err(oneshot::Canceled) => Err(Abandoned),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::FutureExt;
    use futures::executor::block_on;
    use futures::future::join_all;

    use super::*;

    /// Pending once, like a round trip to a server.
    struct RoundTrip(bool);

    impl Future for RoundTrip {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.0 {
                return std::task::Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }

    /// Answers each request with itself times ten, counting batches.
    async fn times_ten(batches: &AtomicUsize, reqs: Vec<u32>) -> Vec<u32> {
        batches.fetch_add(1, Ordering::Relaxed);
        RoundTrip(false).await; // the other callers queue meanwhile
        reqs.into_iter().map(|r| r * 10).collect()
    }

    #[test]
    fn concurrent_callers_share_batches_and_each_gets_its_answer() {
        let batcher = Batcher::new();
        let batches = AtomicUsize::new(0);
        let calls = (0..50).map(|i| batcher.submit(i, |reqs| times_ten(&batches, reqs)));
        let answers = block_on(join_all(calls));
        assert_eq!(answers, (0..50).map(|i| Ok(i * 10)).collect::<Vec<_>>());
        // The first caller writes alone; everyone who queued meanwhile goes in the next one.
        assert_eq!(batches.load(Ordering::Relaxed), 2);
        assert!(!lock(&batcher.state).leading, "the lead was released");
    }

    #[test]
    fn a_dropped_leader_answers_abandoned_and_passes_the_lead_on() {
        let batcher = Batcher::new();
        let batches = AtomicUsize::new(0);
        let mut leader = Box::pin(batcher.submit(1, |reqs| times_ten(&batches, reqs)));
        assert!(leader.as_mut().now_or_never().is_none(), "writing");
        let mut second = Box::pin(batcher.submit(2, |reqs| times_ten(&batches, reqs)));
        let mut third = Box::pin(batcher.submit(3, |reqs| times_ten(&batches, reqs)));
        assert!(second.as_mut().now_or_never().is_none(), "queued");
        assert!(third.as_mut().now_or_never().is_none(), "queued");
        drop(leader);
        // The second caller got the lead and writes both queued requests.
        let both = block_on(async { futures::join!(second, third) });
        assert_eq!(both, (Ok(20), Ok(30)));
        assert_eq!(batches.load(Ordering::Relaxed), 2);

        // A leader dropped with callers in its batch: they learn it was abandoned.
        let mut leader = Box::pin(batcher.submit(4, |reqs| times_ten(&batches, reqs)));
        assert!(leader.as_mut().now_or_never().is_none());
        drop(leader);
        assert_eq!(
            block_on(batcher.submit(5, |r| times_ten(&batches, r))),
            Ok(50)
        );
    }

    #[test]
    fn a_waiter_dropped_before_its_lead_arrives_passes_it_on() {
        let batcher = Batcher::new();
        let batches = AtomicUsize::new(0);
        let mut leader = Box::pin(batcher.submit(1, |reqs| times_ten(&batches, reqs)));
        assert!(leader.as_mut().now_or_never().is_none());
        let mut gone = Box::pin(batcher.submit(2, |reqs| times_ten(&batches, reqs)));
        assert!(gone.as_mut().now_or_never().is_none());
        let mut last = Box::pin(batcher.submit(3, |reqs| times_ten(&batches, reqs)));
        assert!(last.as_mut().now_or_never().is_none());
        drop(gone);
        assert_eq!(block_on(leader), Ok(10));
        assert_eq!(block_on(last), Ok(30));
        assert!(!lock(&batcher.state).leading);
    }
}
