//! The running node: Socket.IO connections authenticated and fed to the engine, the engine's
//! outputs carried out against the store and the broker, the REST API, retention, shutdown.
//!
//! The engine is sharded: one [`Hub`] per core, each owned by one task, clients assigned by a
//! hash of their id. A shard task waits for its next input or timer, feeds the Hub, then
//! carries out every output: deliveries are enqueued on the client's socket (never blocking),
//! store and broker calls run as their own tasks whose results come back as inputs.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_std::channel::{Receiver, Sender, unbounded};
use futures::{FutureExt, StreamExt};
use herald_core::auth::{AuthConfig, Credentials, LegacyHeaders, authenticate};
use herald_core::{
    AckId, Broker, BrokerEvent, BrokerOp, BrokerReply, ClientId, ConnId, Hub, HubConfig, HubStats,
    Input, MessageStore, NodeId, Output,
};
use herald_socketio::http1::{self, HttpLimits, SharedLimit};
use herald_socketio::{Event, Pending, ServerConfig, Socket, SocketIo};
use serde_json::json;

use crate::api::{self, ApiState, unix_ms};
use crate::config::Config;
use crate::metrics::{EngineCounts, Metrics};
use crate::subs::{Subscriptions, Watchers};

/// What a shard task receives.
enum ShardMsg {
    /// A client authenticated: remember its socket and start its session.
    Connect {
        conn: ConnId,
        socket: Socket,
        identity: herald_core::Identity,
    },
    /// Anything else for the Hub.
    Hub(Input),
}

/// Work that must finish before the process exits (store writes under way).
#[derive(Default)]
pub struct Inflight(AtomicUsize);

impl Inflight {
    fn enter(&self) -> InflightGuard<'_> {
        self.0.fetch_add(1, Relaxed);
        InflightGuard(self)
    }

    /// Waits (bounded by `limit`) until nothing is in flight.
    pub async fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.0.load(Relaxed) > 0 && Instant::now() < deadline {
            async_std::task::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct InflightGuard<'a>(&'a Inflight);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Relaxed);
    }
}

/// Everything the node's tasks share.
pub struct Node<S, B> {
    /// The queues.
    pub store: Arc<S>,
    /// Broker subscriptions (and the broker).
    pub subs: Arc<Subscriptions<B>>,
    /// Waiting watch requests.
    pub watchers: Arc<Watchers>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Store writes under way.
    pub inflight: Arc<Inflight>,
    shards: Vec<Sender<ShardMsg>>,
    stats: Arc<Mutex<Vec<HubStats>>>,
    next_conn: AtomicU64,
}

impl<S: MessageStore, B: Broker> Node<S, B> {
    fn shard_of(&self, client: &ClientId) -> &Sender<ShardMsg> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        client.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }

    /// The engine's counters summed over the shards.
    pub fn engine_counts(&self) -> EngineCounts {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut c = EngineCounts::default();
        for s in stats.iter() {
            c.sessions += s.sessions;
            c.deliveries += s.deliveries;
            c.acks += s.acks;
            c.redeliveries += s.redeliveries;
            c.kicks += s.kicks;
        }
        c
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
    let node = Arc::new(Node {
        store,
        subs: Arc::new(Subscriptions::new(broker)),
        watchers: Arc::new(Watchers::default()),
        metrics,
        inflight: Arc::new(Inflight::default()),
        shards: senders,
        stats: Arc::new(Mutex::new(vec![HubStats::default(); shards])),
        next_conn: AtomicU64::new(1),
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
                BrokerEvent::Notify { client, .. } => {
                    router.watchers.wake(client);
                    let _ = router
                        .shard_of(client)
                        .try_send(ShardMsg::Hub(Input::Broker(event.clone())));
                }
                BrokerEvent::Claim { client, .. } => {
                    let _ = router
                        .shard_of(client)
                        .try_send(ShardMsg::Hub(Input::Broker(event.clone())));
                }
                BrokerEvent::Resync => {
                    router.watchers.wake_all();
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
    let mut sockets: HashMap<ConnId, Socket> = HashMap::new();
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
                feed(&mut hub, &mut sockets, msg);
                // Take whatever else is waiting before carrying out outputs (batching).
                for _ in 0..1024 {
                    match rx.try_recv() {
                        Ok(msg) => feed(&mut hub, &mut sockets, msg),
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
            carry_out(out, &mut hub, &mut sockets, &me, &node);
        }
        if let Ok(mut stats) = node.stats.lock() {
            stats[index] = hub.stats();
        }
    }
}

fn feed(hub: &mut Hub, sockets: &mut HashMap<ConnId, Socket>, msg: ShardMsg) {
    let now = Instant::now();
    match msg {
        ShardMsg::Connect {
            conn,
            socket,
            identity,
        } => {
            sockets.insert(conn, socket);
            hub.handle(now, Input::Connect { conn, identity });
        }
        ShardMsg::Hub(input) => {
            if let Input::Disconnect { conn } = &input {
                sockets.remove(conn);
            }
            hub.handle(now, input);
        }
    }
}

fn carry_out<S: MessageStore, B: Broker>(
    out: Output,
    hub: &mut Hub,
    sockets: &mut HashMap<ConnId, Socket>,
    me: &Sender<ShardMsg>,
    node: &Arc<Node<S, B>>,
) {
    match out {
        Output::Deliver {
            conn,
            ack,
            messages,
        } => {
            let Some(socket) = sockets.get(&conn) else {
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
                log::info!("delivery to {conn:?} failed ({e}): ending its session");
                sockets.remove(&conn);
                hub.handle(Instant::now(), Input::Disconnect { conn });
            }
        }
        Output::Kick { conn, reason } => {
            if let Some(socket) = sockets.remove(&conn) {
                let _ = socket.emit("kicked", &[json!({ "reason": reason.as_str() })], None);
                socket.disconnect(true);
            }
        }
        Output::Close { conn, reason } => {
            log::info!("closing {conn:?}: {reason:?}");
            if let Some(socket) = sockets.remove(&conn) {
                socket.disconnect(true);
            }
        }
        Output::Store { req, op } => {
            let node = node.clone();
            let mut call = Box::pin(async move {
                let _guard = node.inflight.enter();
                let started = Instant::now();
                let result = op.run(&*node.store, unix_ms()).await;
                node.metrics.store_latency.observe(started.elapsed());
                if result.is_err() {
                    Metrics::inc(&node.metrics.store_errors);
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
                let started = Instant::now();
                // Subscriptions go through the node's refcount (shared with watchers).
                let result = match op {
                    BrokerOp::Subscribe { client } => node
                        .subs
                        .subscribe(&client)
                        .await
                        .map(|()| BrokerReply::Subscribed),
                    BrokerOp::Unsubscribe { client } => node
                        .subs
                        .unsubscribe(&client)
                        .await
                        .map(|()| BrokerReply::Unsubscribed),
                    claim => claim.run(&**node.subs.broker()).await,
                };
                node.metrics.broker_latency.observe(started.elapsed());
                if result.is_err() {
                    Metrics::inc(&node.metrics.broker_errors);
                }
                let _ = me
                    .send(ShardMsg::Hub(Input::BrokerDone { req, result }))
                    .await;
            });
        }
    }
}

/// Accepts Socket.IO connections: authenticates each, hands it to its shard, forwards its acks,
/// commits and end.
pub async fn accept_connections<S: MessageStore, B: Broker>(
    incoming: Receiver<Pending>,
    auth: Arc<AuthConfig>,
    node: Arc<Node<S, B>>,
) {
    while let Ok(pending) = incoming.recv().await {
        let h = &pending.handshake;
        let legacy = match (h.header("x-nbb-authid"), h.header("x-nbb-sign")) {
            (Some(id), Some(sign)) => Some(LegacyHeaders {
                authid: id.to_owned(),
                sign: sign.to_owned(),
            }),
            _ => None,
        };
        let creds = Credentials {
            auth: h.auth.clone().or_else(|| auth_from_query(&h.query)),
            legacy,
        };
        let identity = match authenticate(&auth, &creds, unix_ms() / 1000) {
            Ok(id) => id,
            Err(e) => {
                Metrics::inc(&node.metrics.auth_failures);
                log::info!("connection refused from {:?}: {e}", h.remote);
                pending.refuse(json!({ "message": e.client_message() }));
                continue;
            }
        };
        let conn = ConnId(node.next_conn.fetch_add(1, Relaxed));
        let protocol = pending.handshake.protocol;
        node.metrics.connections.fetch_add(1, Relaxed);
        Metrics::inc(&node.metrics.connections_total);
        log::debug!(
            "{conn:?} is {} slot {} ({:?}, Engine.IO v{})",
            identity.client,
            identity.slot,
            identity.mode,
            protocol
        );
        let shard = node.shard_of(&identity.client).clone();
        // The client's events go straight from its session to the shard (no channel or task
        // of ours per connection); those that come before the shard has the connection wait.
        let forward = Arc::new(Forward {
            conn,
            shard: shard.clone(),
            metrics: node.metrics.clone(),
            early: Mutex::new(Some(Vec::new())),
            closed: AtomicBool::new(false),
        });
        let handler = forward.clone();
        let socket = pending.accept_with(move |event| handler.event(event));
        let _ = shard.try_send(ShardMsg::Connect {
            conn,
            socket,
            identity,
        });
        forward.open();
    }
}

/// Hands one connection's events to its shard as Hub inputs, the end exactly once.
struct Forward {
    conn: ConnId,
    shard: Sender<ShardMsg>,
    metrics: Arc<Metrics>,
    /// Inputs that came before the shard was sent the connection; `None` once it was.
    early: Mutex<Option<Vec<Input>>>,
    /// The end (`Disconnect`) was sent.
    closed: AtomicBool,
}

impl Forward {
    /// Called by the transport, on the connection's session task, for each event.
    fn event(&self, event: Event) {
        let conn = self.conn;
        let input = match event {
            Event::Ack { id, .. } => Input::Ack {
                conn,
                ack: AckId(id),
            },
            Event::Message { name, args, .. } if name == "commit" => {
                let n = args.first().and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                });
                match n {
                    Some(n) => Input::Commit { conn, n },
                    None => {
                        log::info!("{conn:?}: commit without a count: ignored");
                        return;
                    }
                }
            }
            Event::Message { name, .. } => {
                log::debug!("{conn:?}: event {name:?} ignored");
                return;
            }
            Event::Text(_) | Event::Binary(_) => return,
            Event::Closed { .. } => return self.close(),
        };
        self.send(input);
    }

    fn send(&self, input: Input) {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        match early.as_mut() {
            Some(waiting) => waiting.push(input),
            None => {
                let _ = self.shard.try_send(ShardMsg::Hub(input));
            }
        }
    }

    /// The shard has the connection: what waited goes, in order, and the rest goes directly.
    fn open(&self) {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        for input in early.take().unwrap_or_default() {
            let _ = self.shard.try_send(ShardMsg::Hub(input));
        }
    }

    /// The connection ended: its session leaves the Hub (once).
    fn close(&self) {
        if !self.closed.swap(true, Relaxed) {
            self.metrics.connections.fetch_sub(1, Relaxed);
            self.send(Input::Disconnect { conn: self.conn });
        }
    }
}

impl Drop for Forward {
    /// A session that ended without saying so (it panicked) still leaves the Hub.
    fn drop(&mut self) {
        self.close();
        self.open();
    }
}

/// Connect auth from query parameters, for clients that send no CONNECT auth (socket.io 1.x
/// and 2.x): `client_id`, `ts`, `sig` (HMAC) or `token` (JWT), and `slot`, `mode`. `None` when
/// the query names neither `client_id` nor `token`. Numbers are passed as numbers, so the
/// same checks apply as to a CONNECT payload.
fn auth_from_query(query: &[(String, String)]) -> Option<serde_json::Value> {
    const KEYS: [&str; 6] = ["client_id", "ts", "sig", "token", "slot", "mode"];
    let mut auth = serde_json::Map::new();
    for (k, v) in query {
        if !KEYS.contains(&k.as_str()) || auth.contains_key(k) {
            continue;
        }
        let value = match k.as_str() {
            "ts" | "slot" => v.parse::<u64>().map_or_else(|_| json!(v), |n| json!(n)),
            _ => json!(v),
        };
        auth.insert(k.clone(), value);
    }
    (auth.contains_key("client_id") || auth.contains_key("token"))
        .then_some(serde_json::Value::Object(auth))
}

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
            Err(e) => {
                Metrics::inc(&metrics.store_errors);
                log::warn!("retention pass failed: {e}");
            }
        }
    }
}

/// The listeners of a node and what they serve.
pub struct Listeners {
    /// The REST API's bound address, when served.
    pub api: Option<SocketAddr>,
    /// The connector's bound address, when served.
    pub connector: Option<SocketAddr>,
    /// The accept loops; cancel them to stop accepting.
    pub tasks: Vec<async_std::task::JoinHandle<()>>,
}

/// Builds the tide apps and binds them (one listener when both addresses are equal).
///
/// # Errors
/// When an address cannot be bound.
pub async fn listen<S: MessageStore, B: Broker>(
    config: &Config,
    node: &Arc<Node<S, B>>,
    io: &SocketIo,
    node_name: &str,
) -> anyhow::Result<Listeners> {
    let state = Arc::new(ApiState {
        store: node.store.clone(),
        subs: node.subs.clone(),
        watchers: node.watchers.clone(),
        metrics: node.metrics.clone(),
        engine_counts: {
            let node = node.clone();
            Arc::new(move || node.engine_counts())
        },
        keys: config.api_keys.clone(),
        max_body: config.api_max_body,
        max_answer: config.api_max_answer,
        max_listed_errors: config.api_max_listed_errors,
        node: node_name.to_owned(),
    });
    let mut listeners = Listeners {
        api: None,
        connector: None,
        tasks: Vec::new(),
    };
    let shared = SharedLimit::new(ConnectionBudget::derive(raise_nofile()).total);
    if config.single_port() {
        let mut app = tide::with_state(state);
        api::json_errors(&mut app);
        api::routes(&mut app);
        io.mount(&mut app);
        let max_body = config.api_max_body.max(config.max_payload);
        let limits = http_limits(config, max_body, 1, &shared);
        let (addr, task) = bind(app, config.api_listen, limits).await?;
        listeners.api = Some(addr);
        listeners.connector = Some(addr);
        listeners.tasks.push(task);
        return Ok(listeners);
    }
    let count = usize::from(config.role.serves_api()) + usize::from(config.role.serves_connector());
    if config.role.serves_api() {
        let mut app = tide::with_state(state);
        api::json_errors(&mut app);
        api::routes(&mut app);
        let limits = http_limits(config, config.api_max_body, count, &shared);
        let (addr, task) = bind(app, config.api_listen, limits).await?;
        listeners.api = Some(addr);
        listeners.tasks.push(task);
    }
    if config.role.serves_connector() {
        let mut app = tide::new();
        app.with(io.cors_layer());
        api::json_errors(&mut app);
        io.mount(&mut app);
        let limits = http_limits(config, config.max_payload, count, &shared);
        let (addr, task) = bind(app, config.connector_listen, limits).await?;
        listeners.connector = Some(addr);
        listeners.tasks.push(task);
    }
    Ok(listeners)
}

async fn bind<State: Clone + Send + Sync + 'static>(
    mut app: tide::Server<State>,
    addr: SocketAddr,
    limits: HttpLimits,
) -> anyhow::Result<(SocketAddr, async_std::task::JoinHandle<()>)> {
    app.with(crate::logging::AccessLog);
    let listener = async_std::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let task = async_std::task::spawn(http1::serve(listener, app, limits));
    Ok((bound, task))
}

/// The HTTP limits of a listener whose largest body is `max_body`, with `listeners` sharing
/// the file descriptors through `shared`.
fn http_limits(
    config: &Config,
    max_body: usize,
    listeners: usize,
    shared: &Arc<SharedLimit>,
) -> HttpLimits {
    HttpLimits {
        max_head: config.http_max_head,
        max_body,
        head_timeout: config.http_head_timeout,
        body_timeout: config.http_body_timeout,
        idle_timeout: config.http_idle_timeout,
        write_timeout: config.http_write_timeout,
        max_connections: config
            .http_max_connections
            .unwrap_or_else(|| ConnectionBudget::derive(raise_nofile()).per_listener(listeners)),
        shared: Some(shared.clone()),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (once per process) and returns it.
fn raise_nofile() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("cannot raise RLIMIT_NOFILE: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    })
}

/// How many connections the file-descriptor limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnectionBudget {
    /// Connections of all listeners together: the limit less a reserve for the store, the
    /// broker, logs and the process itself (64 and 1/64 of the limit).
    total: usize,
    /// What one listener always leaves to the others (1/64 of the total, at least 16), so a
    /// flood on the Socket.IO port never takes the REST API's `/healthy` with it.
    headroom: usize,
}

impl ConnectionBudget {
    fn derive(nofile: u64) -> ConnectionBudget {
        let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
        let total = nofile.saturating_sub(64 + nofile / 64).max(1);
        ConnectionBudget {
            total,
            headroom: (total / 64).max(16),
        }
    }

    /// The limit of one of `listeners` listeners.
    fn per_listener(self, listeners: usize) -> usize {
        if listeners <= 1 {
            return self.total;
        }
        self.total
            .saturating_sub(self.headroom * (listeners - 1))
            .max(1)
    }
}

/// The Socket.IO server configuration of a node.
pub fn socketio_config(config: &Config) -> ServerConfig {
    ServerConfig {
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        max_payload: config.max_payload,
        connect_timeout: config.connect_timeout,
        queue_bytes: config.max_queue_bytes,
        close_timeout: config.close_timeout,
        cors_origins: config.cors_origins.clone(),
        cors_max_age: config.cors_max_age,
        ..ServerConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_connection_budget_leaves_room_for_the_process_and_the_other_listener() {
        // prlimit --nofile=256: the descriptors a node uses at rest (about 20) and the REST
        // API's room stay free while the Socket.IO port is full.
        let b = ConnectionBudget::derive(256);
        assert_eq!((b.total, b.headroom), (188, 16));
        assert_eq!(b.per_listener(2), 172);
        assert_eq!(b.per_listener(1), 188);
        // 20,000 (the benchmark machine): 19,000 idle WebSockets or 1,000 pushers fit.
        let b = ConnectionBudget::derive(20_000);
        assert!(b.per_listener(2) >= 19_000 && b.total < 20_000 - 300);
        assert_eq!(ConnectionBudget::derive(0).per_listener(2), 1);
    }

    #[test]
    fn query_auth_takes_the_known_fields_with_numbers_as_numbers() {
        let q = query(&[
            ("EIO", "3"),
            ("client_id", "u42"),
            ("ts", "1764000000"),
            ("sig", "ab"),
            ("slot", "2"),
            ("client_id", "second"),
            ("other", "x"),
        ]);
        assert_eq!(
            auth_from_query(&q),
            Some(json!({"client_id": "u42", "ts": 1_764_000_000, "sig": "ab", "slot": 2}))
        );
        // A malformed number stays a string, for the same error as in a CONNECT payload.
        assert_eq!(
            auth_from_query(&query(&[("client_id", "u"), ("ts", "soon")])),
            Some(json!({"client_id": "u", "ts": "soon"}))
        );
        assert_eq!(
            auth_from_query(&query(&[("token", "a.b.c")])),
            Some(json!({"token": "a.b.c"}))
        );
        assert_eq!(auth_from_query(&query(&[("EIO", "3"), ("t", "x")])), None);
    }
}
