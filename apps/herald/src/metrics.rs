//! Metrics in the Prometheus text format (`GET /metrics`).
//!
//! Counters and gauges are plain atomics updated on the hot paths; latencies are fixed-bucket
//! histograms. Rendering reads everything once; nothing here allocates per event.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use herald_core::HubStats;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; the last slot is +Inf).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Number of observations.
    count: AtomicU64,
    /// Sum of observations, in microseconds (integer, so it can be atomic).
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.trim_end_matches(','))
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {}", self.count.load(Relaxed));
    }
}

/// Every series Herald exports. One instance per process, shared by reference.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open Socket.IO connections (authenticated or not).
    pub connections: AtomicI64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused at CONNECT (bad, stale or missing auth).
    pub auth_failures: AtomicU64,
    /// `POST /push` requests answered 200.
    pub push_requests: AtomicU64,
    /// Messages stored by pushes (one per recipient).
    pub pushed_messages: AtomicU64,
    /// Push requests refused (4xx).
    pub push_rejected: AtomicU64,
    /// Recipients whose copy could not be stored.
    pub push_failed_recipients: AtomicU64,
    /// Messages dropped by retention because they expired.
    pub retention_expired: AtomicU64,
    /// Messages dropped by retention because of the per-client cap.
    pub retention_capped: AtomicU64,
    /// Store operations that failed.
    pub store_errors: AtomicU64,
    /// Broker operations that failed.
    pub broker_errors: AtomicU64,
    /// Store round-trip latency.
    pub store_latency: Histogram,
    /// Broker round-trip latency.
    pub broker_latency: Histogram,
    /// The Redis broker's own counters and outage clock (set once when Redis is used).
    pub redis: std::sync::OnceLock<std::sync::Arc<herald_broker_redis::BrokerStats>>,
    /// Webhook deliveries and the outbox.
    pub webhook: crate::webhook::WebhookMetrics,
}

/// The engine counters ([`HubStats`]) of one shard, published by its task after each turn
/// and read when rendering: plain atomics, so no shard takes a lock to publish.
#[derive(Debug, Default)]
pub struct ShardStats {
    sessions: AtomicU64,
    watchers: AtomicU64,
    deliveries: AtomicU64,
    acks: AtomicU64,
    redeliveries: AtomicU64,
    kicks: AtomicU64,
    ack_timeouts: AtomicU64,
    store_errors: AtomicU64,
    broker_errors: AtomicU64,
}

impl ShardStats {
    /// The pairs of (published counter, its value in `s`), in one place for both directions.
    fn fields<'a>(&'a self, s: &'a mut HubStats) -> [(&'a AtomicU64, &'a mut u64); 9] {
        [
            (&self.sessions, &mut s.sessions),
            (&self.watchers, &mut s.watchers),
            (&self.deliveries, &mut s.deliveries),
            (&self.acks, &mut s.acks),
            (&self.redeliveries, &mut s.redeliveries),
            (&self.kicks, &mut s.kicks),
            (&self.ack_timeouts, &mut s.ack_timeouts),
            (&self.store_errors, &mut s.store_errors),
            (&self.broker_errors, &mut s.broker_errors),
        ]
    }

    /// Publishes the shard's counters.
    pub fn publish(&self, stats: HubStats) {
        let mut stats = stats;
        for (published, value) in self.fields(&mut stats) {
            published.store(*value, Relaxed);
        }
    }

    /// The counters of every shard in `shards`, summed.
    pub fn total(shards: &[ShardStats]) -> HubStats {
        let mut sum = HubStats::default();
        for shard in shards {
            for (published, value) in shard.fields(&mut sum) {
                *value += published.load(Relaxed);
            }
        }
        sum
    }
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The whole exposition, in Prometheus text format 0.0.4.
    pub fn render(&self, node: &str, engine: HubStats) -> String {
        let mut out = String::with_capacity(4096);
        let node_label = format!("node=\"{}\",", escape(node));
        let nl = node_label.trim_end_matches(',');
        let mut series = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{{nl}}} {value}");
        };
        let c = |a: &AtomicU64| a.load(Relaxed).to_string();
        series(
            "herald_connections",
            "gauge",
            "Open Socket.IO connections.",
            self.connections.load(Relaxed).to_string(),
        );
        series(
            "herald_connections_total",
            "counter",
            "Socket.IO connections accepted.",
            c(&self.connections_total),
        );
        series(
            "herald_auth_failures_total",
            "counter",
            "Connections refused at CONNECT.",
            c(&self.auth_failures),
        );
        series(
            "herald_sessions",
            "gauge",
            "Live sessions on this node.",
            engine.sessions.to_string(),
        );
        series(
            "herald_watchers",
            "gauge",
            "GET /watch requests waiting on this node.",
            engine.watchers.to_string(),
        );
        series(
            "herald_push_requests_total",
            "counter",
            "POST /push requests answered 200.",
            c(&self.push_requests),
        );
        series(
            "herald_pushed_messages_total",
            "counter",
            "Messages stored by pushes, one per recipient.",
            c(&self.pushed_messages),
        );
        series(
            "herald_push_rejected_total",
            "counter",
            "Push requests refused as invalid.",
            c(&self.push_rejected),
        );
        series(
            "herald_push_failed_recipients_total",
            "counter",
            "Recipients whose copy could not be stored.",
            c(&self.push_failed_recipients),
        );
        series(
            "herald_deliveries_total",
            "counter",
            "Messages sent to clients.",
            engine.deliveries.to_string(),
        );
        series(
            "herald_acks_total",
            "counter",
            "Messages acknowledged by clients.",
            engine.acks.to_string(),
        );
        series(
            "herald_redeliveries_total",
            "counter",
            "Messages delivered again after an unacknowledged delivery.",
            engine.redeliveries.to_string(),
        );
        series(
            "herald_kicks_total",
            "counter",
            "Sessions replaced by a newer login.",
            engine.kicks.to_string(),
        );
        series(
            "herald_ack_timeouts_total",
            "counter",
            "Sessions closed because they did not acknowledge in time.",
            engine.ack_timeouts.to_string(),
        );
        series(
            "herald_engine_store_errors_total",
            "counter",
            "Store calls of the engine that failed (each is retried).",
            engine.store_errors.to_string(),
        );
        series(
            "herald_engine_broker_errors_total",
            "counter",
            "Broker calls of the engine that failed (each is retried).",
            engine.broker_errors.to_string(),
        );
        series(
            "herald_retention_expired_total",
            "counter",
            "Messages dropped because their time to live ran out.",
            c(&self.retention_expired),
        );
        series(
            "herald_retention_capped_total",
            "counter",
            "Messages dropped by the per-client cap.",
            c(&self.retention_capped),
        );
        series(
            "herald_store_errors_total",
            "counter",
            "Store operations that failed.",
            c(&self.store_errors),
        );
        series(
            "herald_broker_errors_total",
            "counter",
            "Broker operations that failed.",
            c(&self.broker_errors),
        );
        if let Some(redis) = self.redis.get() {
            let r = redis.report();
            for (name, kind, help, value) in [
                (
                    "herald_broker_up",
                    "gauge",
                    "1 while Redis answers, 0 during an outage.",
                    u64::from(r.down_for.is_none()).to_string(),
                ),
                (
                    "herald_broker_down_seconds_total",
                    "counter",
                    "Time without Redis since start, the present outage included.",
                    r.down_total.as_secs_f64().to_string(),
                ),
                (
                    "herald_broker_reconnects_total",
                    "counter",
                    "Times the Redis subscriber connection came back after a loss.",
                    r.reconnects.to_string(),
                ),
                (
                    "herald_broker_failovers_total",
                    "counter",
                    "Times the Redis master moved to another server (Sentinel).",
                    r.failovers.to_string(),
                ),
                (
                    "herald_broker_notifications_dropped_total",
                    "counter",
                    "Notifications dropped because too many waited for Redis.",
                    r.dropped.to_string(),
                ),
                (
                    "herald_broker_notifications_failed_total",
                    "counter",
                    "Notifications sent that Redis did not take.",
                    r.failed.to_string(),
                ),
                (
                    "herald_broker_pending",
                    "gauge",
                    "Notifications waiting for Redis.",
                    r.pending.to_string(),
                ),
                (
                    "herald_broker_pending_bytes",
                    "gauge",
                    "Payload bytes of the notifications waiting for Redis.",
                    r.pending_bytes.to_string(),
                ),
            ] {
                series(name, kind, help, value);
            }
        }
        let w = &self.webhook;
        for (name, kind, help, value) in [
            (
                "herald_webhook_events_sent_total",
                "counter",
                "Webhook events delivered (answered 2xx).",
                c(&w.sent),
            ),
            (
                "herald_webhook_failed_attempts_total",
                "counter",
                "Webhook POSTs that failed (non-2xx, timeout, connection error); each is retried.",
                c(&w.failed_attempts),
            ),
            (
                "herald_webhook_events_dropped_outbox_full_total",
                "counter",
                "Webhook events not recorded because the outbox held webhook.max_outbox.",
                c(&w.dropped_full),
            ),
            (
                "herald_webhook_events_dropped_max_age_total",
                "counter",
                "Webhook events given up after webhook.max_age_secs.",
                c(&w.dropped_age),
            ),
            (
                "herald_webhook_outbox_depth",
                "gauge",
                "Webhook events waiting in the outbox (cluster-wide with MongoDB).",
                c(&w.depth),
            ),
            (
                "herald_webhook_oldest_pending_seconds",
                "gauge",
                "Age of the oldest webhook event waiting in the outbox.",
                c(&w.oldest_age_secs),
            ),
        ] {
            series(name, kind, help, value);
        }
        for (name, help, h) in [
            (
                "herald_store_latency_seconds",
                "Store round-trip latency.",
                &self.store_latency,
            ),
            (
                "herald_broker_latency_seconds",
                "Broker round-trip latency.",
                &self.broker_latency,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            h.render(&mut out, name, &node_label);
        }
        out
    }
}

/// Escapes a label value per the text format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the exposition the way a scraper would: every sample line is `name{labels} value`
    /// with a numeric value, and every sample's family was declared by `# TYPE`.
    fn samples(text: &str) -> Vec<(String, f64)> {
        let mut declared = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| declared.contains(*f))
                .unwrap_or(name);
            assert!(declared.contains(family), "undeclared {name}");
            out.push((series.to_string(), value.parse().expect("numeric value")));
        }
        out
    }

    #[test]
    fn shard_stats_sum_every_field() {
        let shards = [ShardStats::default(), ShardStats::default()];
        let one = HubStats {
            sessions: 1,
            watchers: 9,
            deliveries: 2,
            acks: 3,
            redeliveries: 4,
            kicks: 5,
            ack_timeouts: 6,
            store_errors: 7,
            broker_errors: 8,
        };
        shards[0].publish(one);
        shards[1].publish(one);
        shards[1].publish(one); // publishing again replaces, never adds
        let total = ShardStats::total(&shards);
        assert_eq!(total.broker_errors, 16);
        assert_eq!(total.sessions, 2);
        assert_eq!(total.ack_timeouts, 12);
    }

    #[test]
    fn renders_every_series_with_the_node_label() {
        let m = Metrics::default();
        Metrics::inc(&m.push_requests);
        m.pushed_messages.fetch_add(3, Relaxed);
        m.store_latency.observe(Duration::from_millis(3));
        m.store_latency.observe(Duration::from_secs(9));
        let text = m.render(
            "n\"1",
            HubStats {
                sessions: 2,
                watchers: 3,
                deliveries: 5,
                acks: 4,
                redeliveries: 1,
                kicks: 1,
                ack_timeouts: 7,
                store_errors: 8,
                broker_errors: 9,
            },
        );
        let s = samples(&text);
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(
            get("herald_push_requests_total{node=\"n\\\"1\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("herald_pushed_messages_total{node=\"n\\\"1\"}"),
            Some(3.0)
        );
        assert_eq!(get("herald_sessions{node=\"n\\\"1\"}"), Some(2.0));
        assert_eq!(get("herald_watchers{node=\"n\\\"1\"}"), Some(3.0));
        assert_eq!(get("herald_kicks_total{node=\"n\\\"1\"}"), Some(1.0));
        assert_eq!(get("herald_ack_timeouts_total{node=\"n\\\"1\"}"), Some(7.0));
        assert_eq!(
            get("herald_engine_store_errors_total{node=\"n\\\"1\"}"),
            Some(8.0)
        );
        assert_eq!(
            get("herald_engine_broker_errors_total{node=\"n\\\"1\"}"),
            Some(9.0)
        );
        assert_eq!(
            get("herald_store_latency_seconds_bucket{node=\"n\\\"1\",le=\"0.0025\"}"),
            Some(0.0)
        );
        assert_eq!(
            get("herald_store_latency_seconds_bucket{node=\"n\\\"1\",le=\"0.005\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("herald_store_latency_seconds_bucket{node=\"n\\\"1\",le=\"+Inf\"}"),
            Some(2.0)
        );
        assert_eq!(
            get("herald_store_latency_seconds_count{node=\"n\\\"1\"}"),
            Some(2.0)
        );
        for needed in [
            "herald_connections",
            "herald_deliveries_total",
            "herald_acks_total",
            "herald_redeliveries_total",
            "herald_retention_expired_total",
            "herald_retention_capped_total",
            "herald_store_errors_total",
            "herald_broker_errors_total",
            "herald_broker_latency_seconds_count",
        ] {
            assert!(
                s.iter().any(|(n, _)| n.starts_with(needed)),
                "{needed} missing"
            );
        }
        assert!(
            !text.contains("herald_broker_up"),
            "no Redis series without Redis"
        );
    }

    #[test]
    fn the_redis_series_come_with_redis() {
        let m = Metrics::default();
        let stats = std::sync::Arc::new(herald_broker_redis::BrokerStats::default());
        assert!(m.redis.set(stats).is_ok());
        let s = samples(&m.render("n", HubStats::default()));
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("herald_broker_up{node=\"n\"}"), Some(1.0));
        for zero in [
            "herald_broker_down_seconds_total",
            "herald_broker_reconnects_total",
            "herald_broker_failovers_total",
            "herald_broker_notifications_dropped_total",
            "herald_broker_notifications_failed_total",
            "herald_broker_pending",
            "herald_broker_pending_bytes",
        ] {
            assert_eq!(get(&format!("{zero}{{node=\"n\"}}")), Some(0.0), "{zero}");
        }
    }
}
