//! The runtime is the application's choice: the broker asks it to run its background tasks
//! and to wait, and never names an executor itself.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A future the broker hands to the runtime or gets back from it.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What the broker needs from the application's runtime: spawning its background tasks
/// (the subscriber's event pump, the notification publisher, the Sentinel watcher) and a
/// timer for reconnection backoff. Every task ends by itself once the broker is dropped.
pub trait Runtime: Send + Sync + 'static {
    /// Runs `task` to completion in the background.
    fn spawn(&self, task: Task);

    /// A future that is ready after `duration`.
    fn sleep(&self, duration: Duration) -> Task;
}
