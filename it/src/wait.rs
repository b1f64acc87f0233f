//! Waiting for a condition, the one way tests wait: poll it every 20 ms until it holds or a
//! limit passes. Never a fixed sleep, never a log line's wording.

use std::convert::Infallible;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const EVERY: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds (`true`) or `within` has passed (`false`), blocking the
/// thread between looks.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let Ok(held) = try_wait_until(within, || Ok::<_, Infallible>(condition()));
    held
}

/// [`wait_until`] for a condition that can fail (a command, a process that may have exited):
/// its first error ends the wait and is returned.
///
/// # Errors
/// The condition's error.
pub fn try_wait_until<E>(
    within: Duration,
    mut condition: impl FnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    let deadline = Instant::now() + within;
    loop {
        if condition()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(EVERY);
    }
}

/// [`wait_until`] for an async condition (an HTTP call, a store query), sleeping on the
/// runtime between looks.
pub async fn poll_until(within: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let Ok(held) = try_poll_until(within, async || Ok::<_, Infallible>(condition().await)).await;
    held
}

/// [`poll_until`] for a condition that can fail: its first error ends the wait and is
/// returned.
///
/// # Errors
/// The condition's error.
pub async fn try_poll_until<E>(
    within: Duration,
    mut condition: impl AsyncFnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    let deadline = Instant::now() + within;
    loop {
        if condition().await? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        async_std::task::sleep(EVERY).await;
    }
}

/// Waits for `child` to exit, at most `within`: its exit status, or `None` while it runs on.
///
/// # Panics
/// When the process's state cannot be read.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(within, || {
        status = child.try_wait().expect("the state of a child process");
        status.is_some()
    });
    status
}
