//! What the MongoDB store's test files share: the clock, and the stores a contract suite runs
//! on. Each test binary uses part of it.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use herald_core::Retention;
use herald_core::contract::ContractConfig;
use herald_store_mongo::{MongoConfig, MongoStore};

/// Wall-clock time, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A suite's configuration for run `tag` of this process, its store time an hour ahead: the
/// server's TTL monitor never removes a run's data mid-run.
pub fn suite_config(tag: &str) -> ContractConfig {
    ContractConfig::new(
        &format!("{tag}-{}", std::process::id()),
        now_ms() + 3_600_000,
    )
    .expect("run id")
}

/// The stores of a suite on the server at `url`: one database per store (`<prefix><n>`), so
/// that purge counts are exact.
pub fn fresh_stores(
    url: String,
    prefix: &'static str,
) -> impl FnMut(Retention) -> Pin<Box<dyn Future<Output = MongoStore>>> {
    static DB: AtomicU32 = AtomicU32::new(0);
    move |retention| {
        let name = format!("{prefix}{}", DB.fetch_add(1, Ordering::Relaxed));
        let config = MongoConfig::new(url.clone())
            .database(name)
            .retention(retention);
        Box::pin(async move {
            MongoStore::connect(config, Arc::new(herald_it::AsyncStd))
                .await
                .expect("connect")
        })
    }
}
