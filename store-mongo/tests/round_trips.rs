//! What the store costs the database, counted with the server's own `serverStatus.opcounters`
//! (insert + query + update + delete + getmore: what MongoDB counts per command), against the
//! MongoDB-wire server in a container. Also: ids stay right when several nodes (several
//! stores on one database) push to the same clients at once.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_core::{ClientId, MessageId, MessageStore, NewMessage, Payload, Slot};
use herald_store_mongo::{MongoConfig, MongoStore};
use mongodb::bson::{Bson, doc};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn message(n: u64) -> NewMessage {
    NewMessage {
        from: "ops".into(),
        channel: vec!["t".into()],
        data: Payload::from_json(&format!(r#"{{"n":{n}}}"#)).unwrap(),
        ttl: Some(Duration::from_secs(3600)),
        // Named, as every push of the REST API is: its push record is part of the cost.
        push: Some(herald_core::PushIds::new(7).next(n)),
    }
}

fn clients(prefix: &str, n: usize) -> Vec<ClientId> {
    (0..n)
        .map(|i| ClientId::new(&format!("{prefix}-{i}")).unwrap())
        .collect()
}

/// Reads the server's operation counters.
struct Ops(mongodb::Database);

impl Ops {
    async fn new(url: &str) -> Ops {
        let client = mongodb::Client::with_uri_str(url).await.unwrap();
        Ops(client.database("admin"))
    }

    /// insert + query + update + delete + getmore so far.
    async fn count(&self) -> i64 {
        let status = self.0.run_command(doc! {"serverStatus": 1}).await.unwrap();
        let ops = status.get_document("opcounters").unwrap();
        ["insert", "query", "update", "delete", "getmore"]
            .iter()
            .map(|k| match ops.get(k) {
                Some(Bson::Int32(n)) => i64::from(*n),
                Some(Bson::Int64(n)) => *n,
                Some(Bson::Double(f)) => *f as i64,
                other => panic!("opcounters.{k}: {other:?}"),
            })
            .sum()
    }
}

async fn start(db: &str) -> (herald_it::Mongo, MongoStore, Ops) {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    let store = MongoStore::connect(
        MongoConfig::new(mongo.url()).database(db),
        std::sync::Arc::new(herald_it::AsyncStd),
    )
    .await
    .expect("connect");
    let ops = Ops::new(&mongo.url()).await;
    (mongo, store, ops)
}

#[async_std::test]
async fn a_push_costs_a_few_operations_whatever_its_recipients() {
    let (mongo, store, ops) = start("pushops").await;
    let to = clients("p", 100);
    for round in 1..=3_u64 {
        let before = ops.count().await;
        let ids = store.append(&message(round), &to, now_ms()).await.unwrap();
        let cost = ops.count().await - before;
        // The first push reads the counters (a find); then the node knows them: the take, the
        // insert of the copies and the insert of the push record alone.
        let most = if round == 1 { 4 } else { 3 };
        assert!(
            cost <= most,
            "a push to 100 recipients (round {round}) cost {cost} operations, expected {most}"
        );
        assert_eq!(ids, vec![Ok(MessageId(round)); 100], "round {round}");
    }
    // Another node pushes to half of them: this node's next push reads and takes those again,
    // and every id is still the next one.
    let other = MongoStore::connect(
        MongoConfig::new(mongo.url()).database("pushops"),
        std::sync::Arc::new(herald_it::AsyncStd),
    )
    .await
    .expect("connect");
    let ids = other
        .append(&message(4), &to[..50], now_ms())
        .await
        .unwrap();
    assert_eq!(ids, vec![Ok(MessageId(4)); 50]);
    let before = ops.count().await;
    let ids = store.append(&message(5), &to, now_ms()).await.unwrap();
    let cost = ops.count().await - before;
    assert!(cost <= 5, "after another node's push: {cost} operations");
    let mut want = vec![Ok(MessageId(5)); 50];
    want.extend(vec![Ok(MessageId(4)); 50]);
    assert_eq!(ids, want);
    // The largest push: still a few bulk calls.
    let to = clients("big", 2_000);
    let before = ops.count().await;
    let ids = store.append(&message(9), &to, now_ms()).await.unwrap();
    let cost = ops.count().await - before;
    assert!(
        cost <= 5,
        "a push to 2,000 recipients cost {cost} operations"
    );
    assert!(ids.iter().all(|id| *id == Ok(MessageId(1))));
}

#[async_std::test]
async fn concurrent_pushes_of_one_node_share_round_trips() {
    let (_mongo, store, ops) = start("groupops").await;
    let to = clients("g", 100);
    let before = ops.count().await;
    let pushes = (0..20_u64).map(|n| {
        let (store, to) = (store.clone(), to.clone());
        async move { store.append(&message(n), &to, now_ms()).await.unwrap() }
    });
    let results = futures::future::join_all(pushes).await;
    let cost = ops.count().await - before;
    // One at a time, 20 pushes would cost 60 operations; coalesced, a few batches.
    assert!(
        cost <= 12,
        "20 concurrent pushes to 100 recipients cost {cost}"
    );
    for (i, client) in to.iter().enumerate() {
        let mut got: Vec<u64> = results.iter().map(|r| r[i].clone().unwrap().0).collect();
        got.sort_unstable();
        assert_eq!(got, (1..=20).collect::<Vec<_>>(), "{client}'s ids");
    }
    // Each client reads its 20 messages in id order, each carrying the push it came from.
    let read = store
        .unacked(
            &to[7],
            Slot::new(0).unwrap(),
            MessageId::ZERO,
            100,
            now_ms(),
        )
        .await
        .unwrap();
    let by_id: Vec<(u64, String)> = read
        .iter()
        .map(|m| (m.id.0, m.data.json().into()))
        .collect();
    let want: Vec<(u64, String)> = (0..20)
        .map(|n| (results[n][7].clone().unwrap().0, format!(r#"{{"n":{n}}}"#)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(by_id, want);
}

#[async_std::test]
async fn acknowledgements_of_many_sessions_share_round_trips() {
    let (_mongo, store, ops) = start("ackops").await;
    let to = clients("a", 200);
    for n in 0..5 {
        store.append(&message(n), &to, now_ms()).await.unwrap();
    }
    let slot = Slot::new(3).unwrap();
    let before = ops.count().await;
    // 200 sessions acknowledge their 5 messages one by one: 1,000 acknowledgements.
    let sessions = to.iter().map(|client| {
        let store = store.clone();
        async move {
            for id in 1..=5 {
                store.ack(client, slot, &[MessageId(id)]).await.unwrap();
            }
        }
    });
    futures::future::join_all(sessions).await;
    let cost = ops.count().await - before;
    assert!(cost <= 20, "1,000 acknowledgements cost {cost} operations");
    // Durable when answered: nothing is left for that slot, everything for another.
    for client in [&to[0], &to[199]] {
        let left = store
            .unacked(client, slot, MessageId::ZERO, 10, now_ms())
            .await
            .unwrap();
        assert!(left.is_empty(), "{client} still has {} unacked", left.len());
        let other = store
            .unacked(client, Slot::new(4).unwrap(), MessageId::ZERO, 10, now_ms())
            .await
            .unwrap();
        assert_eq!(other.len(), 5);
    }
}

#[async_std::test]
async fn several_nodes_pushing_to_the_same_clients_never_share_an_id() {
    let mongo = herald_it::Mongo::start()
        .await
        .expect("start the MongoDB-wire container");
    // Three nodes: three stores on one database, each with its own batches.
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            MongoStore::connect(
                MongoConfig::new(mongo.url()).database("nodes"),
                std::sync::Arc::new(herald_it::AsyncStd),
            )
            .await
            .expect("connect"),
        );
    }
    let to = clients("n", 50);
    let pushes = nodes.iter().enumerate().flat_map(|(node, store)| {
        let to = &to;
        (0..10_u64).map(move |k| async move {
            let n = node as u64 * 100 + k;
            (n, store.append(&message(n), to, now_ms()).await.unwrap())
        })
    });
    let results = futures::future::join_all(pushes).await;
    for (i, client) in to.iter().enumerate() {
        let mut ids: HashMap<u64, u64> = HashMap::new();
        for (n, r) in &results {
            let id = r[i].clone().unwrap().0;
            assert!(
                ids.insert(id, *n).is_none(),
                "{client}: id {id} given twice"
            );
        }
        // Every message reads back under its id, in id order.
        let read = store_read(&nodes[i % 3], client).await;
        let got: Vec<(u64, String)> = read
            .iter()
            .map(|m| (m.id.0, m.data.json().to_owned()))
            .collect();
        let mut want: Vec<(u64, String)> = ids
            .iter()
            .map(|(id, n)| (*id, format!(r#"{{"n":{n}}}"#)))
            .collect();
        want.sort();
        assert_eq!(got, want, "{client}");
    }
}

async fn store_read(store: &MongoStore, client: &ClientId) -> Vec<herald_core::Message> {
    store
        .unacked(
            client,
            Slot::new(0).unwrap(),
            MessageId::ZERO,
            1000,
            now_ms(),
        )
        .await
        .unwrap()
}

/// Counters written by earlier versions (`{_id, n}` alone; a log of `{p, n}` entries) keep
/// counting from their `n`: an upgrade never makes an id go back or repeat.
#[async_std::test]
async fn counters_of_earlier_versions_keep_counting() {
    let (mongo, store, _ops) = start("upgrade").await;
    let raw = mongodb::Client::with_uri_str(mongo.url()).await.unwrap();
    let counters = raw
        .database("upgrade")
        .collection::<mongodb::bson::Document>("counters");
    counters
        .insert_many([
            doc! {"_id": "plain", "n": 7_i64},
            doc! {"_id": "logged", "n": 9_i64, "r": [
                {"p": mongodb::bson::oid::ObjectId::new(), "n": 9_i64},
            ]},
        ])
        .await
        .unwrap();
    let to = [
        ClientId::new("plain").unwrap(),
        ClientId::new("logged").unwrap(),
    ];
    let first = store.append(&message(1), &to, now_ms()).await.unwrap();
    let second = store.append(&message(2), &to, now_ms()).await.unwrap();
    let ids = |r: &herald_core::AppendResult| -> Vec<u64> {
        r.iter().map(|x| x.clone().unwrap().0).collect()
    };
    assert_eq!(ids(&first), vec![8, 10]);
    assert_eq!(ids(&second), vec![9, 11]);
}

/// A session's read when there is nothing to read (a new client; everything acknowledged up to
/// the slot's mark) costs one query: the counter says so.
#[async_std::test]
async fn a_read_with_nothing_to_read_costs_one_query() {
    let (_mongo, store, ops) = start("emptyreads").await;
    let client = ClientId::new("quiet").unwrap();
    let slot = Slot::new(0).unwrap();
    let read = |after| store.unacked(&client, slot, MessageId(after), 10, now_ms());
    let before = ops.count().await;
    assert!(read(0).await.unwrap().is_empty());
    assert_eq!(ops.count().await - before, 1, "a client never pushed to");
    let ids = store
        .append(&message(1), std::slice::from_ref(&client), now_ms())
        .await
        .unwrap();
    assert_eq!(ids, vec![Ok(MessageId(1))]);
    let got = read(0).await.unwrap();
    assert_eq!(got.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![1]);
    store
        .ack_through(&client, slot, &[MessageId(1)], MessageId(1))
        .await
        .unwrap();
    let before = ops.count().await;
    assert!(read(0).await.unwrap().is_empty());
    assert_eq!(ops.count().await - before, 1, "everything acknowledged");
    // Another slot still reads the message.
    let other = store
        .unacked(
            &client,
            Slot::new(1).unwrap(),
            MessageId::ZERO,
            10,
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
}

/// A connect storm: the first reads of many sessions at once share their counter queries.
#[async_std::test]
async fn concurrent_first_reads_share_their_counter_queries() {
    let (_mongo, store, ops) = start("storm").await;
    let who = clients("s", 200);
    let before = ops.count().await;
    let reads = who
        .iter()
        .map(|c| store.unacked(c, Slot::new(0).unwrap(), MessageId::ZERO, 10, now_ms()));
    for read in futures::future::join_all(reads).await {
        assert!(read.unwrap().is_empty());
    }
    let cost = ops.count().await - before;
    assert!(
        cost <= 10,
        "200 first reads of empty queues cost {cost} operations"
    );
}

/// Two slots of one client reading at once share a counter query, and both see the backlog.
#[async_std::test]
async fn slots_of_one_client_reading_at_once_both_see_the_backlog() {
    let (_mongo, store, _ops) = start("twoslots").await;
    let client = ClientId::new("both").unwrap();
    store
        .append(&message(1), std::slice::from_ref(&client), now_ms())
        .await
        .unwrap();
    let reads = (0..4).map(|s| {
        store.unacked(
            &client,
            Slot::new(s).unwrap(),
            MessageId::ZERO,
            10,
            now_ms(),
        )
    });
    for (s, read) in futures::future::join_all(reads)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(read.unwrap().len(), 1, "slot {s}");
    }
}
