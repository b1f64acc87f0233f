//! The contract suite against a real MongoDB-wire server in a container (the local SecantusDB
//! image, or whatever `HERALD_IT_MONGO_IMAGE` names — e.g. the official `mongo:8`).

mod common;

use std::time::Duration;

use herald_core::contract::{ContractConfig, store_suite};
use herald_core::{
    ClientId, MessageId, MessageStore, NewMessage, Payload, Retention, Slot, StoreError,
};
use herald_store_mongo::{MongoConfig, MongoStore};

#[async_std::test]
async fn passes_the_contract_suite() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let stores = common::fresh_stores(mongo.url(), "contract");
    store_suite(&common::suite_config("mongo"), stores).await;
}

#[async_std::test]
async fn data_round_trips_and_a_stopped_server_is_unavailable() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let store = MongoStore::connect(
        MongoConfig::new(mongo.url()).database("outage"),
        std::sync::Arc::new(herald_it::AsyncStd),
    )
    .await
    .expect("connect");
    store.ping().await.expect("ping while up");
    let client = ClientId::new("outage").unwrap();
    let msg = NewMessage {
        from: "t".into(),
        channel: vec!["a".into()],
        data: Payload::from_json(r#"{"z":1,"a":[1,2.5,"x"],"$weird":null}"#).unwrap(),
        ttl: Some(Duration::from_secs(60)),
        push: None,
    };
    let ids = store
        .append(&msg, std::slice::from_ref(&client), common::now_ms())
        .await
        .expect("append");
    assert_eq!(ids, vec![Ok(MessageId(1))]);
    let got = store
        .unacked(
            &client,
            Slot::new(0).unwrap(),
            MessageId::ZERO,
            10,
            common::now_ms(),
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
        .append(&msg, std::slice::from_ref(&client), common::now_ms())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(store.ping().await.is_err());
}

/// A push racing another, played by hand on the raw collections: it takes its id as an
/// append does, and inserts its copy later.
struct SlowPush {
    counters: mongodb::Collection<mongodb::bson::Document>,
    messages: mongodb::Collection<mongodb::bson::Document>,
}

impl SlowPush {
    /// A MongoDB-wire server, a store on database `db` that waits far longer for a missing
    /// id than a slow insert takes however loaded the machine is, and the raw collections.
    async fn start(db: &str) -> (herald_it::Mongo, MongoStore, SlowPush) {
        let mongo = herald_it::Mongo::start()
            .await
            .expect("start the MongoDB-wire container");
        let store = MongoStore::connect(
            MongoConfig::new(mongo.url())
                .database(db)
                .settle(Duration::from_secs(60)),
            std::sync::Arc::new(herald_it::AsyncStd),
        )
        .await
        .expect("connect");
        let raw = mongodb::Client::with_uri_str(mongo.url()).await.unwrap();
        let raw = raw.database(db);
        let slow = SlowPush {
            counters: raw.collection("counters"),
            messages: raw.collection("messages"),
        };
        (mongo, store, slow)
    }

    /// Takes the client's next id, as an append does, and inserts nothing yet.
    async fn take_id(&self, client: &str) {
        use mongodb::bson::doc;
        self.counters
            .find_one_and_update(doc! {"_id": client}, doc! {"$inc": {"n": 1_i64}})
            .upsert(true)
            .await
            .unwrap();
    }

    /// After `delay`, inserts the copy of id `id` carrying `data` (JSON text).
    async fn insert_after(&self, delay: Duration, client: &str, id: i64, data: &str) {
        use mongodb::bson::{DateTime, doc};
        async_std::task::sleep(delay).await;
        let t = DateTime::from_millis(common::now_ms() as i64);
        let x = DateTime::from_millis(common::now_ms() as i64 + 3_600_000);
        self.messages
            .insert_one(doc! {
                "c": client, "i": id, "f": "t", "ch": [], "d": data,
                "t": t, "a": 0_i32, "x": x,
            })
            .await
            .unwrap();
    }
}

fn later(data: &str) -> NewMessage {
    NewMessage {
        from: "t".into(),
        channel: vec![],
        data: Payload::from_json(data).unwrap(),
        ttl: None,
        push: None,
    }
}

/// Two pushes racing: the earlier one took id `n` but its insert lands after the later one's.
/// A read must not hand out the later message past the missing one while it may still come.
#[async_std::test]
async fn a_read_never_skips_an_id_still_on_its_way() {
    let (mongo, store, slow) = SlowPush::start("race").await;
    let client = ClientId::new("racer").unwrap();
    let slot = Slot::new(0).unwrap();
    let msg = later(r#""later""#);
    // The slow push takes id 1 and has not inserted yet.
    slow.take_id("racer").await;
    let ids = store
        .append(&msg, std::slice::from_ref(&client), common::now_ms())
        .await
        .unwrap();
    assert_eq!(ids, vec![Ok(MessageId(2))]);
    let read = store.unacked(&client, slot, MessageId::ZERO, 10, common::now_ms());
    let slow_insert = slow.insert_after(Duration::from_millis(300), "racer", 1, r#""earlier""#);
    let (got, ()) = futures::join!(read, slow_insert);
    let got: Vec<(u64, String)> = got
        .unwrap()
        .iter()
        .map(|m| (m.id.0, m.data.json().to_owned()))
        .collect();
    assert_eq!(
        got,
        vec![(1, r#""earlier""#.into()), (2, r#""later""#.into())],
        "in id order, the late insert included"
    );

    // A push whose insert never happens: after `settle` its id counts as gone (a store with a
    // short one, on the same data).
    let store = MongoStore::connect(
        MongoConfig::new(mongo.url())
            .database("race")
            .settle(Duration::from_millis(500)),
        std::sync::Arc::new(herald_it::AsyncStd),
    )
    .await
    .expect("connect");
    store
        .ack(&client, slot, &[MessageId(1), MessageId(2)])
        .await
        .unwrap();
    slow.take_id("racer").await; // id 3, never inserted
    let ids = store
        .append(&msg, std::slice::from_ref(&client), common::now_ms())
        .await
        .unwrap();
    assert_eq!(ids, vec![Ok(MessageId(4))]);
    let got = store
        .unacked(&client, slot, MessageId(2), 10, common::now_ms())
        .await
        .unwrap();
    assert_eq!(got.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![4]);
    // Acknowledged ids are no gap: a read from zero does not wait for 1 and 2.
    let got = store
        .unacked(&client, slot, MessageId::ZERO, 10, common::now_ms())
        .await
        .unwrap();
    assert_eq!(got.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![4]);
}

/// The same race with the slow insert landing at various moments of the read (before it,
/// between its queries, after it): whenever it lands, the read has both, in id order.
#[async_std::test]
async fn racing_inserts_landing_at_any_moment_are_never_skipped() {
    let (_mongo, store, slow) = SlowPush::start("races").await;
    let msg = later("2");
    for (n, delay_ms) in [0u64, 1, 2, 3, 5, 8, 13, 21, 34].into_iter().enumerate() {
        let name = format!("racer{n}");
        let client = ClientId::new(&name).unwrap();
        slow.take_id(&name).await;
        store
            .append(&msg, std::slice::from_ref(&client), common::now_ms())
            .await
            .unwrap();
        let read = store.unacked(
            &client,
            Slot::new(0).unwrap(),
            MessageId::ZERO,
            10,
            common::now_ms(),
        );
        let slow_insert = slow.insert_after(Duration::from_millis(delay_ms), &name, 1, "1");
        let (got, ()) = futures::join!(read, slow_insert);
        let ids: Vec<u64> = got.unwrap().iter().map(|m| m.id.0).collect();
        assert_eq!(ids, vec![1, 2], "insert after {delay_ms} ms");
    }
}

#[async_std::test]
async fn passes_the_outbox_contract_suite() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let cfg = ContractConfig::new(
        &format!("mongo-ob-{}", std::process::id()),
        common::now_ms(),
    )
    .expect("run id");
    // One database per check: each starts with an empty outbox.
    let mut stores = common::fresh_stores(mongo.url(), "outbox");
    herald_core::contract_outbox::outbox_suite(&cfg, || stores(Retention::default())).await;
}
