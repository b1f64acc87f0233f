//! The receipts contract suite (push records, receipts, status, recall, idempotency) against a
//! real MongoDB-wire server in a container.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use herald_core::Retention;
use herald_core::contract::ContractConfig;
use herald_core::contract_receipts::receipts_suite;
use herald_store_mongo::{MongoConfig, MongoStore};

#[async_std::test]
async fn passes_the_receipts_suite() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let url = mongo.url();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // An hour ahead: the server's TTL monitor never removes a run's data mid-run.
    let cfg = ContractConfig::new(
        &format!("mongo-r-{}", std::process::id()),
        now_ms + 3_600_000,
    )
    .expect("run id");
    static DB: AtomicU32 = AtomicU32::new(0);
    receipts_suite(&cfg, |retention: Retention| {
        let name = format!("receipts{}", DB.fetch_add(1, Ordering::Relaxed));
        let url = url.clone();
        async move {
            MongoStore::connect(
                MongoConfig::new(url).database(name).retention(retention),
                std::sync::Arc::new(herald_it::AsyncStd),
            )
            .await
            .expect("connect")
        }
    })
    .await;
}
