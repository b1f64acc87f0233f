//! The tests' side of the adapters' runtime port: async-std, as in the binary (its `tokio1`
//! feature gives the MongoDB driver the tokio context it needs).

use std::time::Duration;

use herald_core::{Runtime, Task};

/// async-std's executor and timer behind [`herald_core::Runtime`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn spawn(&self, task: Task) {
        async_std::task::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> Task {
        Box::pin(async_std::task::sleep(duration))
    }
}
