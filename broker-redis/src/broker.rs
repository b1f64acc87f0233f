//! The broker: one command connection and one subscriber connection (a link, replaced whole
//! when Sentinel moves the master); a pump task that turns the subscriber's pushes into events
//! and reconnects; a publisher task that sends the bounded queue of notifications in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use herald_core::Message;
use herald_core::PushId;
use herald_core::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use herald_core::ports::{Broker, BrokerError, BrokerEvent, BrokerEvents, OnlineSession};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot as HashSlot;
use redis::{ProtocolVersion, PushInfo, PushKind, RedisResult, Value};

use crate::config::{RedisBrokerConfig, Topology};
use crate::error::{RedisBrokerError, unavailable};
use crate::stats::{BrokerStats, Part};
use crate::{keys, registry, sentinel};
use herald_core::Runtime;

mod link;
mod queue;
mod tasks;

pub(crate) use link::{Conn, with_resp3};
use link::{Link, open_link};
use queue::Queue;
use tasks::{Signal, publisher, pump};

/// INCR the generation and announce the claim in one step, so that a generation is never
/// taken without being announced. The channel shares the key's hash tag (same cluster slot).
const CLAIM_SCRIPT: &str = r"
local generation = redis.call('INCR', KEYS[1])
redis.call(ARGV[1], ARGV[2], ARGV[3] .. ':' .. generation .. ':' .. ARGV[4])
return generation
";

/// What the broker handle and its tasks share.
struct Inner {
    /// The connections in use.
    link: Mutex<Arc<Link>>,
    /// Where to connect, timeouts, backoff, bounds.
    config: RedisBrokerConfig,
    /// The clients this node subscribed to, to subscribe again after a reconnection.
    clients: Mutex<HashSet<ClientId>>,
    /// Counters and the outage clock.
    stats: Arc<BrokerStats>,
    /// Where every link's subscriber pushes go, tagged with the link's generation.
    pushes: UnboundedSender<(u64, PushInfo)>,
    /// Asks the pump to look for the master again (Sentinel).
    recheck: UnboundedSender<()>,
    /// A look asked for by a failed command is queued and not yet begun.
    recheck_queued: AtomicBool,
    /// Events for the engine.
    events: UnboundedSender<BrokerEvent>,
    /// Notifications waiting for Redis, bounded.
    queue: Mutex<Queue>,
    /// Wakes the publisher after a notification was queued (or dropped).
    wake: UnboundedSender<()>,
    /// Notifications were dropped or lost: a resync is owed once Redis answers again.
    owed_resync: AtomicBool,
    /// The generation of the next link.
    next_generation: AtomicU64,
}

impl Inner {
    fn clients(&self) -> Vec<ClientId> {
        lock(&self.clients).iter().cloned().collect()
    }

    /// [`Inner::failed`], giving the error for the caller.
    fn failed_with(&self, e: redis::RedisError) -> BrokerError {
        self.failed();
        unavailable(e)
    }

    fn link(&self) -> Arc<Link> {
        lock(&self.link).clone()
    }

    fn timeouts(&self) -> (Duration, Duration) {
        (self.config.connection_timeout, self.config.response_timeout)
    }

    /// After a failed command: with Sentinel, the master may have moved. One look is queued
    /// at a time, however many commands fail meanwhile (each look may wait for unreachable
    /// sentinels; a queue of them would hold the pump back).
    fn failed(&self) {
        if matches!(self.config.topology, Topology::Sentinel(_))
            && !self.recheck_queued.swap(true, Relaxed)
        {
            let _ = self.recheck.unbounded_send(());
        }
    }

    /// Queues notifications for the publisher, dropping (and counting) those past the bound.
    fn enqueue(&self, notes: Vec<(String, String)>) -> Result<(), BrokerError> {
        let (max, max_bytes) = (self.config.max_pending, self.config.max_pending_bytes);
        let (dropped, count, bytes) = {
            let mut q = lock(&self.queue);
            let dropped = q.push(notes, max, max_bytes);
            self.show(&q);
            (dropped, q.count, q.bytes)
        };
        let _ = self.wake.unbounded_send(());
        if dropped == 0 {
            return Ok(());
        }
        self.stats.dropped.fetch_add(dropped as u64, Relaxed);
        self.owed_resync.store(true, Relaxed);
        Err(BrokerError::Unavailable(format!(
            "{dropped} notification(s) dropped: {count} ({bytes} bytes) already wait for Redis \
             (bounds {max} and {max_bytes} bytes); the store has the messages, a resync \
             delivers them"
        )))
    }

    /// Counts a sent batch out of the bound.
    fn release(&self, batch: &[(String, String)]) {
        let mut q = lock(&self.queue);
        q.release(batch);
        self.show(&q);
    }

    /// Publishes the queue's size for metrics.
    fn show(&self, q: &Queue) {
        self.stats.pending.store(q.count as u64, Relaxed);
        self.stats.pending_bytes.store(q.bytes as u64, Relaxed);
    }
}

/// Locks a mutex whose data stays consistent across a panic (plain sets and counters).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A [`Broker`] over Redis for one node. See the crate documentation for the keys and
/// channels.
pub struct RedisBroker {
    /// Shared with the background tasks (which hold it weakly, so dropping the broker stops
    /// them).
    inner: Arc<Inner>,
    /// The event stream, until [`Broker::events`] takes it.
    events: Mutex<Option<UnboundedReceiver<BrokerEvent>>>,
    /// The node this handle belongs to (for logs).
    node: NodeId,
}

impl RedisBroker {
    /// Connects to Redis (both connections; with Sentinel, to the master it names) and starts
    /// the background tasks on `runtime`: the pump turning subscriber pushes into events, the
    /// publisher sending queued notifications, and with Sentinel the `+switch-master` watcher.
    ///
    /// # Errors
    /// When Redis (or, with Sentinel, a master) cannot be reached within the connection
    /// timeout.
    pub async fn connect(
        config: RedisBrokerConfig,
        node: NodeId,
        runtime: Arc<dyn Runtime>,
    ) -> Result<RedisBroker, RedisBrokerError> {
        let (push_tx, push_rx) = unbounded::<(u64, PushInfo)>();
        let (recheck_tx, recheck_rx) = unbounded::<()>();
        let (wake_tx, wake_rx) = unbounded::<()>();
        let (events_tx, events_rx) = unbounded();
        let link = open_link(&config, 0, &push_tx, &runtime).await?;
        link.subscriber
            .subscribe(vec![keys::RESYNC_CHANNEL.to_string()])
            .await?;
        let inner = Arc::new(Inner {
            link: Mutex::new(Arc::new(link)),
            config: config.clone(),
            clients: Mutex::new(HashSet::new()),
            stats: Arc::new(BrokerStats::default()),
            pushes: push_tx,
            recheck: recheck_tx.clone(),
            recheck_queued: AtomicBool::new(false),
            events: events_tx,
            queue: Mutex::new(Queue::default()),
            wake: wake_tx,
            owed_resync: AtomicBool::new(false),
            next_generation: AtomicU64::new(1),
        });
        let signals = futures::stream::select(
            push_rx
                .map(|(g, p)| Signal::Push(g, p))
                .chain(futures::stream::iter([Signal::End])),
            recheck_rx.map(|()| Signal::Recheck),
        );
        runtime.spawn(Box::pin(pump(
            signals,
            Arc::downgrade(&inner),
            runtime.clone(),
            node.clone(),
        )));
        runtime.spawn(Box::pin(publisher(
            wake_rx,
            Arc::downgrade(&inner),
            runtime.clone(),
            node.clone(),
        )));
        if let Topology::Sentinel(topology) = &config.topology {
            runtime.spawn(Box::pin(sentinel::watch(
                topology.clone(),
                (config.connection_timeout, config.response_timeout),
                (config.reconnect_min, config.reconnect_max),
                recheck_tx,
                runtime.clone(),
            )));
        }
        // The client view's liveness of this node (registry.rs).
        let weak = Arc::downgrade(&inner);
        let commands = move || weak.upgrade().map(|i| i.link().commands.clone());
        registry::start_liveness(commands, &node, config.node_ttl, &runtime).await;
        log::info!(
            "node {node}: redis broker connected ({:?})",
            config.topology
        );
        Ok(RedisBroker {
            inner,
            events: Mutex::new(Some(events_rx)),
            node,
        })
    }

    /// The broker's counters and outage clock, for metrics and health checks.
    pub fn stats(&self) -> Arc<BrokerStats> {
        self.inner.stats.clone()
    }
}

/// The channels of one client.
fn channels(client: &ClientId) -> Vec<String> {
    vec![keys::notify_channel(client), keys::claim_channel(client)]
}

impl Broker for RedisBroker {
    async fn subscribe(&self, client: &ClientId) -> Result<(), BrokerError> {
        // Recorded before the link is read: a failover that swaps the link meanwhile
        // subscribes this client on the new one.
        let added = lock(&self.inner.clients).insert(client.clone());
        let result = self
            .inner
            .link()
            .subscriber
            .subscribe(channels(client))
            .await;
        if let Err(e) = result {
            if added {
                lock(&self.inner.clients).remove(client);
            }
            self.inner.failed();
            return Err(unavailable(e));
        }
        Ok(())
    }

    async fn unsubscribe(&self, client: &ClientId) -> Result<(), BrokerError> {
        let known = lock(&self.inner.clients).remove(client);
        if known {
            let link = self.inner.link();
            if let Err(e) = link.subscriber.unsubscribe(channels(client)).await {
                self.inner.failed();
                return Err(unavailable(e));
            }
        }
        Ok(())
    }

    async fn notify(&self, client: &ClientId, last: MessageId) -> Result<(), BrokerError> {
        self.inner
            .enqueue(vec![(keys::notify_channel(client), last.0.to_string())])
    }

    async fn notify_message(
        &self,
        client: &ClientId,
        message: &Message,
    ) -> Result<(), BrokerError> {
        let payload = keys::notify_payload(message).unwrap_or_else(|| message.id.0.to_string());
        self.inner
            .enqueue(vec![(keys::notify_channel(client), payload)])
    }

    async fn notify_messages(&self, notes: &[(ClientId, Message)]) -> Result<(), BrokerError> {
        let notes = notes
            .iter()
            .map(|(client, message)| {
                let payload =
                    keys::notify_payload(message).unwrap_or_else(|| message.id.0.to_string());
                (keys::notify_channel(client), payload)
            })
            .collect();
        self.inner.enqueue(notes)
    }

    async fn claim(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
    ) -> Result<Generation, BrokerError> {
        let link = self.inner.link();
        let commands = &link.commands;
        // EVAL with the script text: short, and no script cache to lose on a restart.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM_SCRIPT)
            .arg(1)
            .arg(keys::generation_key(client, slot))
            .arg(commands.publish_command())
            .arg(keys::claim_channel(client))
            .arg(slot.get())
            .arg(node.as_str());
        match commands.query::<u64>(&cmd).await {
            Ok(generation) => Ok(Generation(generation)),
            Err(e) => {
                self.inner.failed();
                Err(unavailable(e))
            }
        }
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let link = self.inner.link();
        if let Err(e) = link.commands.query::<String>(&redis::cmd("PING")).await {
            self.inner.failed();
            return Err(unavailable(e));
        }
        Ok(())
    }

    fn events(&self) -> BrokerEvents {
        match lock(&self.events).take() {
            Some(rx) => rx.boxed(),
            None => {
                log::warn!("node {}: broker events were already taken", self.node);
                futures::stream::empty().boxed()
            }
        }
    }

    async fn notify_recall(&self, push: PushId, clients: &[ClientId]) -> Result<(), BrokerError> {
        let notes = clients
            .iter()
            .map(|client| (keys::notify_channel(client), keys::recall_payload(push)))
            .collect();
        self.inner.enqueue(notes)
    }

    // The client view's registry of sessions online: registry.rs.

    async fn claim_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        now_ms: u64,
    ) -> Result<Generation, BrokerError> {
        let link = self.inner.link();
        let taken = registry::claim(&link.commands, client, slot, node, now_ms).await;
        taken.map(Generation).map_err(|e| self.inner.failed_with(e))
    }

    async fn end_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        generation: Generation,
    ) -> Result<(), BrokerError> {
        let link = self.inner.link();
        let ended = registry::end(&link.commands, client, slot, node, generation).await;
        ended.map_err(|e| self.inner.failed_with(e))
    }

    async fn sessions(&self, client: &ClientId) -> Result<Vec<OnlineSession>, BrokerError> {
        let link = self.inner.link();
        let online = registry::sessions(&link.commands, client).await;
        online.map_err(|e| self.inner.failed_with(e))
    }
}
