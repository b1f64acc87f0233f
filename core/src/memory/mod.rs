//! In-memory implementations of the ports: [`MemoryStore`] and [`MemoryBroker`].
//!
//! They serve the single-node server (the broker), core's simulation and the contract suite.
//! Every future they return is ready at once, so a caller without a runtime can poll them once.
//! Both can be switched "down" to inject faults.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

mod broker;
mod receipts;
mod store;

pub use broker::{MemoryBroker, MemoryBrokerNode};
pub use store::MemoryStore;

/// Locks `m`, recovering the data if another thread panicked while holding it (every update
/// here leaves the maps consistent at each step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls a future that is ready at once (every future of this module) without a runtime.
///
/// # Panics
/// When the future is not ready on its first poll: that is a misuse of this helper.
pub fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("now_or_never: the future was not ready"),
    }
}
