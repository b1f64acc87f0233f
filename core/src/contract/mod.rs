//! The contract suite: the checks every [`MessageStore`] and [`Broker`] implementation runs
//! against itself, with the real service behind it.
//!
//! Built with the cargo feature `contract` (and in core's own tests), so production builds do
//! not carry it. Adapters add `herald-core = { workspace = true, features = ["contract"] }` to
//! their dev-dependencies and call [`store_suite`] and [`broker_suite`] from a test.
//!
//! The suite owns no runtime and no clock: its functions are `async` and the adapter awaits
//! them from its own runtime. Where something must wait (a Redis broker delivers pub/sub
//! events asynchronously), the suite calls the `sleep` function the caller passes in, and
//! every wait is bounded by [`ContractConfig::timeout`]. A failed check panics with a message
//! naming the check (`contract check store::ack_per_slot failed: ...`).
//!
//! Several runs may share one real database or Redis: every check uses fresh client ids made
//! of the caller's [`ContractConfig::run_id`] and the check's name, so pick a run id that is
//! unique per run (a random number, a time stamp taken by the adapter). Store times are
//! [`ContractConfig::base_ms`] plus small offsets. An adapter whose backend also expires data
//! by the wall clock (MongoDB's TTL index) should pass a time comfortably in the future (the
//! real time plus an hour, say): the TTL check stores a message that lives 1 s from `base_ms`,
//! and with `base_ms` = now a TTL monitor pass during the run could delete it before the check
//! reads it. With a future base, the backend never deletes a run's data while it runs, and
//! cleans it up by itself later.
//!
//! [`MessageStore::purge`] works on the whole store: when other runs (or other checks' data in
//! the same database) may be purged by one pass, set [`ContractConfig::exact_purge_counts`] to
//! `false` and the suite checks purge counts as lower bounds.
//!
//! ```no_run
//! # async fn demo() {
//! use herald_core::contract::{ContractConfig, broker_suite, store_suite};
//! use herald_core::{MemoryBroker, MemoryStore};
//!
//! let cfg = ContractConfig::new("run-42", 1_764_000_000_000).expect("a valid run id");
//! store_suite(&cfg, |retention| std::future::ready(MemoryStore::new(retention))).await;
//! broker_suite(
//!     &cfg,
//!     |n| {
//!         let bus = MemoryBroker::new();
//!         std::future::ready((0..n).map(|_| bus.node()).collect::<Vec<_>>())
//!     },
//!     |_| std::future::ready(()),
//! )
//! .await;
//! # }
//! ```
//!
//! [`MessageStore`]: crate::ports::MessageStore
//! [`MessageStore::purge`]: crate::ports::MessageStore::purge
//! [`Broker`]: crate::ports::Broker

mod broker;
mod store;
#[cfg(test)]
mod tests;

pub use broker::broker_suite;
pub use store::store_suite;

use std::time::Duration;

use crate::ids::{ClientId, IdError, Slot};
use crate::message::{NewMessage, Payload};
use crate::ports::Retention;

/// The retention of the checks that expire or cap nothing: a long TTL and a high cap, so that
/// only the TTL and cap checks see anything dropped.
pub(crate) const KEEP: Retention = Retention {
    cap: 10_000,
    ttl: Duration::from_secs(30 * 24 * 3600),
};

/// The message `n` of a check, with `ttl` (its payload and topics have characters that need
/// escaping, so that a store that mangles them is caught).
pub(crate) fn new_message(n: u64, ttl: Option<Duration>) -> NewMessage {
    NewMessage {
        from: "contract".into(),
        channel: vec!["t1".into(), "t2".into()],
        data: Payload::from_json(&format!(r#"{{"n":{n},"s":"é\"x"}}"#))
            .unwrap_or_else(|e| panic!("contract suite: {e}")),
        ttl,
        push: None,
    }
}

/// How a contract run names its data, what time it starts at, and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractConfig {
    /// A prefix unique to this run; every client id of the run starts with it.
    pub run_id: String,
    /// The store time of the run's first message, Unix milliseconds; later ones add offsets.
    pub base_ms: u64,
    /// The longest the broker suite waits for an expected event.
    pub timeout: Duration,
    /// How long the broker suite waits before concluding that an event did not come.
    pub settle: Duration,
    /// The step between two looks at an event stream while waiting.
    pub poll_step: Duration,
    /// Whether purge counts must be exact (the store holds only this check's data) or are
    /// lower bounds (other data in the store may be purged by the same pass).
    pub exact_purge_counts: bool,
}

/// The longest suffix the suite appends to [`ContractConfig::run_id`] in a client id.
const MAX_SUFFIX: usize = 40;

impl ContractConfig {
    /// A configuration with the given run id and start time, a 5 s timeout, a 300 ms settle
    /// time, a 10 ms poll step and exact purge counts.
    ///
    /// # Errors
    /// When `run_id` could not prefix a client id: characters outside `[A-Za-z0-9_.:@-]`, or
    /// so long that the suite's suffixes would exceed [`ClientId::MAX_LEN`].
    pub fn new(run_id: &str, base_ms: u64) -> Result<ContractConfig, IdError> {
        let probe = format!("{run_id}{}", "x".repeat(MAX_SUFFIX));
        ClientId::new(&probe)?;
        Ok(ContractConfig {
            run_id: run_id.to_owned(),
            base_ms,
            timeout: Duration::from_secs(5),
            settle: Duration::from_millis(300),
            poll_step: Duration::from_millis(10),
            exact_purge_counts: true,
        })
    }

    /// Sets [`ContractConfig::exact_purge_counts`].
    pub fn exact_purge_counts(mut self, exact: bool) -> ContractConfig {
        self.exact_purge_counts = exact;
        self
    }

    /// Sets [`ContractConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> ContractConfig {
        self.timeout = timeout;
        self
    }

    /// Sets [`ContractConfig::settle`].
    pub fn settle(mut self, settle: Duration) -> ContractConfig {
        self.settle = settle;
        self
    }

    /// A client id unique to this run and `name`.
    pub(crate) fn client(&self, name: &str) -> ClientId {
        assert!(name.len() <= MAX_SUFFIX, "suffix {name:?} too long");
        ClientId::new(&format!("{}{name}", self.run_id))
            .unwrap_or_else(|e| panic!("contract suite: bad client id for {name:?}: {e}"))
    }
}

/// Panics with the name of the failed check unless `cond` holds.
macro_rules! check {
    ($name:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!("contract check {} failed: {}", $name, format!($($fmt)+));
        }
    };
}
pub(crate) use check;

/// Unwraps an operation's result, or panics naming the check and the operation.
pub(crate) fn ok<T, E: std::fmt::Display>(check: &str, what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("contract check {check} failed: {what} returned an error: {e}"))
}

pub(crate) fn slot(n: i64) -> Slot {
    Slot::new(n).unwrap_or_else(|e| panic!("contract suite: {e}"))
}
