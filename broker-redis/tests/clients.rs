//! The registry of sessions online (issue 14's client view) against real Redis, standalone
//! and a 3-master cluster: herald-core's contract, with a short node TTL so a dropped node's
//! sessions leave the view within the suite's timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_broker_redis::{RedisBroker, RedisBrokerConfig};
use herald_core::contract::ContractConfig;
use herald_core::contract_clients::broker_sessions_suite;
use herald_core::ids::NodeId;
use herald_it::{AsyncStd, Redis, RedisCluster};

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

async fn run(url: String, name: &str) {
    let run_id = format!("{name}-{}-{}-", std::process::id(), now().as_nanos());
    // Claims are stamped with the base time: later than the nodes' start, or the registry
    // takes them for entries of a node's earlier life.
    let base = now().as_millis() as u64 + 3_600_000;
    let cfg = ContractConfig::new(&run_id, base).expect("a valid run id");
    let made = AtomicU32::new(0);
    broker_sessions_suite(
        &cfg,
        |n| {
            let url = url.clone();
            let first = made.fetch_add(n as u32, Ordering::Relaxed);
            let run_id = run_id.clone();
            async move {
                let mut nodes = Vec::new();
                for i in 0..n as u32 {
                    let config = RedisBrokerConfig::from_url(&url)
                        .expect("a valid URL")
                        .with_node_ttl(Duration::from_millis(300));
                    let node = NodeId::new(&format!("{run_id}n{}", first + i)).expect("node id");
                    let broker = RedisBroker::connect(config, node.clone(), Arc::new(AsyncStd))
                        .await
                        .expect("connected to Redis");
                    nodes.push((broker, node));
                }
                nodes
            }
        },
        |nodes, i| {
            nodes.remove(i);
        },
        async_std::task::sleep,
    )
    .await;
}

#[async_std::test]
async fn sessions_contract_standalone() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    run(redis.url(), "cv-standalone").await;
    Ok(())
}

#[async_std::test]
async fn sessions_contract_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    run(cluster.url(), "cv-cluster").await;
    Ok(())
}
