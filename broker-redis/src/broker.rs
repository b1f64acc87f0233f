//! The broker: one command connection and one subscriber connection (a link, replaced whole
//! when Sentinel moves the master); a pump task that turns the subscriber's pushes into events
//! and reconnects; a publisher task that sends the bounded queue of notifications in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use herald_core::Message;
use herald_core::PushId;
use herald_core::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use herald_core::ports::{Broker, BrokerError, BrokerEvent, BrokerEvents};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot as HashSlot;
use redis::{ProtocolVersion, PushInfo, PushKind, RedisResult, Value};

use crate::config::{RedisBrokerConfig, Topology};
use crate::error::{RedisBrokerError, unavailable};
use crate::runtime::Runtime;
use crate::stats::{BrokerStats, Part};
use crate::{keys, sentinel};

/// INCR the generation and announce the claim in one step, so that a generation is never
/// taken without being announced. The channel shares the key's hash tag (same cluster slot).
const CLAIM_SCRIPT: &str = r"
local generation = redis.call('INCR', KEYS[1])
redis.call(ARGV[1], ARGV[2], ARGV[3] .. ':' .. generation .. ':' .. ARGV[4])
return generation
";

/// A connection to a standalone server or to a cluster.
#[derive(Clone)]
enum Conn {
    /// Reconnects by itself on the next command after a drop.
    Single(ConnectionManager),
    /// Routes by key slot; reconnects per node.
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    async fn subscribe(&self, channels: Vec<String>) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => c.subscribe(channels).await,
            Conn::Cluster(mut c) => c.ssubscribe(channels).await,
        }
    }

    async fn unsubscribe(&self, channels: Vec<String>) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => c.unsubscribe(channels).await,
            Conn::Cluster(mut c) => c.sunsubscribe(channels).await,
        }
    }

    async fn pipeline(&self, pipe: &redis::Pipeline) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }

    /// `PUBLISH` for a server, `SPUBLISH` (sharded) for a cluster.
    fn publish_command(&self) -> &'static str {
        match self {
            Conn::Single(_) => "PUBLISH",
            Conn::Cluster(_) => "SPUBLISH",
        }
    }
}

/// The connections in use. A Sentinel failover replaces the whole link; standalone and
/// cluster connections reconnect by themselves and keep theirs.
struct Link {
    /// Commands: PUBLISH, the claim script, PING.
    commands: Conn,
    /// The one subscriber connection of this node (RESP3; pushes go to the pump).
    subscriber: Conn,
    /// Pushes of this link's subscriber carry this number; those of older links are ignored.
    generation: u64,
    /// The master's address (Sentinel), to tell a failover from a reconnection.
    master: Option<(String, u16)>,
}

/// Notifications waiting for Redis: queued, or in the batch being sent.
#[derive(Default)]
struct Queue {
    /// Queued `(channel, payload)`, oldest first.
    notes: VecDeque<(String, String)>,
    /// Queued and in flight, counted against `max_pending`.
    count: usize,
    /// Their channel and payload bytes, counted against `max_pending_bytes`.
    bytes: usize,
}

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

impl Queue {
    /// Queues what fits within `max` notifications and `max_bytes`; returns how many did not.
    fn push(&mut self, notes: Vec<(String, String)>, max: usize, max_bytes: usize) -> usize {
        let mut dropped = 0;
        for note in notes {
            let size = note.0.len() + note.1.len();
            if self.count + 1 > max || self.bytes + size > max_bytes {
                dropped += 1;
                continue;
            }
            self.count += 1;
            self.bytes += size;
            self.notes.push_back(note);
        }
        dropped
    }

    /// Takes the oldest queued notifications, about [`PIPELINE_BYTES`] (at least one); they
    /// still count against the bound until [`Queue::release`].
    fn take_batch(&mut self) -> Vec<(String, String)> {
        let mut batch = Vec::new();
        let mut used = 0;
        while let Some(front) = self.notes.front() {
            let size = front.0.len() + front.1.len();
            if !batch.is_empty() && used + size > PIPELINE_BYTES {
                break;
            }
            used += size;
            batch.extend(self.notes.pop_front());
        }
        batch
    }

    /// Counts a sent batch out of the bound.
    fn release(&mut self, batch: &[(String, String)]) {
        self.count -= batch.len();
        self.bytes -= batch.iter().map(|n| n.0.len() + n.1.len()).sum::<usize>();
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

/// Opens the connections of a link: to the server, the cluster, or the master Sentinel
/// names now. The subscriber's pushes go to `pushes` tagged with `generation`.
async fn open_link(
    config: &RedisBrokerConfig,
    generation: u64,
    pushes: &UnboundedSender<(u64, PushInfo)>,
    runtime: &Arc<dyn Runtime>,
) -> Result<Link, RedisBrokerError> {
    let (push_tx, mut push_rx) = unbounded::<PushInfo>();
    let forward = pushes.clone();
    runtime.spawn(Box::pin(async move {
        while let Some(push) = push_rx.next().await {
            if forward.unbounded_send((generation, push)).is_err() {
                return;
            }
        }
    }));
    let cluster_push = push_tx.clone();
    let single = |url: String| async move {
        let client = redis::Client::open(with_resp3(&url))?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(2);
        let commands = client
            .get_connection_manager_with_config(base.clone())
            .await?;
        let subscriber = client
            .get_connection_manager_with_config(
                base.set_push_sender(push_tx).set_automatic_resubscription(),
            )
            .await?;
        Result::<_, RedisBrokerError>::Ok((Conn::Single(commands), Conn::Single(subscriber)))
    };
    let (commands, subscriber, master) = match &config.topology {
        Topology::Standalone(url) => {
            let (c, s) = single(url.clone()).await?;
            (c, s, None)
        }
        Topology::Sentinel(topology) => {
            let timeouts = (config.connection_timeout, config.response_timeout);
            let (host, port) = sentinel::find_master(topology, timeouts)
                .await
                .map_err(RedisBrokerError::NoMaster)?;
            let (c, s) = single(topology.master_url(&host, port)).await?;
            (c, s, Some((host, port)))
        }
        Topology::Cluster(nodes) => {
            let builder = || {
                ClusterClientBuilder::new(nodes.clone())
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(config.connection_timeout)
                    .response_timeout(config.response_timeout)
            };
            let commands = builder().build()?.get_async_connection().await?;
            let subscriber = builder()
                .push_sender(cluster_push)
                .build()?
                .get_async_connection()
                .await?;
            (Conn::Cluster(commands), Conn::Cluster(subscriber), None)
        }
    };
    Ok(Link {
        commands,
        subscriber,
        generation,
        master,
    })
}

/// Publishes `(channel, payload)` pairs on `link` with as few round trips as Redis allows:
/// one pipeline on a server; on a cluster, where a pipeline must stay within one hash slot,
/// one pipeline per slot, all slots at once.
async fn publish_all(link: &Link, notes: &[(String, String)]) -> RedisResult<()> {
    let commands = &link.commands;
    let publish = commands.publish_command();
    let pipelines: Vec<redis::Pipeline> = match commands {
        Conn::Single(_) => vec![pipeline_of(publish, notes.iter())],
        Conn::Cluster(_) => {
            let mut by_slot: HashMap<HashSlot, Vec<&(String, String)>> = HashMap::new();
            for note in notes {
                by_slot
                    .entry(HashSlot::for_key(&note.0))
                    .or_default()
                    .push(note);
            }
            by_slot
                .into_values()
                .map(|notes| pipeline_of(publish, notes.into_iter()))
                .collect()
        }
    };
    let sent = futures::future::join_all(pipelines.iter().map(|p| commands.pipeline(p)));
    sent.await.into_iter().collect()
}

/// Most payload bytes in one notification pipeline: queued notifications are sent in
/// pipelines of about this size, one after the other, so that neither this node nor the
/// subscribers' output buffers in Redis (32 MB hard limit for pub/sub clients by default)
/// hold a large push at once.
pub(crate) const PIPELINE_BYTES: usize = 1 << 20;

/// One pipeline publishing every `(channel, payload)`; the replies (receiver counts) are
/// ignored.
fn pipeline_of<'a>(
    publish: &str,
    notes: impl Iterator<Item = &'a (String, String)>,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for (channel, payload) in notes {
        pipe.cmd(publish).arg(channel).arg(payload).ignore();
    }
    pipe
}

/// Asks for RESP3 (needed for pushes on a multiplexed connection) unless the URL says.
pub(crate) fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
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
}

/// What the pump reacts to.
enum Signal {
    /// A push of the subscriber connection of the link of this generation.
    Push(u64, PushInfo),
    /// The master may have moved (Sentinel): look again.
    Recheck,
    /// Every link is gone: the broker was dropped.
    End,
}

/// Turns pushes of the subscriber connection into events, and reconnects (following the
/// master with Sentinel), until the broker is dropped.
async fn pump(
    mut signals: impl futures::Stream<Item = Signal> + Unpin,
    inner: Weak<Inner>,
    runtime: Arc<dyn Runtime>,
    node: NodeId,
) {
    while let Some(signal) = signals.next().await {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let current = strong.link();
        match signal {
            Signal::End => return,
            Signal::Push(generation, _) if generation != current.generation => {}
            Signal::Push(_, push) => match push.kind {
                PushKind::Message | PushKind::SMessage => match message(&push.data) {
                    Ok(event) => {
                        // A closed receiver only means nobody listens (any more).
                        let _ = strong.events.unbounded_send(event);
                    }
                    Err(why) => {
                        log::warn!("node {node}: dropped a malformed broker message: {why}");
                    }
                },
                PushKind::Disconnection => {
                    log::warn!("node {node}: redis subscriber connection lost; reconnecting");
                    strong
                        .stats
                        .down(Part::Subscriber, "the subscriber connection was lost");
                    drop((strong, current));
                    if !recover(&inner, &runtime, &node).await {
                        return;
                    }
                }
                _ => {}
            },
            Signal::Recheck => {
                let Topology::Sentinel(topology) = &strong.config.topology else {
                    continue;
                };
                strong.recheck_queued.store(false, Relaxed);
                let found = sentinel::find_master(topology, strong.timeouts()).await;
                let moved = match &found {
                    Ok(addr) => current.master.as_ref() != Some(addr),
                    Err(why) => {
                        log::debug!("node {node}: sentinel recheck: {why}");
                        false
                    }
                };
                if moved {
                    log::warn!("node {node}: the master moved ({found:?}); following it");
                    strong
                        .stats
                        .down(Part::Subscriber, "the master moved (Sentinel failover)");
                    drop((strong, current));
                    if !recover(&inner, &runtime, &node).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Gets the subscriber back: with Sentinel first to the master it names now (a new link when
/// it moved), then subscribes every channel again, retrying with backoff until Redis answers;
/// then emits [`BrokerEvent::Resync`]. Returns false when the broker was dropped meanwhile.
async fn recover(inner: &Weak<Inner>, runtime: &Arc<dyn Runtime>, node: &NodeId) -> bool {
    let mut delay = match inner.upgrade() {
        Some(inner) => inner.config.reconnect_min,
        None => return false,
    };
    loop {
        let Some(strong) = inner.upgrade() else {
            return false;
        };
        let max = strong.config.reconnect_max;
        let attempt = async {
            if let Topology::Sentinel(topology) = &strong.config.topology {
                let addr = sentinel::find_master(topology, strong.timeouts())
                    .await
                    .map_err(|e| e.to_string())?;
                let current = strong.link();
                if current.master.as_ref() != Some(&addr) {
                    let generation = strong.next_generation.fetch_add(1, Relaxed);
                    let link = open_link(&strong.config, generation, &strong.pushes, runtime)
                        .await
                        .map_err(|e| e.to_string())?;
                    log::warn!(
                        "node {node}: following the master from {:?} to {:?}",
                        current.master,
                        link.master
                    );
                    if current.master.is_some() {
                        strong.stats.failovers.fetch_add(1, Relaxed);
                    }
                    *lock(&strong.link) = Arc::new(link);
                }
            }
            let link = strong.link();
            link.subscriber
                .query::<String>(&redis::cmd("PING"))
                .await
                .map_err(|e| e.to_string())?;
            link.subscriber
                .subscribe(vec![keys::RESYNC_CHANNEL.to_string()])
                .await
                .map_err(|e| e.to_string())?;
            for client in strong.clients() {
                link.subscriber
                    .subscribe(channels(&client))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Result::<(), String>::Ok(())
        }
        .await;
        match attempt {
            Ok(()) => {
                strong.stats.up(Part::Subscriber);
                strong.stats.reconnects.fetch_add(1, Relaxed);
                log::info!("node {node}: redis subscriber connection back; resync");
                let _ = strong.events.unbounded_send(BrokerEvent::Resync);
                return true;
            }
            Err(e) => {
                drop(strong);
                log::debug!("node {node}: redis not back yet ({e}); retrying in {delay:?}");
                runtime.sleep(delay).await;
                delay = (delay * 2).min(max);
            }
        }
    }
}

/// Sends queued notifications in order, one batch at a time, until the broker is dropped.
/// A failed batch is counted and owes a resync; so does a dropped notification. The lost
/// notifications were meant for sessions on any node, so the resync is announced to every
/// node on [`keys::RESYNC_CHANNEL`] once Redis takes it (after the queued batches, or at once
/// when nothing is queued); until then it is retried with backoff.
async fn publisher(
    mut wake: UnboundedReceiver<()>,
    inner: Weak<Inner>,
    runtime: Arc<dyn Runtime>,
    node: NodeId,
) {
    while wake.next().await.is_some() {
        let mut delay = match inner.upgrade() {
            Some(inner) => inner.config.reconnect_min,
            None => return,
        };
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let mut batch = lock(&strong.queue).take_batch();
            let link = strong.link();
            let announce = batch.is_empty();
            if announce {
                // Cleared before sending: a drop meanwhile owes another announcement.
                if !strong.owed_resync.swap(false, Relaxed) {
                    break;
                }
                batch.push((keys::RESYNC_CHANNEL.to_string(), node.as_str().to_string()));
            }
            let result = publish_all(&link, &batch).await;
            if !announce {
                strong.release(&batch);
                if result.is_err() {
                    strong.stats.failed.fetch_add(batch.len() as u64, Relaxed);
                }
            }
            match result {
                Ok(()) => {
                    strong.stats.up(Part::Publisher);
                    delay = strong.config.reconnect_min;
                    if announce {
                        log::info!("node {node}: redis answers again; every node resyncs");
                    }
                }
                Err(e) => {
                    log::debug!("node {node}: notifications not sent ({e}); retry in {delay:?}");
                    strong.owed_resync.store(true, Relaxed);
                    strong.stats.down(Part::Publisher, &e.to_string());
                    strong.failed();
                    let max = strong.config.reconnect_max;
                    drop((strong, link));
                    runtime.sleep(delay).await;
                    delay = (delay * 2).min(max);
                }
            }
        }
    }
}

/// Decodes the `[channel, payload]` of a message push.
fn message(data: &[Value]) -> Result<BrokerEvent, String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| "not UTF-8".to_string()),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(format!("unexpected value {other:?}")),
    };
    match data {
        [channel, payload] => keys::decode(&text(channel)?, &text(payload)?),
        other => Err(format!("expected [channel, payload], got {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(n: usize) -> (String, String) {
        (format!("c{n}"), "x".repeat(n))
    }

    #[test]
    fn past_the_count_or_the_bytes_notifications_are_not_queued() {
        let mut q = Queue::default();
        assert_eq!(q.push(vec![note(10), note(10)], 3, 100), 0);
        assert_eq!(
            q.push(vec![note(10), note(10)], 3, 100),
            1,
            "the fourth is over 3"
        );
        let batch = q.take_batch();
        assert_eq!(
            batch,
            vec![note(10), note(10), note(10)],
            "in order, one batch"
        );
        assert_eq!(q.count, 3, "in flight still counts");
        assert_eq!(q.push(vec![note(1)], 3, 100), 1);
        q.release(&batch);
        assert_eq!((q.count, q.bytes), (0, 0));
        assert_eq!(
            q.push(vec![note(60), note(60)], 3, 100),
            1,
            "over 100 bytes"
        );
    }

    #[test]
    fn batches_hold_about_a_pipeline_of_bytes_and_at_least_one() {
        let mut q = Queue::default();
        let big = PIPELINE_BYTES / 2;
        q.push(
            vec![note(big), note(big), note(2 * big), note(1)],
            10,
            usize::MAX,
        );
        let sizes = |b: Vec<(String, String)>| b.iter().map(|n| n.1.len()).collect::<Vec<_>>();
        assert_eq!(sizes(q.take_batch()), vec![big]);
        assert_eq!(sizes(q.take_batch()), vec![big]);
        assert_eq!(sizes(q.take_batch()), vec![2 * big], "alone though over");
        assert_eq!(sizes(q.take_batch()), vec![1]);
        assert!(q.take_batch().is_empty());
    }
}
