//! The harness works: each service answers a round trip through its real client.

use herald_it::{Mongo, Redis, RedisCluster};

#[async_std::test]
async fn redis_container_answers_ping() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    let client = redis::Client::open(redis.url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    assert_eq!(pong, "PONG");
    Ok(())
}

#[async_std::test]
async fn redis_container_restarts_on_the_same_url() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    let client = redis::Client::open(redis.url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await?;
    redis.stop().await?;
    redis.start_again().await?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    // A fresh server (no persistence): the key is gone, and the URL still works.
    let value: Option<String> = redis::cmd("GET").arg("k").query_async(&mut conn).await?;
    assert_eq!(value, None);
    Ok(())
}

#[async_std::test]
async fn redis_cluster_answers_ping_on_every_master() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    assert_eq!(cluster.ports().len(), 3);
    let client = redis::cluster::ClusterClient::new(cluster.node_urls())?;
    let mut conn = client.get_async_connection().await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    assert_eq!(pong, "PONG");
    // Keys spread over the three masters and all answer.
    for i in 0..30 {
        let key = format!("smoke-{i}");
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query_async(&mut conn)
            .await?;
        let got: i64 = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        assert_eq!(got, i);
    }
    for port in cluster.ports() {
        let node = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut node = node.get_multiplexed_async_connection().await?;
        let size: i64 = redis::cmd("DBSIZE").query_async(&mut node).await?;
        assert!(
            size > 0,
            "master {port} holds no key: the slots are not spread"
        );
    }
    Ok(())
}

#[async_std::test]
async fn mongo_container_answers_ping() -> anyhow::Result<()> {
    let mongo = Mongo::start().await?;
    assert!(mongo.url().contains("directConnection=true"));
    let client = mongodb::Client::with_uri_str(mongo.url()).await?;
    let reply = client
        .database("admin")
        .run_command(mongodb::bson::doc! { "ping": 1 })
        .await?;
    assert_eq!(
        reply
            .get_f64("ok")
            .ok()
            .or(reply.get_i32("ok").ok().map(f64::from)),
        Some(1.0)
    );
    Ok(())
}
