//! What the scaled-out path costs the database, end to end: one `herald` node (`--role all`)
//! on the MongoDB-wire server and Redis in containers, 200 clients online (the official
//! Node client, `it/clients/many.js`, acknowledging every batch), 5 pushes to all of them.
//! Operations are counted with the server's `serverStatus.opcounters` (insert + query +
//! update + delete + getmore). The time until all were received is printed as a measured
//! figure (docs/operations.md, "Sizing"), not asserted.

use std::io::BufRead;
use std::time::Instant;

use herald_it::{Herald, Mongo, Redis, TempDir, clients_dir, push, test_env};
use mongodb::bson::{Bson, doc};
use serde_json::{Value, json};

/// The kinds of operation counted: insert, query, update, delete, getmore.
const KINDS: [&str; 5] = ["insert", "query", "update", "delete", "getmore"];

/// The server's counters of each of [`KINDS`] so far.
async fn ops(admin: &mongodb::Database) -> anyhow::Result<[i64; 5]> {
    let status = admin.run_command(doc! {"serverStatus": 1}).await?;
    let counters = status.get_document("opcounters")?;
    Ok(KINDS.map(|k| match counters.get(k) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        _ => 0,
    }))
}

#[async_std::test]
#[allow(
    clippy::print_stderr,
    reason = "the measured figures are this test's report"
)]
async fn five_pushes_to_200_online_clients_cost_at_most_200_operations() -> anyhow::Result<()> {
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let dir = TempDir::new("cost");
    let node = Herald::start(&dir.0, &["--mongo", &mongo.url(), "--redis", &redis.url()]);
    let admin = mongodb::Client::with_uri_str(mongo.url())
        .await?
        .database("admin");
    let names: Vec<String> = (0..200).map(|i| format!("online{i}")).collect();
    let auths: Vec<Value> = names
        .iter()
        .map(|c| {
            let mut a = node.auth(c, 0);
            a["mode"] = json!("commit");
            a
        })
        .collect();
    let mut child = std::process::Command::new("node")
        .arg(clients_dir().join("many.js"))
        .arg(json!({"url": node.connector, "auths": auths, "expect": 5}).to_string())
        .env("NODE_PATH", test_env().join("node_modules"))
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().expect("a line")?, r#"{"ready":true}"#);
    let to: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = ops(&admin).await?;
    let started = Instant::now();
    for seq in 0..5 {
        let answer = push(
            &node.api,
            json!({"send_id": "it", "recv_id": to, "data": {"seq": seq}}),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let report: Value = serde_json::from_str(&lines.next().expect("a report")?)?;
    let received_in = started.elapsed();
    assert!(child.wait()?.success(), "{report}");
    for name in &names {
        assert_eq!(report["received"][name], json!([1, 2, 3, 4, 5]), "{name}");
    }
    // The acknowledgements of the last batches may still be on their way: poll until every
    // client's slot 0 is marked acknowledged through id 5 (`count_documents` runs an `aggregate`,
    // which the server counts as a command, not among the five counted here).
    let herald = mongodb::Client::with_uri_str(mongo.url())
        .await?
        .database("herald");
    let messages = herald.collection::<mongodb::bson::Document>("messages");
    let counters = herald.collection::<mongodb::bson::Document>("counters");
    let mut done = 0;
    let all_acked = herald_it::try_poll_until(herald_it::WAIT, async || {
        done = counters.count_documents(doc! {"m.0": {"$gte": 5}}).await?;
        Ok::<_, mongodb::error::Error>(done == 200)
    });
    assert!(
        all_acked.await?,
        "{} clients never acknowledged all 5",
        200 - done
    );
    let after = ops(&admin).await?;
    let by_kind: Vec<String> = KINDS
        .iter()
        .zip(after.iter().zip(before))
        .map(|(k, (a, b))| format!("{k} {}", a - b))
        .collect();
    let cost: i64 = after.iter().sum::<i64>() - before.iter().sum::<i64>();
    // Bytes per stored copy, as the server counts them (for the sizing figures), if it says.
    let stats = messages
        .client()
        .database("herald")
        .run_command(doc! {"collStats": "messages"})
        .await;
    if let Ok(stats) = stats {
        eprintln!(
            "measured: messages avgObjSize {:?} (count {:?})",
            stats.get("avgObjSize"),
            stats.get("count")
        );
    }
    eprintln!(
        "measured: 5 pushes to 200 online clients received in {received_in:?}, {cost} database operations ({})",
        by_kind.join(", ")
    );
    assert!(
        cost <= 200,
        "5 pushes to 200 online clients and their acks cost {cost} operations"
    );
    Ok(())
}
