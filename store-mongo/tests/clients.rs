//! The client view's per-slot backlog (issue 14) against a real MongoDB-wire server in a
//! container: herald-core's contract for [`herald_core::MessageStore::slots`].

mod common;

use herald_core::contract_clients::store_slots_suite;

#[async_std::test]
async fn passes_the_slots_contract() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let stores = common::fresh_stores(mongo.url(), "slots");
    store_slots_suite(&common::suite_config("mongo-cv"), stores).await;
}
