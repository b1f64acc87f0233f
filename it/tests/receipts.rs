//! Push receipts, status, idempotent publish and recall on a cluster (issue 14): two API
//! nodes and two connectors (real `herald` processes) on a MongoDB-wire server and Redis in
//! containers, with curl and the official Node client. The scenarios are the single node's
//! (`herald_it::receipts`): pushes go through one API node, status and retries through the
//! other, clients connect to either connector.

use herald_it::receipts::{self, Target};
use herald_it::{ClusterNodes, Herald, Mongo, Redis, test_env};

/// Two API nodes and two connectors on one store and one broker.
struct Cluster {
    apis: [Herald; 2],
    connectors: [Herald; 2],
    _nodes: ClusterNodes,
}

impl Cluster {
    fn start(mongo: &str, redis: &str) -> Cluster {
        let mut nodes = ClusterNodes::new(mongo, redis, None);
        Cluster {
            apis: [nodes.start("api", "api-1"), nodes.start("api", "api-2")],
            connectors: [
                nodes.start("connector", "conn-a"),
                nodes.start("connector", "conn-b"),
            ],
            _nodes: nodes,
        }
    }

    /// The scenarios' target, clients on connector `c`.
    fn target<'a>(&'a self, c: usize, tag: &'a str) -> Target<'a> {
        Target {
            apis: [&self.apis[0].api, &self.apis[1].api],
            connector: &self.connectors[c].connector,
            secret: &self.connectors[c].secret,
            tag,
        }
    }
}

#[async_std::test]
async fn receipts_status_idempotency_and_recall_on_a_cluster() -> anyhow::Result<()> {
    let _ = test_env();
    let (redis, mongo) = (Redis::start().await?, Mongo::start().await?);
    let cl = Cluster::start(&mongo.url(), &redis.url());
    receipts::status_follows_delivery_and_ack(&cl.target(0, "cl-a")).await;
    receipts::status_follows_delivery_and_ack(&cl.target(1, "cl-b")).await;
    receipts::idempotent_retry(&cl.target(0, "cl")).await;
    receipts::recall_before_connect(&cl.target(1, "cl")).await;
    receipts::bad_input(&cl.target(0, "cl")).await;
    receipts::ttl_runs_out(&cl.target(0, "cl")).await;
    Ok(())
}
