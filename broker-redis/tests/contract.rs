//! The broker contract against real Redis: a standalone server in a container, a 3-master
//! cluster, and a master watched by three sentinels; recovery when Redis restarts, a Sentinel
//! failover followed, and the bound on notifications while Redis is paused.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use herald_broker_redis::{RedisBroker, RedisBrokerConfig};
use herald_core::Runtime;
use herald_core::contract::{ContractConfig, broker_suite};
use herald_core::ids::{ClientId, MessageId, NodeId};
use herald_core::ports::{Broker, BrokerEvent, BrokerEvents};
use herald_it::{Redis, RedisCluster, RedisSentinel, WAIT};

fn runtime() -> Arc<dyn Runtime> {
    Arc::new(herald_it::AsyncStd)
}

/// A run id no other run (or earlier test on the same server) shares.
fn run_id(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}-", std::process::id())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn connect_nodes(url: &str, n: usize) -> Vec<RedisBroker> {
    let mut brokers = Vec::new();
    for i in 0..n {
        let config = RedisBrokerConfig::from_url(url).expect("a valid URL");
        let node = NodeId::new(&format!("node-{i}")).expect("a valid node id");
        brokers.push(
            RedisBroker::connect(config, node, runtime())
                .await
                .expect("connected to Redis"),
        );
    }
    brokers
}

async fn run_suite(url: String, name: &str) -> anyhow::Result<()> {
    let cfg = ContractConfig::new(&run_id(name), now_ms())?;
    broker_suite(
        &cfg,
        |n| {
            let url = url.clone();
            async move { connect_nodes(&url, n).await }
        },
        async_std::task::sleep,
    )
    .await;
    Ok(())
}

#[async_std::test]
async fn contract_standalone() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    run_suite(redis.url(), "standalone").await
}

#[async_std::test]
async fn contract_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    run_suite(cluster.url(), "cluster").await
}

/// The next event other than `Resync`, or an error after `timeout`.
async fn next_event(events: &mut BrokerEvents, timeout: Duration) -> anyhow::Result<BrokerEvent> {
    async_std::future::timeout(timeout, events.next())
        .await
        .context("no broker event in time")?
        .context("the event stream ended")
}

#[async_std::test]
async fn restart_of_redis_brings_resync_and_notifications_again() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    let config = RedisBrokerConfig::from_url(&redis.url())?
        .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let broker = RedisBroker::connect(config, NodeId::new("node-r")?, runtime()).await?;
    let mut events = broker.events();
    let client = ClientId::new(&format!("{}c", run_id("restart")))?;
    broker.subscribe(&client).await?;
    broker.notify(&client, MessageId(1)).await?;
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5)).await?,
        BrokerEvent::Notify {
            client: client.clone(),
            last: MessageId(1),
            message: None,
        }
    );

    redis.stop().await?;
    assert!(
        broker.ping().await.is_err(),
        "ping must fail while Redis is down"
    );
    redis.start_again().await?;

    // Resync comes once the subscriber connection is back and subscribed again.
    let deadline = Duration::from_secs(20);
    assert_eq!(
        next_event(&mut events, deadline).await?,
        BrokerEvent::Resync
    );

    // Notifications are queued and sent in the background; one sent while the command
    // connection is still reconnecting is lost (and owes another resync). Notify until one
    // arrives.
    let started = Instant::now();
    loop {
        if started.elapsed() > deadline {
            bail!("no notification arrived within {deadline:?} after the restart");
        }
        broker.notify(&client, MessageId(2)).await?;
        match next_event(&mut events, Duration::from_secs(1)).await {
            Ok(BrokerEvent::Resync) | Err(_) => continue,
            Ok(event) => {
                assert_eq!(
                    event,
                    BrokerEvent::Notify {
                        client,
                        last: MessageId(2),
                        message: None,
                    }
                );
                break;
            }
        }
    }
    Ok(())
}

#[async_std::test]
async fn malformed_payloads_are_dropped() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    let broker = RedisBroker::connect(
        RedisBrokerConfig::from_url(&redis.url())?,
        NodeId::new("node-m")?,
        runtime(),
    )
    .await?;
    let mut events = broker.events();
    let client = ClientId::new(&format!("{}c", run_id("malformed")))?;
    broker.subscribe(&client).await?;

    let raw = redis::Client::open(redis.url())?;
    let mut raw = raw.get_multiplexed_async_connection().await?;
    let c = client.as_str();
    for (channel, payload) in [
        (format!("herald:n:{{{c}}}"), "not-a-number"),
        (format!("herald:s:{{{c}}}"), "3:4"),
        (format!("herald:s:{{{c}}}"), "99:4:node-x"),
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut raw)
            .await?;
    }
    broker.notify(&client, MessageId(7)).await?;
    // Redis delivers in the order it ran the publishes: a malformed one let through would come first.
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5)).await?,
        BrokerEvent::Notify {
            client,
            last: MessageId(7),
            message: None,
        }
    );
    Ok(())
}

/// `notify_messages` for `n` clients from node `b`, received by node `a` subscribed to them
/// all; returns how many reads the Redis server processed meanwhile (`INFO stats`), when
/// `info` reaches it.
async fn notify_many(url: &str, name: &str, n: usize, info: Option<&str>) -> anyhow::Result<u64> {
    let nodes = connect_nodes(url, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut events = a.events();
    let run = run_id(name);
    let clients: Vec<ClientId> = (0..n)
        .map(|i| ClientId::new(&format!("{run}{i}")))
        .collect::<Result<_, _>>()?;
    for c in &clients {
        a.subscribe(c).await?;
    }
    let notes: Vec<(ClientId, herald_core::Message)> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let message = herald_core::Message {
                id: MessageId(i as u64 + 1),
                from: "t".into(),
                channel: vec!["x".into()],
                data: herald_core::Payload::from_json(&format!(r#"{{"i":{i}}}"#)).unwrap(),
                ts: now_ms(),
                push: None,
            };
            (c.clone(), message)
        })
        .collect();
    let reads = |info: Option<String>| -> anyhow::Result<u64> {
        let Some(info) = info else { return Ok(0) };
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix("total_reads_processed:"))
            .context("INFO stats has total_reads_processed")?;
        Ok(line.trim().parse()?)
    };
    let mut raw = match info {
        Some(url) => Some(
            redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?,
        ),
        None => None,
    };
    let stats = |raw: &mut Option<redis::aio::MultiplexedConnection>| {
        let raw = raw.clone();
        async move {
            match raw {
                Some(mut raw) => Ok::<_, anyhow::Error>(Some(
                    redis::cmd("INFO")
                        .arg("stats")
                        .query_async::<String>(&mut raw)
                        .await?,
                )),
                None => Ok(None),
            }
        }
    };
    let before = reads(stats(&mut raw).await?)?;
    b.notify_messages(&notes).await?;
    let mut got = std::collections::HashMap::new();
    while got.len() < n {
        match next_event(&mut events, Duration::from_secs(10)).await? {
            BrokerEvent::Notify {
                client,
                last,
                message,
            } => {
                assert_eq!(message.map(|m| m.id), Some(last), "carried");
                assert!(got.insert(client, last).is_none(), "one per client");
            }
            other => bail!("unexpected {other:?}"),
        }
    }
    // Read once every notification arrived: they are sent in the background.
    let after = reads(stats(&mut raw).await?)?;
    for (c, m) in &notes {
        assert_eq!(got.get(c), Some(&m.id), "{c}");
    }
    Ok(after - before)
}

#[async_std::test]
async fn a_push_notifies_its_recipients_in_one_pipeline() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    let reads = notify_many(&redis.url(), "pipe", 300, Some(&redis.url())).await?;
    // One by one, 300 notifications are 300 reads (and the INFO itself one).
    assert!(
        reads <= 10,
        "300 notifications took {reads} reads on the server"
    );
    Ok(())
}

#[async_std::test]
async fn a_push_notifies_its_recipients_across_a_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    notify_many(&cluster.url(), "pipec", 200, None).await?;
    Ok(())
}

#[async_std::test]
async fn contract_sentinel() -> anyhow::Result<()> {
    let set = RedisSentinel::start()?;
    run_suite(set.url(), "sentinel").await
}

/// Node `from` notifies `client` until node `to` hears it (a notification sent while Redis is
/// away is lost and owes a resync, which is skipped here), within `limit`.
async fn notify_until_heard(
    from: &RedisBroker,
    to: &mut BrokerEvents,
    client: &ClientId,
    last: MessageId,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        from.notify(client, last).await?;
        match next_event(to, Duration::from_secs(1)).await {
            Ok(BrokerEvent::Notify {
                client: c, last: l, ..
            }) if &c == client && l == last => {
                return Ok(());
            }
            _ => continue,
        }
    }
    bail!("{client} did not hear {last:?} within {limit:?}")
}

fn sentinel_config(url: &str) -> anyhow::Result<RedisBrokerConfig> {
    Ok(RedisBrokerConfig::from_url(url)?
        .with_connection_timeout(Duration::from_secs(1))
        .with_response_timeout(Duration::from_secs(1))
        .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500)))
}

/// Nodes a and b on `config`; a subscribed to a fresh client and hearing b's notifications.
async fn two_nodes(
    config: &RedisBrokerConfig,
    name: &str,
) -> anyhow::Result<(RedisBroker, RedisBroker, BrokerEvents, ClientId)> {
    let a = RedisBroker::connect(config.clone(), NodeId::new("node-a")?, runtime()).await?;
    let b = RedisBroker::connect(config.clone(), NodeId::new("node-b")?, runtime()).await?;
    let mut events = a.events();
    let client = ClientId::new(&format!("{}c", run_id(name)))?;
    a.subscribe(&client).await?;
    notify_until_heard(&b, &mut events, &client, MessageId(1), WAIT).await?;
    Ok((a, b, events, client))
}

#[async_std::test]
async fn a_sentinel_failover_is_followed_and_the_old_master_returns_as_a_replica()
-> anyhow::Result<()> {
    let mut set = RedisSentinel::start()?;
    let (a, b, mut events, client) = two_nodes(&sentinel_config(&set.url())?, "failover").await?;

    let old = set.master_port()?;
    set.kill(old)?;
    let new = set.until_master_moves(old, Duration::from_secs(60))?;
    assert_ne!(new, old);
    // Both nodes follow the new master: a subscribes there again (and resyncs), b publishes
    // there.
    let limit = Duration::from_secs(30);
    let started = Instant::now();
    loop {
        match next_event(&mut events, limit).await? {
            BrokerEvent::Resync => break,
            other => assert!(started.elapsed() < limit, "before the resync: {other:?}"),
        }
    }
    notify_until_heard(&b, &mut events, &client, MessageId(2), limit).await?;
    for node in [&a, &b] {
        let r = node.stats().report();
        assert!(r.failovers >= 1, "{r:?}");
        assert_eq!(r.down_for, None, "{r:?}");
    }
    // Claims are taken on the new master and announced to the subscribers.
    let slot = herald_core::ids::Slot::new(0)?;
    let generation = b.claim(&client, slot, &NodeId::new("node-b")?).await?;
    loop {
        match next_event(&mut events, WAIT).await? {
            BrokerEvent::Claim { generation: g, .. } if g == generation => break,
            _ => continue,
        }
    }

    // The old master comes back empty; Sentinel makes it a replica of the new one, and the
    // brokers stay with the new master.
    set.restart(old)?;
    set.until_replica(old, Duration::from_secs(60))?;
    notify_until_heard(&b, &mut events, &client, MessageId(3), limit).await?;
    assert_eq!(set.master_port()?, new);
    Ok(())
}

#[async_std::test]
async fn a_paused_redis_fills_the_bound_drops_are_counted_and_delivery_resumes()
-> anyhow::Result<()> {
    let set = RedisSentinel::start()?;
    let (max, max_bytes) = (50, 1 << 20);
    let config = |url: &str| -> anyhow::Result<RedisBrokerConfig> {
        Ok(sentinel_config(url)?
            .with_response_timeout(Duration::from_secs(30))
            .with_max_pending(max, max_bytes))
    };
    let (_a, b, mut events, client) = two_nodes(&config(&set.url())?, "paused").await?;

    let master = set.master_port()?;
    set.signal(master, "STOP")?;
    // Longer than the bound takes to fill: every notification past it is refused at once.
    let mut refused = 0;
    for i in 0..(3 * max as u64) {
        if b.notify(&client, MessageId(100 + i)).await.is_err() {
            refused += 1;
        }
    }
    let r = b.stats().report();
    assert!(r.pending as usize <= max, "{r:?}");
    assert!(refused >= 2 * max as u64 - 1, "{refused} refused: {r:?}");
    assert_eq!(r.dropped, refused, "each refused notification is counted");
    set.signal(master, "CONT")?;

    // Redis answers again: the queue drains, a resync covers what was dropped, and new
    // notifications arrive.
    let mut resynced = false;
    let started = Instant::now();
    while !resynced {
        match next_event(&mut events, WAIT).await? {
            BrokerEvent::Resync => resynced = true,
            other => assert!(started.elapsed() < WAIT, "{other:?}"),
        }
    }
    notify_until_heard(&b, &mut events, &client, MessageId(1000), WAIT).await?;
    // The last notification's answer may be counted a moment after it was heard.
    let settled = herald_it::poll_until(WAIT, async || {
        let r = b.stats().report();
        (r.pending, r.down_for) == (0, None)
    });
    assert!(settled.await, "{:?}", b.stats().report());
    Ok(())
}

#[async_std::test]
async fn a_manual_sentinel_failover_is_followed() -> anyhow::Result<()> {
    let set = RedisSentinel::start()?;
    let (a, b, mut events, client) = two_nodes(&sentinel_config(&set.url())?, "manual").await?;

    // Both servers keep running: the nodes learn of it from Sentinel (+switch-master) or
    // from the demoted master refusing writes, not from a lost connection alone.
    let old = set.master_port()?;
    set.failover()?;
    set.until_master_moves(old, Duration::from_secs(60))?;
    set.until_replica(old, Duration::from_secs(60))?;
    notify_until_heard(
        &b,
        &mut events,
        &client,
        MessageId(2),
        Duration::from_secs(30),
    )
    .await?;
    let followed = herald_it::poll_until(WAIT, async || {
        a.stats().report().failovers > 0 && b.stats().report().failovers > 0
    });
    assert!(followed.await, "a node did not follow the master");
    // The claim script writes: it must run on the new master.
    let slot = herald_core::ids::Slot::new(0)?;
    b.claim(&client, slot, &NodeId::new("node-b")?).await?;
    Ok(())
}

// ---- Issue 14: the broker's part of a recall (`notify_recall`) ----

#[async_std::test]
async fn recalls_reach_the_subscribed_nodes() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    let url = redis.url();
    let cfg = ContractConfig::new(&run_id("recall"), now_ms())?;
    herald_core::contract_receipts::receipts_broker_suite(
        &cfg,
        |n| {
            let url = url.clone();
            async move { connect_nodes(&url, n).await }
        },
        async_std::task::sleep,
    )
    .await;
    Ok(())
}
