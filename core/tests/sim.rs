//! Deterministic simulation of a Herald cluster: several nodes (each a `Hub`) sharing one
//! `MemoryStore` and one `MemoryBroker` bus, driven by a seeded RNG on a virtual clock.
//!
//! Each scenario runs random client connects (to random nodes, sometimes two devices on one
//! client and slot), disconnects, node crashes and restarts, pushes (through `herald_core::publish`,
//! the server's own publish path), acknowledgements with random delays (some never sent), and store and broker
//! outages (half the broker outages end as a restart that forgot every generation, as a Redis
//! without persistence does). Store and broker calls execute and answer after random delays, so nodes interleave.
//! Then a settle phase clears the faults, reconnects every device and lets everything finish,
//! and the checks run:
//! - within every session, delivered ids strictly increase (checked as they arrive);
//! - no acknowledged push is lost and every message not acknowledged earlier is delivered
//!   again: at the end, every stored message is acknowledged by every slot in use;
//! - at most one live session per (client, slot) once claims settle;
//! - every watcher (a waiting `GET /watch`, an engine input like a session) was woken after
//!   the last push stored for its client while it watched.
//!
//! A failure prints its seed; `HERALD_SIM_SEED=<seed> cargo test -p herald-core --test sim`
//! replays exactly that scenario. `HERALD_SIM_SCENARIOS` sets how many run (default 2000).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use herald_core::memory::now_or_never;
use herald_core::{
    Broker, BrokerError, BrokerEvents, BrokerOp, ClientId, ConnId, Generation, Hub, HubConfig,
    Identity, Input, MemoryBroker, MemoryBrokerNode, MemoryStore, MessageId, MessageStore, Mode,
    NodeId, Output, Published, RequestId, Retention, Slot, StoreOp, WatchId, publish,
};

/// A small, fast, seedable PRNG (splitmix64): the simulation's only source of randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len() as u64) as usize])
        }
    }
}

const NODES: usize = 3;
const CLIENTS: usize = 3;
const SLOTS: i64 = 2;
const DEVICES: usize = 2;

/// Something scheduled on the virtual clock.
#[derive(Debug)]
enum Event {
    /// A node's store call reaches the store.
    ExecStore {
        node: usize,
        inc: u64,
        req: RequestId,
        op: StoreOp,
    },
    /// A node's broker call reaches the broker.
    ExecBroker {
        node: usize,
        inc: u64,
        req: RequestId,
        op: BrokerOp,
    },
    /// A call's result reaches its node.
    Result { node: usize, inc: u64, input: Input },
    /// A node reads the broker events waiting for it.
    Pump { node: usize, inc: u64 },
    /// A device sends an ack or a commit for its current session.
    ClientInput {
        device: usize,
        session: u64,
        input: Input,
    },
    /// The store or the broker comes back.
    Heal { store: bool },
}

struct Node {
    inc: u64,
    hub: Hub,
    broker: MemoryBrokerNode,
    events: BrokerEvents,
}

/// One client device: a (client, slot) consumer that connects and disconnects.
struct Device {
    client: ClientId,
    slot: Slot,
    mode: Mode,
    /// (node, node incarnation, conn) while connected.
    conn: Option<(usize, u64, ConnId)>,
    /// Increases with every connection, so late inputs of an old session are recognized.
    session: u64,
    last_in_session: MessageId,
    /// Every id any session of this device was handed (the slot's devices share a queue).
    received: BTreeSet<MessageId>,
    /// Percent chance an ack is never sent (a stuck client).
    drop_acks: u64,
    /// After settle begins, a kicked device stays away.
    kicked: bool,
}

/// A watcher (a waiting `GET /watch`) on one node.
struct Watcher {
    node: usize,
    inc: u64,
    id: WatchId,
    client: ClientId,
    /// The tick it started watching.
    since: u64,
    /// The tick of its last wake-up (0: never woken).
    woken: u64,
}

struct Sim {
    rng: Rng,
    seed: u64,
    base: Instant,
    now_ms: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    store: MemoryStore,
    bus: MemoryBroker,
    api_broker: MemoryBrokerNode,
    /// The same bus, without messages in notifications.
    id_only_broker: IdOnly,
    /// Names the pushes.
    push_ids: herald_core::PushIds,
    nodes: Vec<Option<Node>>,
    next_inc: u64,
    devices: Vec<Device>,
    next_conn: u64,
    conn_owner: HashMap<ConnId, usize>,
    pushed: u64,
    /// What each stored message holds (`data`, `ts`), by client and id: deliveries must
    /// carry exactly that, whether read from the store or taken from a notification.
    contents: HashMap<(ClientId, MessageId), (String, u64)>,
    /// Live watchers.
    watchers: Vec<Watcher>,
    next_watch: u64,
    /// Orders pushes and wake-ups: a watcher must be woken after the last push stored for
    /// its client once it watches.
    tick: u64,
    /// The tick of the last push stored for each client.
    last_stored: HashMap<ClientId, u64>,
    settling: bool,
    store_down: bool,
    broker_down: bool,
}

fn poll_stream(s: &mut BrokerEvents) -> Option<herald_core::BrokerEvent> {
    let mut cx = Context::from_waker(Waker::noop());
    match s.as_mut().poll_next(&mut cx) {
        Poll::Ready(e) => e,
        Poll::Pending => None,
    }
}

/// A broker that cannot carry messages in its notifications: every notification says only
/// "look again" (the default [`Broker::notify_message`]), and sessions read the store.
struct IdOnly(MemoryBrokerNode);

impl Broker for IdOnly {
    fn subscribe(&self, client: &ClientId) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.0.subscribe(client)
    }
    fn unsubscribe(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.0.unsubscribe(client)
    }
    fn notify(
        &self,
        client: &ClientId,
        last: MessageId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.0.notify(client, last)
    }
    fn claim(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send {
        self.0.claim(client, slot, node)
    }
    fn ping(&self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.0.ping()
    }
    fn events(&self) -> BrokerEvents {
        self.0.events()
    }
    fn claim_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send {
        self.0.claim_session(client, slot, node, now_ms)
    }
    fn end_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        generation: Generation,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.0.end_session(client, slot, node, generation)
    }
    fn sessions(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<Vec<herald_core::OnlineSession>, BrokerError>> + Send {
        self.0.sessions(client)
    }
}

/// Polls a future of the in-memory ports, which are ready at once.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("in-memory futures are ready at once"),
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let store = MemoryStore::new(Retention {
            cap: 1_000_000,
            ttl: Duration::from_secs(365 * 24 * 3600),
        });
        let bus = MemoryBroker::new();
        let api_broker = bus.node();
        let id_only_broker = IdOnly(bus.node());
        let mut devices = Vec::new();
        for c in 0..CLIENTS {
            for s in 0..SLOTS {
                let mode = if rng.chance(30) {
                    Mode::Commit
                } else {
                    Mode::Ack
                };
                for _ in 0..DEVICES {
                    devices.push(Device {
                        client: ClientId::new(&format!("c{c}")).unwrap(),
                        slot: Slot::new(s).unwrap(),
                        mode,
                        conn: None,
                        session: 0,
                        last_in_session: MessageId::ZERO,
                        received: BTreeSet::new(),
                        drop_acks: rng.below(3) * 5,
                        kicked: false,
                    });
                }
            }
        }
        #[allow(clippy::disallowed_methods, reason = "the virtual clock's origin")]
        let base = Instant::now();
        let mut sim = Sim {
            rng,
            seed,
            base,
            now_ms: 0,
            seq: 0,
            queue: BTreeMap::new(),
            store,
            bus,
            api_broker,
            id_only_broker,
            push_ids: herald_core::PushIds::new(seed),
            nodes: Vec::new(),
            next_inc: 1,
            devices,
            next_conn: 1,
            conn_owner: HashMap::new(),
            pushed: 0,
            contents: HashMap::new(),
            watchers: Vec::new(),
            next_watch: 1,
            tick: 1,
            last_stored: HashMap::new(),
            settling: false,
            store_down: false,
            broker_down: false,
        };
        for i in 0..NODES {
            let node = sim.boot(i);
            sim.nodes.push(Some(node));
        }
        sim
    }

    fn boot(&mut self, i: usize) -> Node {
        let mut cfg = HubConfig::new(NodeId::new(&format!("node{i}")).unwrap());
        cfg.window = 1 + self.rng.below(4) as usize;
        cfg.load_limit = 1 + self.rng.below(5) as usize;
        cfg.ack_timeout = Some(Duration::from_secs(3));
        cfg.retry_max = Duration::from_secs(1);
        cfg.ack_retries = 30;
        let broker = self.bus.node();
        let events = broker.events();
        let inc = self.next_inc;
        self.next_inc += 1;
        Node {
            inc,
            hub: Hub::new(cfg),
            broker,
            events,
        }
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    fn schedule(&mut self, delay_ms: u64, e: Event) {
        self.seq += 1;
        self.queue.insert((self.now_ms + delay_ms, self.seq), e);
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "simulation seed {} failed at {} ms: {what}\nreplay: HERALD_SIM_SEED={} cargo test -p herald-core --test sim",
            self.seed, self.now_ms, self.seed
        );
    }

    /// Feeds `input` to node `i` and carries out what it asks.
    fn feed(&mut self, i: usize, input: Input) {
        let now = self.instant();
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        node.hub.handle(now, input);
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        loop {
            let Some(node) = self.nodes[i].as_mut() else {
                return;
            };
            let inc = node.inc;
            let Some(out) = node.hub.poll_output() else {
                return;
            };
            match out {
                Output::Store { req, op } => {
                    let d = self.rng.below(20);
                    self.schedule(
                        d,
                        Event::ExecStore {
                            node: i,
                            inc,
                            req,
                            op,
                        },
                    );
                }
                Output::Broker { req, op } => {
                    let d = self.rng.below(20);
                    self.schedule(
                        d,
                        Event::ExecBroker {
                            node: i,
                            inc,
                            req,
                            op,
                        },
                    );
                }
                Output::Deliver {
                    conn,
                    ack,
                    messages,
                } => self.deliver(conn, ack, messages),
                Output::Wake { watch } => {
                    self.tick += 1;
                    let tick = self.tick;
                    match self.watchers.iter_mut().find(|w| w.id == watch) {
                        Some(w) => w.woken = tick,
                        None => self.fail(&format!("{watch:?} woken after it stopped watching")),
                    }
                }
                Output::Kick { conn, .. } | Output::Close { conn, .. } => {
                    if let Some(d) = self.conn_owner.remove(&conn) {
                        let dev = &mut self.devices[d];
                        dev.conn = None;
                        if self.settling {
                            dev.kicked = true;
                        }
                    }
                }
            }
        }
    }

    fn deliver(
        &mut self,
        conn: ConnId,
        ack: Option<herald_core::AckId>,
        messages: Vec<herald_core::Message>,
    ) {
        let Some(&d) = self.conn_owner.get(&conn) else {
            self.fail(&format!("delivery to {conn:?}, which is not connected"));
        };
        for m in &messages {
            let dev = &self.devices[d];
            if m.id <= dev.last_in_session {
                self.fail(&format!(
                    "{} slot {} got id {} after {} in one session",
                    dev.client, dev.slot, m.id, dev.last_in_session
                ));
            }
            self.devices[d].last_in_session = m.id;
            self.devices[d].received.insert(m.id);
            let dev = &self.devices[d];
            let want = self.contents.get(&(dev.client.clone(), m.id));
            if want != Some(&(m.data.json().to_owned(), m.ts)) {
                self.fail(&format!(
                    "{} got id {} as ({}, ts {}), stored as {want:?}",
                    dev.client,
                    m.id,
                    m.data.json(),
                    m.ts
                ));
            }
        }
        let dev = &self.devices[d];
        let session = dev.session;
        let drop = !self.settling && self.rng.chance(dev.drop_acks);
        let input = match (dev.mode, ack) {
            (Mode::Ack, Some(ack)) => Input::Ack { conn, ack },
            (Mode::Commit, None) => Input::Commit {
                conn,
                n: messages.len() as u64,
            },
            _ => self.fail("delivery shape does not match the session's mode"),
        };
        if !drop {
            let delay = self.rng.below(if self.settling { 30 } else { 500 });
            self.schedule(
                delay,
                Event::ClientInput {
                    device: d,
                    session,
                    input,
                },
            );
        }
    }

    fn exec_store(&mut self, i: usize, inc: u64, req: RequestId, op: StoreOp) {
        let result = ready(op.run(&self.store, self.now_ms));
        let d = self.rng.below(20);
        self.schedule(
            d,
            Event::Result {
                node: i,
                inc,
                input: Input::StoreDone { req, result },
            },
        );
    }

    fn exec_broker(&mut self, i: usize, inc: u64, req: RequestId, op: BrokerOp) {
        let Some(node) = self.nodes[i].as_ref().filter(|n| n.inc == inc) else {
            return; // the node crashed: its broker handle is gone
        };
        let result = ready(op.run(&node.broker, self.now_ms));
        let d = self.rng.below(20);
        self.schedule(
            d,
            Event::Result {
                node: i,
                inc,
                input: Input::BrokerDone { req, result },
            },
        );
        self.pump_all();
    }

    fn pump_all(&mut self) {
        for n in 0..NODES {
            if let Some(node) = &self.nodes[n] {
                let inc = node.inc;
                let d = self.rng.below(30);
                self.schedule(d, Event::Pump { node: n, inc });
            }
        }
    }

    fn run_event(&mut self, e: Event) {
        match e {
            Event::ExecStore { node, inc, req, op } => self.exec_store(node, inc, req, op),
            Event::ExecBroker { node, inc, req, op } => self.exec_broker(node, inc, req, op),
            Event::Result { node, inc, input } => {
                if self.nodes[node].as_ref().is_some_and(|n| n.inc == inc) {
                    self.feed(node, input);
                }
            }
            Event::Pump { node, inc } => {
                let mut events = Vec::new();
                if let Some(n) = self.nodes[node].as_mut().filter(|n| n.inc == inc) {
                    while let Some(e) = poll_stream(&mut n.events) {
                        events.push(e);
                    }
                }
                for e in events {
                    self.feed(node, Input::Broker(e));
                }
            }
            Event::ClientInput {
                device,
                session,
                input,
            } => {
                let dev = &self.devices[device];
                if dev.session == session
                    && let Some((node, inc, _)) = dev.conn
                    && self.nodes[node].as_ref().is_some_and(|n| n.inc == inc)
                {
                    self.feed(node, input);
                }
            }
            Event::Heal { store } => {
                if store {
                    self.store.set_down(false);
                    self.store_down = false;
                } else if self.broker_down {
                    // Half the outages are restarts that lost the broker's state. (The outage
                    // may be over already: settling ends them all at once.)
                    if self.rng.below(2) == 0 {
                        self.bus.forget_generations();
                    }
                    self.bus.set_down(false);
                    self.broker_down = false;
                    self.pump_all();
                }
            }
        }
    }

    /// Runs events and timers up to `until_ms`, in time order.
    fn run_until(&mut self, until_ms: u64) {
        loop {
            let next_event = self.queue.keys().next().map(|k| k.0);
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    n.as_ref()
                        .and_then(|n| n.hub.poll_timeout())
                        .map(|t| ((t - self.base).as_millis() as u64, i))
                })
                .min();
            let timer_first = match (next_event, next_timer) {
                (Some(e), Some((t, _))) => t < e,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if timer_first {
                let (t, i) = next_timer.expect("checked");
                if t > until_ms {
                    break;
                }
                self.now_ms = self.now_ms.max(t);
                let now = self.instant();
                if let Some(n) = self.nodes[i].as_mut() {
                    n.hub.handle_timeout(now);
                }
                self.drain(i);
            } else {
                let Some(&key) = self.queue.keys().next() else {
                    break;
                };
                if key.0 > until_ms {
                    break;
                }
                let e = self.queue.remove(&key).expect("key just seen");
                self.now_ms = self.now_ms.max(key.0);
                self.run_event(e);
            }
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    fn connect(&mut self, d: usize, node: usize) {
        let Some(n) = self.nodes[node].as_ref() else {
            return;
        };
        let inc = n.inc;
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let dev = &mut self.devices[d];
        dev.session += 1;
        dev.last_in_session = MessageId::ZERO;
        dev.conn = Some((node, inc, conn));
        let identity = Identity {
            client: dev.client.clone(),
            slot: dev.slot,
            mode: dev.mode,
        };
        self.conn_owner.insert(conn, d);
        self.feed(node, Input::Connect { conn, identity });
    }

    fn disconnect(&mut self, d: usize) {
        if let Some((node, inc, conn)) = self.devices[d].conn.take() {
            self.conn_owner.remove(&conn);
            if self.nodes[node].as_ref().is_some_and(|n| n.inc == inc) {
                self.feed(node, Input::Disconnect { conn });
            }
        }
    }

    fn watch(&mut self, node: usize) {
        let Some(inc) = self.nodes[node].as_ref().map(|n| n.inc) else {
            return;
        };
        let client = ClientId::new(&format!("c{}", self.rng.below(CLIENTS as u64))).unwrap();
        let id = WatchId(self.next_watch);
        self.next_watch += 1;
        self.tick += 1;
        self.watchers.push(Watcher {
            node,
            inc,
            id,
            client: client.clone(),
            since: self.tick,
            woken: 0,
        });
        self.feed(node, Input::Watch { watch: id, client });
    }

    fn unwatch(&mut self, i: usize) {
        let w = self.watchers.remove(i);
        if self.nodes[w.node].as_ref().is_some_and(|n| n.inc == w.inc) {
            self.feed(w.node, Input::Unwatch { watch: w.id });
        }
    }

    fn crash(&mut self, node: usize) {
        if self.nodes[node].take().is_none() {
            return;
        }
        self.watchers.retain(|w| w.node != node);
        for d in 0..self.devices.len() {
            if self.devices[d].conn.is_some_and(|(n, _, _)| n == node) {
                let (_, _, conn) = self.devices[d].conn.take().expect("checked");
                self.conn_owner.remove(&conn);
            }
        }
    }

    fn push(&mut self) {
        let n = 1 + self.rng.below(CLIENTS as u64);
        let mut recipients = Vec::new();
        for _ in 0..n {
            let c = ClientId::new(&format!("c{}", self.rng.below(CLIENTS as u64))).unwrap();
            if !recipients.contains(&c) {
                recipients.push(c);
            }
        }
        self.pushed += 1;
        let data = self.pushed.to_string();
        let recv: Vec<&str> = recipients.iter().map(ClientId::as_str).collect();
        let body = serde_json::json!({"send_id": "sim", "recv_id": recv, "data": self.pushed});
        let body = body.to_string();
        // The server's own publish path. Half the pushes go through a broker that cannot carry
        // the message (the notification says "look again" only), the others as the server's
        // brokers do, with the message attached.
        let published = if self.rng.below(2) == 0 {
            ready(publish(
                &self.store,
                &self.id_only_broker,
                body.as_bytes(),
                self.now_ms,
                self.push_ids.next(self.now_ms),
            ))
        } else {
            ready(publish(
                &self.store,
                &self.api_broker,
                body.as_bytes(),
                self.now_ms,
                self.push_ids.next(self.now_ms),
            ))
        };
        // A refused or unstored push promises nothing (the API answers 4xx or 503); a failed
        // notify only delays delivery until a resync or the next notify.
        if let Published::Stored { stored, .. } = published {
            self.tick += 1;
            for (client, id) in stored {
                self.last_stored.insert(client.clone(), self.tick);
                self.contents
                    .insert((client, id), (data.clone(), self.now_ms));
            }
        }
        self.pump_all();
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=24 => {
                let idle: Vec<usize> = (0..self.devices.len())
                    .filter(|d| self.devices[*d].conn.is_none())
                    .collect();
                let live: Vec<usize> = (0..NODES).filter(|n| self.nodes[*n].is_some()).collect();
                if let (Some(&d), Some(&n)) = (self.rng.pick(&idle), self.rng.pick(&live)) {
                    self.connect(d, n);
                }
            }
            25..=34 => {
                let busy: Vec<usize> = (0..self.devices.len())
                    .filter(|d| self.devices[*d].conn.is_some())
                    .collect();
                if let Some(&d) = self.rng.pick(&busy) {
                    self.disconnect(d);
                }
            }
            35..=74 => self.push(),
            75..=77 => {
                let n = self.rng.below(NODES as u64) as usize;
                self.crash(n);
            }
            78..=84 => {
                for n in 0..NODES {
                    if self.nodes[n].is_none() {
                        let node = self.boot(n);
                        self.nodes[n] = Some(node);
                    }
                }
            }
            85..=87 if !self.store_down => {
                self.store_down = true;
                self.store.set_down(true);
                let d = 100 + self.rng.below(3000);
                self.schedule(d, Event::Heal { store: true });
            }
            88..=90 if !self.broker_down => {
                self.broker_down = true;
                self.bus.set_down(true);
                let d = 100 + self.rng.below(3000);
                self.schedule(d, Event::Heal { store: false });
            }
            91..=93 => {
                let n = self.rng.below(NODES as u64) as usize;
                self.watch(n);
            }
            94..=95 if !self.watchers.is_empty() => {
                let i = self.rng.below(self.watchers.len() as u64) as usize;
                self.unwatch(i);
            }
            _ => {}
        }
        let dt = self.rng.below(300);
        self.run_until(self.now_ms + dt);
    }

    fn settle(&mut self) {
        self.settling = true;
        self.store.set_down(false);
        self.store_down = false;
        if self.broker_down {
            self.bus.set_down(false);
            self.broker_down = false;
        }
        self.pump_all();
        for n in 0..NODES {
            if self.nodes[n].is_none() {
                let node = self.boot(n);
                self.nodes[n] = Some(node);
            }
        }
        // Let pending work finish (retries reach at most a few seconds).
        self.run_until(self.now_ms + 10_000);
        for d in 0..self.devices.len() {
            self.devices[d].kicked = false;
        }
        for d in 0..self.devices.len() {
            if self.devices[d].conn.is_none() {
                let n = self.rng.below(NODES as u64) as usize;
                self.connect(d, n);
            }
        }
        self.run_until(self.now_ms + 30_000);
    }

    fn check(&mut self) {
        // Every watcher was woken after the last push stored for its client while it watched.
        for w in &self.watchers {
            let pushed = self.last_stored.get(&w.client).copied().unwrap_or(0);
            if pushed > w.since && w.woken < pushed {
                self.fail(&format!(
                    "watcher {:?} of {} on node {} missed the push at tick {pushed} (woken at {})",
                    w.id, w.client, w.node, w.woken
                ));
            }
        }
        // At most one live session per (client, slot), and one at least (devices reconnected).
        let mut live: HashMap<(ClientId, Slot), Vec<usize>> = HashMap::new();
        for (d, dev) in self.devices.iter().enumerate() {
            if let Some((node, inc, conn)) = dev.conn {
                let n = self.nodes[node].as_ref().filter(|n| n.inc == inc);
                if n.is_some_and(|n| n.hub.has_session(conn)) {
                    live.entry((dev.client.clone(), dev.slot))
                        .or_default()
                        .push(d);
                }
            }
        }
        for c in 0..CLIENTS {
            for s in 0..SLOTS {
                let key = (
                    ClientId::new(&format!("c{c}")).unwrap(),
                    Slot::new(s).unwrap(),
                );
                let n = live.get(&key).map_or(0, Vec::len);
                if n != 1 {
                    self.fail(&format!(
                        "{} slot {} has {n} live sessions after settling",
                        key.0, key.1
                    ));
                }
                // Everything stored was delivered and acknowledged by this slot.
                let left = now_or_never(self.store.unacked(
                    &key.0,
                    key.1,
                    MessageId::ZERO,
                    1000,
                    self.now_ms,
                ))
                .expect("store is up");
                if !left.is_empty() {
                    let ids: Vec<u64> = left.iter().map(|m| m.id.0).collect();
                    self.fail(&format!(
                        "{} slot {} never acknowledged {ids:?}",
                        key.0, key.1
                    ));
                }
                // ... because it was delivered: nothing counts as acknowledged unseen.
                let stored = now_or_never(self.store.history(&key.0, 0, 100_000, self.now_ms))
                    .expect("store is up");
                let received: BTreeSet<MessageId> = self
                    .devices
                    .iter()
                    .filter(|d| d.client == key.0 && d.slot == key.1)
                    .flat_map(|d| d.received.iter().copied())
                    .collect();
                let unseen: Vec<u64> = stored
                    .iter()
                    .filter(|m| !received.contains(&m.id))
                    .map(|m| m.id.0)
                    .collect();
                if !unseen.is_empty() {
                    self.fail(&format!(
                        "{} slot {} counts {unseen:?} acknowledged but never received them",
                        key.0, key.1
                    ));
                }
            }
        }
    }
}

fn run(seed: u64) {
    let mut sim = Sim::new(seed);
    let steps = 60 + sim.rng.below(120);
    for _ in 0..steps {
        sim.step();
    }
    sim.settle();
    sim.check();
}

#[test]
fn cluster_simulation() {
    if let Some(seed) = std::env::var("HERALD_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed);
        return;
    }
    let scenarios: u64 = std::env::var("HERALD_SIM_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    for seed in 0..scenarios {
        run(seed);
    }
}
