//! A session's input queue: many senders, one receiver, unbounded, and small when idle.
//!
//! Every connection has one, so its resting size is part of what an idle connection costs.
//! A general-purpose channel keeps cache-padded head and tail counters and a block of slots
//! that stays allocated after its first use (about 2 KB each); this queue is a `VecDeque`
//! behind a mutex with one waker, and gives its buffer back whenever it runs empty: an idle
//! session's queue holds no buffer (even four slots kept were about 190 bytes of every idle
//! connection, which all had one input, the app's decision on their CONNECT). A session's
//! inputs are few and short-lived (client frames, the app's emits, polls), so the lock is held
//! for a push or a pop only, and a buffer made again is one allocation per burst of inputs.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// The queue has been closed (or, for the receiver, every sender is gone and it is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

struct State<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    senders: AtomicUsize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves a consistent queue: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A new queue.
pub(crate) fn mailbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            closed: false,
        }),
        senders: AtomicUsize::new(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending side; clones share the queue.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: a waiting receiver learns that nothing more will come.
            let waker = self.shared.lock().waker.take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<T> Sender<T> {
    /// Enqueues `item`; gives it back when the receiver closed the queue.
    pub(crate) fn try_send(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut s = self.shared.lock();
            if s.closed {
                return Err(item);
            }
            s.queue.push_back(item);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// [`Sender::try_send`] for async callers (the queue is unbounded: it never waits).
    pub(crate) async fn send(&self, item: T) -> Result<(), T> {
        self.try_send(item)
    }

    /// Whether the receiver closed the queue.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

/// The receiving side (one per queue).
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item, oldest first; `Err` once the queue is closed and drained, or every
    /// sender is gone and it is empty.
    pub(crate) fn recv(&self) -> Recv<'_, T> {
        Recv { rx: self }
    }

    /// Refuses further items; those already queued are dropped.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut s = self.shared.lock();
            s.closed = true;
            std::mem::take(&mut s.queue)
        };
        drop(dropped);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The future of [`Receiver::recv`]; cancelling it loses nothing.
pub(crate) struct Recv<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Result<T, Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let shared = &self.rx.shared;
        let mut s = shared.lock();
        if let Some(item) = s.queue.pop_front() {
            if s.queue.is_empty() {
                s.queue = VecDeque::new();
            }
            return Poll::Ready(Ok(item));
        }
        if s.closed || shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(Err(Closed));
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::future::FutureExt;

    #[test]
    fn items_arrive_in_order_and_the_buffer_is_released_when_empty() {
        let (tx, rx) = mailbox();
        for i in 0..100 {
            tx.try_send(i).unwrap();
        }
        let got: Vec<i32> = (0..100).map(|_| block_on(rx.recv()).unwrap()).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(rx.shared.lock().queue.capacity(), 0, "released when empty");
        assert!(rx.recv().now_or_never().is_none(), "empty: waits");
        tx.try_send(100).unwrap();
        assert_eq!(block_on(rx.recv()), Ok(100));
        assert_eq!(
            rx.shared.lock().queue.capacity(),
            0,
            "one item: released too"
        );
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_a_send_and_by_the_last_sender_leaving() {
        let (tx, rx) = mailbox::<u8>();
        let tx2 = tx.clone();
        let waiter = std::thread::spawn(move || block_on(rx.recv()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        tx2.try_send(7).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(7));

        let (tx, rx) = mailbox::<u8>();
        let waiter = std::thread::spawn(move || block_on(rx.recv()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(tx);
        assert_eq!(waiter.join().unwrap(), Err(Closed));
    }

    #[test]
    fn a_closed_queue_refuses_and_drops_what_it_held() {
        let (tx, rx) = mailbox();
        tx.try_send(String::from("a")).unwrap();
        rx.close();
        assert!(tx.is_closed());
        assert_eq!(tx.try_send("b".into()), Err(String::from("b")));
        assert_eq!(block_on(rx.recv()), Err(Closed));
    }
}
