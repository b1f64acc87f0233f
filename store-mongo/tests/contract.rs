//! The contract suite against a real MongoDB-wire server in a container (the local SecantusDB
//! image, or whatever `HERALD_IT_MONGO_IMAGE` names — e.g. the official `mongo:8`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_core::contract::{ContractConfig, store_suite};
use herald_core::{
    ClientId, MessageId, MessageStore, NewMessage, Payload, Retention, Slot, StoreError,
};
use herald_store_mongo::{MongoConfig, MongoStore};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[async_std::test]
async fn passes_the_contract_suite() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let url = mongo.url();
    // A time an hour ahead: the server's TTL monitor never removes a run's data mid-run.
    let cfg = ContractConfig::new(
        &format!("mongo-{}", std::process::id()),
        now_ms() + 3_600_000,
    )
    .expect("run id");
    static DB: AtomicU32 = AtomicU32::new(0);
    store_suite(&cfg, |retention: Retention| {
        // One database per check, so purge counts are exact.
        let name = format!("contract{}", DB.fetch_add(1, Ordering::Relaxed));
        let url = url.clone();
        async move {
            MongoStore::connect(MongoConfig::new(url).database(name).retention(retention))
                .await
                .expect("connect")
        }
    })
    .await;
}

#[async_std::test]
async fn data_round_trips_and_a_stopped_server_is_unavailable() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let store = MongoStore::connect(MongoConfig::new(mongo.url()).database("outage"))
        .await
        .expect("connect");
    store.ping().await.expect("ping while up");
    let client = ClientId::new("outage").unwrap();
    let msg = NewMessage {
        from: "t".into(),
        channel: vec!["a".into()],
        data: Payload::from_json(r#"{"z":1,"a":[1,2.5,"x"],"$weird":null}"#).unwrap(),
        ttl: Some(Duration::from_secs(60)),
    };
    let ids = store
        .append(&msg, std::slice::from_ref(&client), now_ms())
        .await
        .expect("append");
    assert_eq!(ids, vec![Ok(MessageId(1))]);
    let got = store
        .unacked(
            &client,
            Slot::new(0).unwrap(),
            MessageId::ZERO,
            10,
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(
        got[0].data.json(),
        r#"{"z":1,"a":[1,2.5,"x"],"$weird":null}"#,
        "byte for byte"
    );
    assert_eq!(got[0].channel, vec!["a"]);
    drop(mongo); // the container is removed
    let err = store
        .append(&msg, std::slice::from_ref(&client), now_ms())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(store.ping().await.is_err());
}
