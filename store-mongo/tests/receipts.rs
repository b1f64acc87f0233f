//! The receipts contract suite (push records, receipts, status, recall, idempotency) against a
//! real MongoDB-wire server in a container.

mod common;

use herald_core::contract_receipts::receipts_suite;

#[async_std::test]
async fn passes_the_receipts_suite() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let stores = common::fresh_stores(mongo.url(), "receipts");
    receipts_suite(&common::suite_config("mongo-r"), stores).await;
}
