//! The runtime the adapters are handed: async-std, the application's choice. Adapters never
//! pick one themselves (the Redis broker's background tasks and timers come from here).

use std::time::Duration;

use herald_broker_redis::{Runtime, Task};

/// async-std's executor and timer behind the adapters' runtime port.
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
