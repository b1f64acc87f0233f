//! The scenarios: `idle`, `push` and `fanout`, each ending in one JSON report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use async_std::channel::{Receiver, Sender, bounded, unbounded};
use async_std::task::JoinHandle;
use serde_json::{Value, json};

use crate::client::{self, Shared};
use crate::http::HttpConn;
use crate::stats::summarize;
use crate::sys::{cpu_seconds, cpu_share, rss_bytes, unix_us};

/// Most recipients one `POST /push` may name (DESIGN.md).
const MAX_RECIPIENTS: usize = 10_000;

/// How a run reaches the server, shared by every scenario.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Where clients connect (Socket.IO), round-robin.
    pub connectors: Vec<SocketAddr>,
    /// Where pushes go (REST), round-robin.
    pub apis: Vec<SocketAddr>,
    /// The HMAC secret for connect auth; none = only a `client_id` (the peers).
    pub secret: Option<String>,
    /// How many source addresses (127.0.0.2, 127.0.0.3, ...) connections spread over;
    /// 0 = let the kernel choose.
    pub sources: u8,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// Server processes whose resident memory is reported (summed).
    pub server_pids: Vec<u32>,
    /// The server's name in the report.
    pub label: String,
    /// Prefix of this run's client ids, unique per run so no queue of an earlier run is read.
    pub prefix: String,
    /// How long to wait without progress for the last messages before calling them lost.
    pub drain: Duration,
    /// The MongoDB server of the nodes, when given: the reports count its operations.
    pub db: Option<mongodb::Client>,
}

impl Setup {
    fn rss(&self) -> Option<u64> {
        if self.server_pids.is_empty() {
            return None;
        }
        let mut sum = 0;
        for pid in &self.server_pids {
            match rss_bytes(*pid) {
                Ok(b) => sum += b,
                Err(e) => {
                    log::warn!("{e:#}");
                    return None;
                }
            }
        }
        Some(sum)
    }

    /// CPU seconds used so far by this process and by the servers (summed).
    fn cpu(&self) -> (Option<f64>, Option<f64>) {
        let me = cpu_seconds(std::process::id());
        let servers = self
            .server_pids
            .iter()
            .map(|p| cpu_seconds(*p))
            .sum::<Option<f64>>();
        (me, servers.filter(|_| !self.server_pids.is_empty()))
    }

    /// The database operations counted so far, when a database was given and answers.
    async fn ops(&self) -> Option<i64> {
        let db = self.db.as_ref()?;
        match crate::db::op_count(db).await {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("{e:#}");
                None
            }
        }
    }

    fn source(&self, i: usize) -> Option<IpAddr> {
        (self.sources > 0).then(|| {
            let host = 2 + (i % usize::from(self.sources)) as u8;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
        })
    }
}

/// Connected clients and their receive tasks.
pub struct Clients {
    /// The ids of the clients that connected, in connection order.
    pub ids: Vec<String>,
    /// Connection attempts that failed.
    pub failures: u64,
    /// The first failure's reason.
    pub first_failure: Option<String>,
    /// How long connecting all of them took.
    pub connect_secs: f64,
    /// Counters every receive task adds to.
    pub shared: Arc<Shared>,
    tasks: Vec<JoinHandle<Vec<u32>>>,
    stop: Sender<()>,
}

impl Clients {
    /// Stops every receive task and returns all recorded latencies (microseconds).
    pub async fn finish(self) -> Vec<u32> {
        drop(self.stop);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await);
        }
        all
    }

    /// The report fields about connecting and staying connected.
    fn report(&self) -> Value {
        json!({
            "connected": self.ids.len(),
            "connect_failures": self.failures,
            "first_failure": self.first_failure,
            "dropped": self.shared.dropped.load(Relaxed),
            "first_drop": *self.shared.first_drop.lock().unwrap_or_else(|e| e.into_inner()),
            "kicked": self.shared.kicked.load(Relaxed),
        })
    }
}

/// Connects `n` clients, `setup.concurrency` at a time; failures are counted, not fatal.
pub async fn connect_clients(setup: &Setup, n: usize) -> Clients {
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let next = Arc::new(AtomicUsize::new(0));
    type Done = (usize, String, JoinHandle<Vec<u32>>);
    let done: Arc<Mutex<Vec<Done>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let failures = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(Mutex::new(None::<String>));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..setup.concurrency.clamp(1, n.max(1)) {
        let (setup, shared, stop_rx, next, done, failures, first_failure) = (
            setup.clone(),
            shared.clone(),
            stop_rx.clone(),
            next.clone(),
            done.clone(),
            failures.clone(),
            first_failure.clone(),
        );
        workers.push(async_std::task::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    return;
                }
                let id = format!("{}-{i}", setup.prefix);
                let addr = setup.connectors[i % setup.connectors.len()];
                let attempt = async_std::future::timeout(
                    Duration::from_secs(30),
                    client::connect(addr, setup.source(i), &id, setup.secret.as_deref()),
                )
                .await;
                let error = match attempt {
                    Ok(Ok(ws)) => {
                        let (shared, stop) = (shared.clone(), stop_rx.clone());
                        let task = async_std::task::spawn(async move {
                            client::receive(ws, &shared, stop).await
                        });
                        lock(&done).push((i, id, task));
                        continue;
                    }
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(_) => "no Socket.IO connect within 30 s".to_owned(),
                };
                failures.fetch_add(1, Relaxed);
                lock(&first_failure).get_or_insert(error);
            }
        }));
    }
    for w in workers {
        w.await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let mut done = std::mem::take(&mut *lock(&done));
    done.sort_by_key(|(i, _, _)| *i);
    let (ids, tasks) = done.into_iter().map(|(_, id, t)| (id, t)).unzip();
    let first_failure = lock(&first_failure).take();
    Clients {
        ids,
        failures: failures.load(Relaxed),
        first_failure,
        connect_secs,
        shared,
        tasks,
        stop: stop_tx,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `shared.received` reaches `target`, or nothing new arrived for `quiet`.
async fn wait_received(shared: &Shared, target: u64, quiet: Duration) {
    let mut last = shared.received.load(Relaxed);
    let mut since = Instant::now();
    loop {
        let now = shared.received.load(Relaxed);
        if now >= target {
            return;
        }
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
        async_std::task::sleep(Duration::from_millis(2)).await;
    }
}

/// The `POST /push` body of push number `seq`, due at `t_us`, to `recipients`.
fn push_body(recipients: &[String], seq: u64, t_us: u64) -> Vec<u8> {
    let body = json!({
        "send_id": "herald-bench",
        "channel": "bench",
        "recv_id": recipients,
        "data": { "t": t_us, "s": seq },
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// How the answers to a run's pushes went.
#[derive(Debug, Default)]
struct Pushed {
    /// Recipients the server accepted: the messages that must arrive.
    expected: AtomicU64,
    /// Requests answered 200.
    ok: AtomicU64,
    /// Requests that failed (transport error or a status other than 200).
    failed: AtomicU64,
    /// Recipients listed in `failed` of a 200 answer.
    failed_recipients: AtomicU64,
    /// Recipients of the failed requests: messages that never got in.
    unsent: AtomicU64,
    /// The first failure, for the report.
    first_error: Mutex<Option<String>>,
}

impl Pushed {
    /// Sends one push on `conn` (reconnecting it first if it broke) and books the answer.
    async fn send(&self, conn: &mut Option<HttpConn>, addr: SocketAddr, body: &[u8], n: u64) {
        let result = async {
            if conn.is_none() {
                *conn = Some(HttpConn::connect(addr).await?);
            }
            let c = conn.as_mut().expect("connected above");
            c.post_json("/push", body).await
        }
        .await;
        let error = match result {
            Ok(a) if a.status == 200 => {
                let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                let failed = v["failed"].as_array().map_or(0, |f| f.len() as u64);
                let sent = v["send"].as_u64().unwrap_or(n.saturating_sub(failed));
                self.expected.fetch_add(sent, Relaxed);
                self.failed_recipients.fetch_add(failed, Relaxed);
                self.ok.fetch_add(1, Relaxed);
                return;
            }
            Ok(a) => format!("status {}: {}", a.status, String::from_utf8_lossy(&a.body)),
            Err(e) => {
                *conn = None;
                format!("{e:#}")
            }
        };
        self.failed.fetch_add(1, Relaxed);
        self.unsent.fetch_add(n, Relaxed);
        lock(&self.first_error).get_or_insert(error);
    }

    /// Messages that did not arrive: refused by the server or missing after the drain.
    fn lost(&self, received: u64) -> u64 {
        let expected = self.expected.load(Relaxed);
        expected.saturating_sub(received)
            + self.unsent.load(Relaxed)
            + self.failed_recipients.load(Relaxed)
    }

    fn report(&self) -> Value {
        json!({
            "requests_ok": self.ok.load(Relaxed),
            "requests_failed": self.failed.load(Relaxed),
            "failed_recipients": self.failed_recipients.load(Relaxed),
            "first_push_error": *lock(&self.first_error),
        })
    }
}

/// `idle`: connect `conns` clients, hold them `hold`, report connect rate, failures and the
/// server's resident memory per connection.
///
/// # Errors
/// Never for the server's behaviour (that is reported); only for a setup that cannot run.
pub async fn idle(setup: &Setup, conns: usize, hold: Duration) -> anyhow::Result<Value> {
    let rss_before = setup.rss();
    let ops_before = setup.ops().await;
    let clients = connect_clients(setup, conns).await;
    let rss_connected = setup.rss();
    async_std::task::sleep(hold).await;
    let rss_after = setup.rss();
    let connected = clients.ids.len();
    let still_open = connected as u64 - clients.shared.dropped.load(Relaxed);
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => Some(a.saturating_sub(b) as f64 / connected as f64),
        _ => None,
    };
    let mut report = json!({
        "scenario": "idle",
        "server": setup.label,
        "conns": conns,
        "hold_s": hold.as_secs_f64(),
        "connect_s": round3(clients.connect_secs),
        "connect_per_s": round3(connected as f64 / clients.connect_secs.max(1e-9)),
        "still_open": still_open,
        "rss_before_mb": rss_before.map(mb),
        "rss_connected_mb": rss_connected.map(mb),
        "rss_after_mb": rss_after.map(mb),
        "rss_per_conn_kb": per_conn.map(|b| round3(b / 1024.0)),
        "lost": 0,
        "db_ops": ops_since(ops_before, setup.ops().await),
    });
    merge(&mut report, clients.report());
    clients.finish().await;
    Ok(report)
}

/// Arguments of [`push`].
#[derive(Debug, Clone, Copy)]
pub struct PushArgs {
    /// Connected clients.
    pub conns: usize,
    /// Recipients per request.
    pub batch: usize,
    /// Requests per second, offered whatever the answers do (open loop).
    pub rate: f64,
    /// How long requests are offered.
    pub secs: f64,
    /// Keep-alive HTTP connections sending them.
    pub http_conns: usize,
}

/// `push`: an open-loop `POST /push` generator (`batch` recipients per request, `rate`
/// requests/s, for `secs`); delivered messages/s, end-to-end latency, loss after a drain.
///
/// Each request's `data.t` is the time it was *due*, so a server that falls behind is charged
/// for the queueing it causes (no coordinated omission).
///
/// # Errors
/// When fewer clients connected than one request names.
pub async fn push(setup: &Setup, args: PushArgs) -> anyhow::Result<Value> {
    let ops_before = setup.ops().await;
    let clients = connect_clients(setup, args.conns).await;
    if clients.ids.len() < args.batch || args.batch == 0 {
        let (connected, why) = (clients.ids.len(), clients.first_failure.clone());
        clients.finish().await;
        bail!(
            "push needs at least --batch {} connected clients, found {connected} (first failure: {why:?})",
            args.batch
        );
    }
    let ids = Arc::new(clients.ids.clone());
    let pushed = Arc::new(Pushed::default());
    let total = (args.rate * args.secs).round().max(1.0) as u64;
    let (jobs_tx, jobs_rx) = unbounded::<(u64, u64)>();
    let mut senders = Vec::new();
    for w in 0..args.http_conns.max(1) {
        let addr = setup.apis[w % setup.apis.len()];
        let (jobs_rx, ids, pushed, batch): (Receiver<(u64, u64)>, _, _, _) =
            (jobs_rx.clone(), ids.clone(), pushed.clone(), args.batch);
        senders.push(async_std::task::spawn(async move {
            let mut conn = None;
            let mut recipients = Vec::with_capacity(batch);
            while let Ok((seq, t_us)) = jobs_rx.recv().await {
                recipients.clear();
                let first = seq as usize * batch;
                recipients.extend((0..batch).map(|j| ids[(first + j) % ids.len()].clone()));
                let body = push_body(&recipients, seq, t_us);
                pushed.send(&mut conn, addr, &body, batch as u64).await;
            }
        }));
    }
    let cpu_before = setup.cpu();
    let ops_connected = setup.ops().await;
    // The generator: every request is due at t0 + seq / rate.
    let lead = Duration::from_millis(50);
    let t0 = Instant::now() + lead;
    let t0_us = unix_us() + lead.as_micros() as u64;
    let period_us = 1e6 / args.rate;
    let mut queued = 0u64;
    while queued < total {
        let elapsed = Instant::now().saturating_duration_since(t0).as_secs_f64();
        let due = if Instant::now() < t0 {
            0
        } else {
            ((elapsed * args.rate) as u64 + 1).min(total)
        };
        while queued < due {
            let t_us = t0_us + (queued as f64 * period_us) as u64;
            let _ = jobs_tx.try_send((queued, t_us));
            queued += 1;
        }
        async_std::task::sleep(Duration::from_micros((period_us as u64).clamp(100, 1000))).await;
    }
    drop(jobs_tx);
    let offered_s = t0.elapsed().as_secs_f64();
    let all_sent = async_std::future::timeout(
        Duration::from_secs_f64(args.secs) + setup.drain * 4,
        futures::future::join_all(senders),
    )
    .await
    .is_ok();
    let sent_s = t0.elapsed().as_secs_f64();
    let expected = pushed.expected.load(Relaxed);
    wait_received(&clients.shared, expected, setup.drain).await;
    let cpu_after = setup.cpu();
    let busy_s = t0.elapsed().as_secs_f64();
    let ops_after = setup.ops().await;
    let shared = clients.shared.clone();
    let rss = setup.rss();
    let mut report = json!({
        "scenario": "push",
        "db_ops_connect": ops_since(ops_before, ops_connected),
        "db_ops": ops_since(ops_connected, ops_after),
        "server": setup.label,
        "conns": args.conns,
        "batch": args.batch,
        "rate": args.rate,
        "secs": args.secs,
        "http_conns": args.http_conns,
    });
    merge(&mut report, clients.report());
    let mut latencies = clients.finish().await;
    let received = shared.received.load(Relaxed);
    let last = shared.last_recv_us.load(Relaxed);
    let span_s = (last.saturating_sub(t0_us) as f64 / 1e6).max(1e-9);
    let ok = pushed.ok.load(Relaxed);
    merge(&mut report, pushed.report());
    merge(
        &mut report,
        json!({
            "requests": total,
            "all_answered": all_sent,
            "offered_s": round3(offered_s),
            "requests_per_s": round3(ok as f64 / sent_s.max(1e-9)),
            "expected": expected,
            "received": received,
            "duplicates": shared.duplicates.load(Relaxed),
            "acks": shared.acks.load(Relaxed),
            "lost": pushed.lost(received),
            "delivered_per_s": round3(received as f64 / span_s),
            "bench_cpu": cpu_share(cpu_before.0, cpu_after.0, busy_s),
            "server_cpu": cpu_share(cpu_before.1, cpu_after.1, busy_s),
            "latency_ms": summarize(&mut latencies),
            "server_rss_mb": rss.map(mb),
        }),
    );
    Ok(report)
}

/// `fanout`: `rounds` times, one push to every connected client; time until all received.
///
/// # Errors
/// When no client connected.
pub async fn fanout(setup: &Setup, conns: usize, rounds: u64) -> anyhow::Result<Value> {
    let ops_before = setup.ops().await;
    let clients = connect_clients(setup, conns).await;
    if clients.ids.is_empty() {
        let why = clients.first_failure.clone();
        clients.finish().await;
        bail!("fanout: no client connected (first failure: {why:?})");
    }
    let pushed = Pushed::default();
    let mut round_ms = Vec::new();
    let mut conns_http: Vec<Option<HttpConn>> = Vec::new();
    let cpu_before = setup.cpu();
    let ops_connected = setup.ops().await;
    let started = Instant::now();
    for round in 0..rounds {
        let before = clients.shared.received.load(Relaxed);
        let expected_before = pushed.expected.load(Relaxed);
        let t_us = unix_us();
        // The chunks of one round go out together, each on its own keep-alive connection.
        if conns_http.len() < clients.ids.len().div_ceil(MAX_RECIPIENTS) {
            conns_http.resize_with(clients.ids.len().div_ceil(MAX_RECIPIENTS), || None);
        }
        let mut sends = Vec::new();
        for (k, (chunk, conn)) in clients
            .ids
            .chunks(MAX_RECIPIENTS)
            .zip(conns_http.iter_mut())
            .enumerate()
        {
            let body = push_body(chunk, round, t_us);
            let addr = setup.apis[k % setup.apis.len()];
            let pushed = &pushed;
            sends.push(async move { pushed.send(conn, addr, &body, chunk.len() as u64).await });
        }
        futures::future::join_all(sends).await;
        let target = before + (pushed.expected.load(Relaxed) - expected_before);
        wait_received(&clients.shared, target, setup.drain).await;
        let last = clients.shared.last_recv_us.load(Relaxed);
        round_ms.push(last.saturating_sub(t_us) as f64 / 1000.0);
        async_std::task::sleep(Duration::from_millis(100)).await;
    }
    // The whole time, pauses included: the server spends the pause after a round on that
    // round's acknowledgements, which arrive after the last message did.
    let busy_s = started.elapsed().as_secs_f64();
    let cpu_after = setup.cpu();
    let ops_after = setup.ops().await;
    let shared = clients.shared.clone();
    let rss = setup.rss();
    let mut report = json!({
        "scenario": "fanout",
        "db_ops_connect": ops_since(ops_before, ops_connected),
        "db_ops": ops_since(ops_connected, ops_after),
        "server": setup.label,
        "conns": conns,
        "rounds": rounds,
    });
    merge(&mut report, clients.report());
    let mut latencies = clients.finish().await;
    let expected = pushed.expected.load(Relaxed);
    let received = shared.received.load(Relaxed);
    let mut sorted = round_ms.clone();
    sorted.sort_by(f64::total_cmp);
    merge(&mut report, pushed.report());
    merge(
        &mut report,
        json!({
            "expected": expected,
            "received": received,
            "duplicates": shared.duplicates.load(Relaxed),
            "acks": shared.acks.load(Relaxed),
            "lost": pushed.lost(received),
            "bench_cpu": cpu_share(cpu_before.0, cpu_after.0, busy_s),
            "server_cpu": cpu_share(cpu_before.1, cpu_after.1, busy_s),
            "round_ms": round_ms.iter().map(|m| round3(*m)).collect::<Vec<_>>(),
            "round_ms_median": sorted.get(sorted.len() / 2).copied().map(round3),
            "round_ms_max": sorted.last().copied().map(round3),
            "latency_ms": summarize(&mut latencies),
            "server_rss_mb": rss.map(mb),
        }),
    );
    Ok(report)
}

/// The database operations between two counts, when both were taken.
fn ops_since(before: Option<i64>, after: Option<i64>) -> Option<i64> {
    Some(after? - before?)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

fn mb(bytes: u64) -> f64 {
    round3(bytes as f64 / (1024.0 * 1024.0))
}

/// `x` rounded to three decimals, as every report figure is.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
