//! The runtime the adapters are handed ([`herald_core::Runtime`]): async-std, the application's
//! choice. Adapters never pick one themselves: the Redis broker's background tasks, the MongoDB
//! store's waits and the Socket.IO server's sessions run on it. async-std's `tokio1` feature
//! gives the MongoDB driver the tokio context it needs.
//!
//! One crate for it, so that the binary (`apps/herald`) and the adapters' tests (through
//! `herald_it::AsyncStd`) run the adapters on the same runtime by construction. It depends on
//! core only, and no adapter depends on it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use herald_core::{Runtime, Task};

/// async-std's executor and timer behind the adapters' runtime port.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn spawn(&self, task: Task) {
        async_std::task::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> Task {
        Box::pin(Sleep(async_io::Timer::after(duration)))
    }
}

/// async-std's own timer, bare. Every idle session keeps one until its next heartbeat:
/// `async_std::task::sleep` wraps the same timer in two futures (about 110 bytes boxed, this
/// one 56).
struct Sleep(async_io::Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}
