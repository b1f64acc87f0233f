//! The database's own bound, measured in the same run as Herald on it: what the MongoDB
//! server answers when nothing but the driver stands between it and the load generator.
//!
//! `bound` writes documents shaped like Herald's stored copies (`store-mongo`: `{c, i, f, ch,
//! d, t, a, x}` with the same three indexes) into a database of its own and times, one
//! command in flight at a time (the way one Herald node writes: one batch under way), for
//! `secs` each:
//! - `insert_many` of B copies: the write every push needs, and its floor;
//! - Herald's whole append round trips for B recipients, as a node that knows its recipients'
//!   counters sends them: an `update` of B upserts conditional on each counter's `n`, and the
//!   `insert_many` of B copies;
//! - an acknowledgement `update` of B statements (`$max` on one slot's acknowledged mark in a
//!   client's counter each), as Herald sends a batch of B sessions' acknowledgements.
//!
//! [`op_count`] reads the server's `serverStatus.opcounters`, so that a scenario can report
//! how many database operations Herald spent on it.

use std::time::{Duration, Instant};

use anyhow::Context;
use mongodb::Client;
use mongodb::bson::{Bson, DateTime, Document, doc};
use serde_json::{Value, json};

use crate::scenario::round3;
use crate::stats::summarize;

/// Distinct client ids the copies go to, as many as the MongoDB scenarios connect.
const CLIENTS: usize = 500;

/// A client of the server at `url` (a `mongodb://` URL).
///
/// # Errors
/// When the URL is invalid.
pub async fn client(url: &str) -> anyhow::Result<Client> {
    Client::with_uri_str(url)
        .await
        .with_context(|| format!("expected a mongodb:// URL, found {url:?}"))
}

/// insert + query + update + delete + getmore the server has counted so far.
///
/// # Errors
/// When the server does not answer `serverStatus` with `opcounters`.
pub async fn op_count(client: &Client) -> anyhow::Result<i64> {
    let status = client
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await
        .context("serverStatus")?;
    let counters = status
        .get_document("opcounters")
        .context("serverStatus without opcounters")?;
    Ok(["insert", "query", "update", "delete", "getmore"]
        .iter()
        .map(|k| match counters.get(k) {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(n)) => *n as i64,
            _ => 0,
        })
        .sum())
}

/// One timed stage: calls made, how long they took, their latencies (microseconds).
struct Stage {
    calls: u64,
    elapsed: Duration,
    latencies: Vec<u32>,
}

impl Stage {
    fn report(mut self, batch: usize) -> Value {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        json!({
            "calls": self.calls,
            "per_s": round3(self.calls as f64 / secs),
            "docs_per_s": round3((self.calls * batch as u64) as f64 / secs),
            "ms": summarize(&mut self.latencies),
        })
    }
}

/// Runs `call(k)` for k = 0, 1, ... one at a time until `secs` have passed (at least once).
async fn timed<F, Fut>(secs: Duration, mut call: F) -> anyhow::Result<Stage>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut calls = 0;
    while calls == 0 || started.elapsed() < secs {
        let t = Instant::now();
        call(calls).await?;
        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        calls += 1;
    }
    Ok(Stage {
        calls,
        elapsed: started.elapsed(),
        latencies,
    })
}

/// The B copies of call `k`: one to each of B consecutive clients, each client's ids
/// increasing from call to call (as Herald's are).
fn copies(batch: usize, k: u64, first_id: i64) -> Vec<Document> {
    let now = DateTime::now();
    let expires = DateTime::from_millis(now.timestamp_millis() + 86_400_000);
    (0..batch)
        .map(|j| {
            let slot = k as usize * batch + j;
            let client = format!("bound-{}", slot % CLIENTS);
            let id = first_id + (slot / CLIENTS) as i64;
            doc! {
                "c": client, "i": id, "f": "herald-bench", "ch": ["bench"],
                "d": format!(r#"{{"t":{},"s":{k}}}"#, now.timestamp_millis()),
                "t": now, "a": 0_i32, "x": expires,
            }
        })
        .collect()
}

/// `bound`: the server's own rates for B-copy writes (see the module doc), one JSON report.
/// It writes into `herald_bench_bound`, dropped before and after.
///
/// # Errors
/// When the server cannot be reached or refuses a command.
pub async fn bound(url: &str, batch: usize, secs: Duration, label: &str) -> anyhow::Result<Value> {
    if batch == 0 {
        anyhow::bail!("--batch must be at least 1, found 0");
    }
    let client = client(url).await?;
    let db = client.database("herald_bench_bound");
    db.drop().await.context("dropping herald_bench_bound")?;
    // Herald's indexes on `messages`, so that each insert costs what it costs Herald.
    db.collection::<Document>("messages")
        .create_indexes(herald_store_mongo::message_indexes())
        .await?;
    let messages = db.collection::<Document>("messages");
    let ops_before = op_count(&client).await.ok();

    // insert_many of B copies; ids from 1 on.
    let inserts = timed(secs, |k| {
        let messages = messages.clone();
        async move {
            messages
                .insert_many(copies(batch, k, 1))
                .ordered(false)
                .await
                .context("insert_many")?;
            Ok(())
        }
    })
    .await?;
    let inserted = inserts.calls;

    // Herald's append round trips: ids far above the first stage's, so nothing collides. The
    // counters' values are known here as a node knows them: from its own takes.
    let known = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let appends = timed(secs, |k| {
        let (db, messages, known) = (db.clone(), messages.clone(), known.clone());
        async move {
            let clients: Vec<String> = (0..batch)
                .map(|j| format!("bound-{}", (k as usize * batch + j) % CLIENTS))
                .collect();
            let updates: Vec<Document> = {
                let mut known = known
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                clients
                    .iter()
                    .map(|c| {
                        let n = known.entry(c.clone()).or_insert(0_i64);
                        let expected = *n;
                        *n += 1;
                        doc! {
                            "q": {"_id": c, "n": expected},
                            "u": {"$inc": {"n": 1_i64}},
                            "upsert": true,
                        }
                    })
                    .collect()
            };
            let reply = db
                .run_command(doc! {"update": "counters", "updates": updates, "ordered": false})
                .await
                .context("update of counters")?;
            anyhow::ensure!(
                reply.get_array("writeErrors").is_err(),
                "a counter was not where this stage left it: {reply}"
            );
            messages
                .insert_many(copies(batch, k, 1 << 40))
                .ordered(false)
                .await
                .context("insert_many")?;
            Ok(())
        }
    })
    .await?;

    // Acknowledgements of the copies of the first stage, B statements per command: each
    // moves one client's slot 0 mark up to its copy's id.
    let acks = timed(secs, |k| {
        let db = db.clone();
        async move {
            let k = k % inserted.max(1);
            let statements: Vec<Document> = copies(batch, k, 1)
                .into_iter()
                .map(|c| {
                    doc! {
                        "q": {"_id": c.get_str("c").unwrap_or("")},
                        "u": {"$max": {"m.0": c.get("i").cloned().unwrap_or(Bson::Null)}},
                    }
                })
                .collect();
            db.run_command(doc! {"update": "counters", "updates": statements, "ordered": false})
                .await
                .context("acknowledgement update")?;
            Ok(())
        }
    })
    .await?;
    let ops = match (ops_before, op_count(&client).await.ok()) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    db.drop().await.context("dropping herald_bench_bound")?;
    Ok(json!({
        "scenario": "bound",
        "server": label,
        "batch": batch,
        "secs": secs.as_secs_f64(),
        "insert_many": inserts.report(batch),
        "append_round_trips": appends.report(batch),
        "ack_update": acks.report(batch),
        "db_ops": ops,
    }))
}
