//! The client view's per-slot backlog (issue 14) against a real MongoDB-wire server in a
//! container: herald-core's contract for [`herald_core::MessageStore::slots`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use herald_core::Retention;
use herald_core::contract::ContractConfig;
use herald_core::contract_clients::store_slots_suite;
use herald_store_mongo::{MongoConfig, MongoStore};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[async_std::test]
async fn passes_the_slots_contract() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let url = mongo.url();
    // A time an hour ahead: the server's TTL monitor never removes a run's data mid-run.
    let cfg = ContractConfig::new(
        &format!("mongo-cv-{}", std::process::id()),
        now_ms() + 3_600_000,
    )
    .expect("run id");
    static DB: AtomicU32 = AtomicU32::new(0);
    store_slots_suite(&cfg, |retention: Retention| {
        let name = format!("slots{}", DB.fetch_add(1, Ordering::Relaxed));
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
