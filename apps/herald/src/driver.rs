//! The engine's driver: one [`Hub`] per core, each owned by one task, clients assigned by a
//! hash of their id. A shard task waits for its next input or timer, feeds the Hub, then
//! carries out every output: deliveries are enqueued on the client's socket (never blocking),
//! wake-ups go to waiting watchers, store and broker calls run as their own tasks whose results
//! come back as inputs. Broker events are routed to the shard of their client.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_std::channel::{Receiver, Sender, unbounded};
use futures::{FutureExt, StreamExt};
use herald_core::{
    Broker, BrokerEvent, ClientId, ConnId, Hub, HubConfig, HubStats, Input, MessageStore, NodeId,
    Output, StoreOp, WatchId,
};
use herald_socketio::Socket;
use serde_json::json;

use crate::api::unix_ms;
use crate::config::Config;
use crate::metrics::{Metrics, ShardStats};
use crate::shutdown::Inflight;
use crate::watch::Watch;

/// What a shard task receives.
pub(crate) enum ShardMsg {
    /// A client authenticated: remember its socket and start its session.
    Connect {
        conn: ConnId,
        socket: Socket,
        identity: herald_core::Identity,
    },
    /// A `GET /watch` waits for `client`'s queue: remember how to wake it and start watching.
    Watch {
        watch: WatchId,
        client: ClientId,
        waker: Sender<()>,
    },
    /// Anything else for the Hub.
    Hub(Input),
}

/// Where a shard's outputs go: the sockets of its sessions and the wakers of its watchers.
#[derive(Default)]
struct Outlets {
    sockets: HashMap<ConnId, Socket>,
    wakers: HashMap<WatchId, Sender<()>>,
}

/// Everything the node's tasks share.
pub struct Node<S, B> {
    /// The queues.
    pub store: Arc<S>,
    /// The broker (subscriptions are the engine's: see [`Node::watch`]).
    pub broker: Arc<B>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Store writes under way.
    pub inflight: Arc<Inflight>,
    shards: Vec<Sender<ShardMsg>>,
    /// Each shard's engine counters.
    stats: Vec<ShardStats>,
    pub(crate) next_conn: AtomicU64,
    next_watch: AtomicU64,
    /// Webhooks: [`crate::webhook::Webhooks::record`] puts facts in the outbox.
    pub webhooks: Arc<crate::webhook::Webhooks>,
}

impl<S: MessageStore, B: Broker> Node<S, B> {
    pub(crate) fn shard_of(&self, client: &ClientId) -> &Sender<ShardMsg> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        client.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }

    /// Starts watching `client`'s queue: its shard's Hub holds the client's subscription and
    /// wakes the watch whenever the queue may have grown, until the watch is dropped.
    pub fn watch(&self, client: &ClientId) -> Watch {
        let watch = WatchId(self.next_watch.fetch_add(1, Relaxed));
        let shard = self.shard_of(client).clone();
        let (waker, woken) = async_std::channel::bounded(1);
        let _ = shard.try_send(ShardMsg::Watch {
            watch,
            client: client.clone(),
            waker,
        });
        Watch::new(woken, move || {
            let _ = shard.try_send(ShardMsg::Hub(Input::Unwatch { watch }));
        })
    }

    /// The engine's counters summed over the shards.
    pub fn engine_counts(&self) -> HubStats {
        ShardStats::total(&self.stats)
    }
}

/// Starts the engine's shard tasks and the broker event router.
pub fn start_engine<S: MessageStore, B: Broker>(
    config: &Config,
    node_id: &NodeId,
    store: Arc<S>,
    broker: Arc<B>,
    metrics: Arc<Metrics>,
) -> Arc<Node<S, B>> {
    let shards = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16);
    let mut senders = Vec::with_capacity(shards);
    let mut receivers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = unbounded();
        senders.push(tx);
        receivers.push(rx);
    }
    let events = broker.events();
    let webhooks = Arc::new(crate::webhook::Webhooks::new(
        config.webhook.clone(),
        metrics.clone(),
    ));
    let node = Arc::new(Node {
        store,
        broker,
        metrics,
        inflight: Arc::new(Inflight::default()),
        shards: senders,
        stats: (0..shards).map(|_| ShardStats::default()).collect(),
        next_conn: AtomicU64::new(1),
        next_watch: AtomicU64::new(1),
        webhooks,
    });
    for (i, rx) in receivers.into_iter().enumerate() {
        let mut cfg = HubConfig::new(node_id.clone());
        cfg.window = config.window;
        let hub = Hub::new(cfg);
        let node = node.clone();
        let me = node.shards[i].clone();
        async_std::task::spawn(run_shard(i, hub, rx, me, node));
    }
    let router = node.clone();
    async_std::task::spawn(async move {
        let mut events = events;
        while let Some(event) = events.next().await {
            match &event {
                BrokerEvent::Notify { client, .. }
                | BrokerEvent::Claim { client, .. }
                | BrokerEvent::Recall { client, .. } => {
                    let _ = router
                        .shard_of(client)
                        .try_send(ShardMsg::Hub(Input::Broker(event.clone())));
                }
                BrokerEvent::Resync => {
                    for s in &router.shards {
                        let _ = s.try_send(ShardMsg::Hub(Input::Broker(BrokerEvent::Resync)));
                    }
                }
            }
        }
        log::warn!("broker event stream ended");
    });
    node
}

async fn run_shard<S: MessageStore, B: Broker>(
    index: usize,
    mut hub: Hub,
    rx: Receiver<ShardMsg>,
    me: Sender<ShardMsg>,
    node: Arc<Node<S, B>>,
) {
    let mut outlets = Outlets::default();
    loop {
        // A message already waiting is taken without arming a timer for the Hub's next
        // deadline (one timer registration per turn otherwise).
        let next = match (rx.try_recv(), hub.poll_timeout()) {
            (Ok(msg), _) => Ok(Ok(msg)),
            (Err(async_std::channel::TryRecvError::Closed), _) => return,
            (Err(_), Some(at)) => {
                let wait = at.saturating_duration_since(Instant::now());
                async_std::future::timeout(wait, rx.recv()).await
            }
            (Err(_), None) => Ok(rx.recv().await),
        };
        match next {
            Ok(Ok(msg)) => {
                feed(&mut hub, &mut outlets, msg);
                // Take whatever else is waiting before carrying out outputs (batching).
                for _ in 0..1024 {
                    match rx.try_recv() {
                        Ok(msg) => feed(&mut hub, &mut outlets, msg),
                        Err(_) => break,
                    }
                }
            }
            Ok(Err(_)) => return,
            Err(_) => hub.handle_timeout(Instant::now()),
        }
        // Deadlines due while inputs kept coming (a busy shard never waits for them).
        let now = Instant::now();
        if hub.poll_timeout().is_some_and(|at| at <= now) {
            hub.handle_timeout(now);
        }
        while let Some(out) = hub.poll_output() {
            carry_out(out, &mut hub, &mut outlets, &me, &node);
        }
        node.stats[index].publish(hub.stats());
    }
}

fn feed(hub: &mut Hub, outlets: &mut Outlets, msg: ShardMsg) {
    let now = Instant::now();
    match msg {
        ShardMsg::Connect {
            conn,
            socket,
            identity,
        } => {
            outlets.sockets.insert(conn, socket);
            hub.handle(now, Input::Connect { conn, identity });
        }
        ShardMsg::Watch {
            watch,
            client,
            waker,
        } => {
            outlets.wakers.insert(watch, waker);
            hub.handle(now, Input::Watch { watch, client });
        }
        ShardMsg::Hub(input) => {
            match &input {
                Input::Disconnect { conn } => drop(outlets.sockets.remove(conn)),
                Input::Unwatch { watch } => drop(outlets.wakers.remove(watch)),
                _ => {}
            }
            hub.handle(now, input);
        }
    }
}

fn carry_out<S: MessageStore, B: Broker>(
    out: Output,
    hub: &mut Hub,
    outlets: &mut Outlets,
    me: &Sender<ShardMsg>,
    node: &Arc<Node<S, B>>,
) {
    match out {
        Output::Deliver {
            conn,
            ack,
            messages,
        } => {
            let Some(socket) = outlets.sockets.get(&conn) else {
                return;
            };
            let batch = match serde_json::to_string(&messages) {
                Ok(b) => b,
                Err(e) => {
                    log::error!("cannot serialize a batch: {e}");
                    return;
                }
            };
            if let Err(e) = socket.emit_json("message", &format!("[{batch}]"), ack.map(|a| a.0)) {
                log::info!("delivery to {conn} failed ({e}): ending its session");
                outlets.sockets.remove(&conn);
                hub.handle(Instant::now(), Input::Disconnect { conn });
            }
        }
        Output::Kick { conn, reason } => {
            if let Some(socket) = outlets.sockets.remove(&conn) {
                let _ = socket.emit("kicked", &[json!({ "reason": reason.as_str() })], None);
                socket.disconnect(true);
            }
        }
        Output::Close { conn, reason } => {
            log::info!("closing {conn}: {reason}");
            if let Some(socket) = outlets.sockets.remove(&conn) {
                socket.disconnect(true);
            }
        }
        Output::Wake { watch } => {
            if let Some(waker) = outlets.wakers.get(&watch) {
                // A full channel already holds a wake-up: nothing is lost.
                let _ = waker.try_send(());
            }
        }
        Output::Store { req, op } => {
            let node = node.clone();
            let mut call = Box::pin(async move {
                let _guard = node.inflight.enter();
                let now = unix_ms();
                // Receipts become webhook events once recorded (none when webhooks are off).
                let events = match &op {
                    StoreOp::Receipts { receipts } => node.webhooks.receipt_events(receipts, now),
                    _ => Vec::new(),
                };
                let result = op.run(&*node.store, now).await;
                if result.is_ok()
                    && !events.is_empty()
                    && let Err(e) = node.webhooks.record(&*node.store, &events).await
                {
                    log::warn!("{} webhook events not recorded: {e}", events.len());
                }
                result
            });
            // A store that answers at once (the embedded store's acknowledgements) is
            // answered here: no task, no trip through the shard's channel.
            if let Some(result) = call.as_mut().now_or_never() {
                hub.handle(Instant::now(), Input::StoreDone { req, result });
                return;
            }
            let me = me.clone();
            async_std::task::spawn(async move {
                let result = call.await;
                let _ = me
                    .send(ShardMsg::Hub(Input::StoreDone { req, result }))
                    .await;
            });
        }
        Output::Broker { req, op } => {
            let node = node.clone();
            let me = me.clone();
            async_std::task::spawn(async move {
                let result = op.run(&*node.broker, unix_ms()).await;
                let _ = me
                    .send(ShardMsg::Hub(Input::BrokerDone { req, result }))
                    .await;
            });
        }
    }
}

/// How often retention runs by default (`retention.purge_every_secs`).
pub const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Runs retention every `every`, counting what it drops.
pub async fn retention<S: MessageStore>(store: Arc<S>, metrics: Arc<Metrics>, every: Duration) {
    loop {
        async_std::task::sleep(every).await;
        match store.purge(unix_ms()).await {
            Ok(r) => {
                metrics.retention_expired.fetch_add(r.expired, Relaxed);
                metrics.retention_capped.fetch_add(r.capped, Relaxed);
                if r.expired + r.capped > 0 {
                    log::info!(
                        "retention dropped {} expired and {} over the cap",
                        r.expired,
                        r.capped
                    );
                }
            }
            Err(e) => log::warn!("retention pass failed: {e}"),
        }
    }
}
