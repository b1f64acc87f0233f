//! Waiting for a condition, the one way tests wait: poll it every 20 ms until it holds or a
//! limit passes. Never a fixed sleep, never a log line's wording.

use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const EVERY: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds (`true`) or `within` has passed (`false`), blocking the
/// thread between looks.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(EVERY);
    }
}

/// [`wait_until`] for an async condition (an HTTP call, a store query), sleeping on the
/// runtime between looks.
pub async fn poll_until(within: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        async_std::task::sleep(EVERY).await;
    }
}
