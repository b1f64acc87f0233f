//! Webhooks (issue 14 step 2): facts about pushes go into the store's durable outbox
//! ([`Webhooks::record`], the one call the receipt recording makes), and a sender task on every
//! node that serves the REST API POSTs them, signed, to `[webhook] url` (`run_sender`).
//!
//! The sender leases up to `batch_max` due events every `batch_delay_ms` (at once again after
//! a full batch), POSTs `{"events":[...]}` with `x-herald-signature`, and on a 2xx marks them
//! sent; on anything else (a status, a refused connection, `timeout_ms` passing) it
//! reschedules them with exponential backoff and jitter between `retry_min_ms` and
//! `retry_max_ms`. An event older than `max_age_secs` is dropped and counted. The lease
//! (`lease_ms`, longer than `timeout_ms`) keeps other nodes off a batch while it is sent; a
//! node that dies mid-send leaves its batch to come due again when the lease runs out. So
//! delivery is at least once: receivers deduplicate by event id.
//!
//! `expired` events come from a second task on the same nodes (`run_expiry_reporter`): every
//! `expired_every_ms` it asks the store for pushes whose time to live ran out and whose expiry
//! was not reported yet, records one event per copy that slot 0 had not acknowledged (nor seen
//! recalled) by then, stamped with the expiry time, and marks the pushes reported. A crash or
//! two nodes racing between the two steps records a push's events twice: the outbox keeps an
//! event id once while it waits, and receivers deduplicate the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_std::io::ReadExt;

use herald_core::webhook::{SIGNATURE_HEADER, batch_body, sign};
use herald_core::{
    CopyState, Event, EventKind, MessageStore, NodeId, OutboxEntry, PushId, PushStatus, Receipt,
    ReceiptKind, Slot, StoreError,
};

use crate::api::unix_ms;
use crate::metrics::Metrics;

/// The `[webhook]` section, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where events are POSTed; `None` = webhooks off.
    pub url: Option<surf::Url>,
    /// The HMAC secret; always set when `url` is.
    pub secret: Option<String>,
    /// The kinds of events recorded.
    pub events: Vec<EventKind>,
    /// Most events per POST.
    pub batch_max: usize,
    /// How often the sender looks for due events (and so the longest an event waits to be
    /// batched with others).
    pub batch_delay: Duration,
    /// Time a POST may take, answer included.
    pub timeout: Duration,
    /// First wait after a failed POST.
    pub retry_min: Duration,
    /// Longest wait between two attempts.
    pub retry_max: Duration,
    /// Events older than this are dropped instead of sent.
    pub max_age: Duration,
    /// Most events waiting in the outbox; past it new ones are dropped.
    pub max_outbox: u64,
    /// How long a batch is leased to the node sending it.
    pub lease: Duration,
    /// How often a node looks for expired pushes to record their `expired` events.
    pub expired_every: Duration,
    /// The most of an answer's body the sender reads (and drops); past it the connection is
    /// not reused (its unread rest would be taken for the next answer).
    pub max_answer: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: None,
            secret: None,
            events: EventKind::ALL.to_vec(),
            batch_max: 1000,
            batch_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_age: Duration::from_secs(86_400),
            max_outbox: 1_000_000,
            lease: Duration::from_secs(60),
            expired_every: Duration::from_secs(10),
            max_answer: 64 << 10,
        }
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url.as_ref().map(redacted))
            .field(
                "secret",
                &if self.secret.is_some() {
                    "<hidden>"
                } else {
                    "<none>"
                },
            )
            .field("events", &self.events)
            .field("batch_max", &self.batch_max)
            .field("batch_delay", &self.batch_delay)
            .field("timeout", &self.timeout)
            .field("retry_min", &self.retry_min)
            .field("retry_max", &self.retry_max)
            .field("max_age", &self.max_age)
            .field("max_outbox", &self.max_outbox)
            .field("lease", &self.lease)
            .field("expired_every", &self.expired_every)
            .field("max_answer", &self.max_answer)
            .finish()
    }
}

/// `url` without a password, for logs.
fn redacted(url: &surf::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// Checks `webhook.url`: an absolute `http://` URL with a host.
///
/// # Errors
/// What was expected and what was found.
pub fn parse_url(text: &str) -> Result<surf::Url, String> {
    let shown = crate::config::redact_url(text);
    let url = surf::Url::parse(text).map_err(|e| format!("not a URL ({e}): {shown:?}"))?;
    match url.scheme() {
        "http" if url.host().is_some() => Ok(url),
        "http" => Err(format!("the URL has no host: {shown:?}")),
        "https" => Err(
            "https is not supported by this build's HTTP client (no TLS): send to a local \
             http:// endpoint (a TLS-terminating proxy) instead"
                .into(),
        ),
        other => Err(format!("expected an http:// URL, found scheme {other:?}")),
    }
}

/// The webhook counters, in [`Metrics::webhook`].
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    /// Events delivered (answered 2xx).
    pub sent: AtomicU64,
    /// POSTs that failed (non-2xx, timeout, connection error).
    pub failed_attempts: AtomicU64,
    /// Events not put in the outbox because it was full.
    pub dropped_full: AtomicU64,
    /// Events given up because they were older than `max_age_secs`.
    pub dropped_age: AtomicU64,
    /// Events waiting in the outbox (as of the sender's last look).
    pub depth: AtomicU64,
    /// Age of the oldest waiting event, seconds (as of the sender's last look).
    pub oldest_age_secs: AtomicU64,
}

/// The node's webhook handle: its configuration and counters.
#[derive(Debug)]
pub struct Webhooks {
    /// The `[webhook]` section.
    pub config: WebhookConfig,
    /// Where the counters go.
    metrics: Arc<Metrics>,
}

impl Webhooks {
    /// The handle for `config`, counting into `metrics`.
    pub fn new(config: WebhookConfig, metrics: Arc<Metrics>) -> Webhooks {
        Webhooks { config, metrics }
    }

    /// Whether a URL is configured.
    pub fn enabled(&self) -> bool {
        self.config.url.is_some()
    }

    /// The events of `receipts` recorded at `at_ms` (delivered, acked), for [`Webhooks::record`];
    /// none when webhooks are off, so a node without them builds nothing per receipt.
    pub fn receipt_events(&self, receipts: &[Receipt], at_ms: u64) -> Vec<Event> {
        if !self.enabled() {
            return Vec::new();
        }
        receipts
            .iter()
            .map(|r| {
                let kind = match r.kind {
                    ReceiptKind::Delivered => EventKind::Delivered,
                    ReceiptKind::Acked => EventKind::Acked,
                };
                Event::new(kind, r.push.as_str(), r.client.clone(), r.slot, r.id, at_ms)
            })
            .collect()
    }

    /// Records facts as webhook events: the one call the receipt recording makes, with every
    /// fact of a batch window at once (one store call). Does nothing when webhooks are off;
    /// keeps only the kinds of `webhook.events`. Events past `webhook.max_outbox` are dropped,
    /// counted (`herald_webhook_events_dropped_total{reason="outbox_full"}`) and logged. When
    /// it returns `Ok`, the events are durable in the store's outbox.
    ///
    /// # Errors
    /// When the store cannot answer: the caller logs it (the facts themselves are recorded
    /// by then; their events are lost).
    pub async fn record<S: MessageStore>(
        &self,
        store: &S,
        events: &[Event],
    ) -> Result<(), StoreError> {
        if !self.enabled() {
            return Ok(());
        }
        let wanted: Vec<Event> = events
            .iter()
            .filter(|e| self.config.events.contains(&e.kind))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let added = store.outbox_add(&wanted, self.config.max_outbox).await?;
        if added.dropped > 0 {
            self.metrics
                .webhook
                .dropped_full
                .fetch_add(added.dropped, Relaxed);
            log::warn!(
                "webhook outbox full (webhook.max_outbox = {}): dropped {} events",
                self.config.max_outbox,
                added.dropped
            );
        }
        Ok(())
    }
}

/// Events of `kind` at `at_ms`, one per copy of `push` that `status` (slot 0's) shows in
/// `state`, with `slot` 0: recalls and expiries are about a copy in every slot.
pub fn copy_events(
    push: PushId,
    status: &PushStatus,
    state: CopyState,
    kind: EventKind,
    at_ms: u64,
) -> Vec<Event> {
    status
        .copies
        .iter()
        .filter(|c| c.state == state)
        .map(|c| {
            Event::new(
                kind,
                push.as_str(),
                c.client.clone(),
                Slot::default(),
                c.id,
                at_ms,
            )
        })
        .collect()
}

/// Pushes whose expiry one store call lists at most.
const EXPIRED_BATCH: usize = 100;

/// Records the `expired` events of every push whose time to live ran out by `now_ms` and whose
/// expiry was not reported yet, then marks those pushes reported; how many pushes it
/// reported. A push the store no longer knows is marked without events.
///
/// # Errors
/// When the store cannot answer: what was not marked is listed again next time.
pub async fn report_expired<S: MessageStore>(
    webhooks: &Webhooks,
    store: &S,
    now_ms: u64,
) -> Result<usize, StoreError> {
    let mut reported = 0;
    loop {
        let pushes = store.expired_pushes(now_ms, EXPIRED_BATCH).await?;
        let mut events = Vec::new();
        for push in &pushes {
            if let Some(status) = store.push_status(*push, Slot::default(), now_ms).await? {
                let expired = CopyState::Expired;
                let at = status.expires_ms;
                events.extend(copy_events(*push, &status, expired, EventKind::Expired, at));
            }
        }
        webhooks.record(store, &events).await?;
        store.expiry_reported(&pushes).await?;
        reported += pushes.len();
        if pushes.len() < EXPIRED_BATCH {
            return Ok(reported);
        }
    }
}

/// Reports expired pushes every `webhook.expired_every_ms` until the process ends; returns at
/// once when webhooks are off or `webhook.events` leaves `expired` out. Runs on nodes that
/// serve the REST API, like the sender.
pub async fn run_expiry_reporter<S: MessageStore>(webhooks: Arc<Webhooks>, store: Arc<S>) {
    if !webhooks.enabled() || !webhooks.config.events.contains(&EventKind::Expired) {
        return;
    }
    loop {
        async_std::task::sleep(webhooks.config.expired_every).await;
        match report_expired(&webhooks, &*store, unix_ms()).await {
            Ok(0) => {}
            Ok(n) => log::debug!("webhooks: recorded the expired events of {n} pushes"),
            Err(e) => log::warn!("webhooks: cannot record expired events now: {e}"),
        }
    }
}

/// The wait before the next attempt after `attempts` failed ones (1 = the first failure):
/// `retry_min` doubled per earlier failure, at most `retry_max`, then "equal jitter" from
/// `random`: half of it fixed, the other half random, so that nodes and events spread out.
pub fn backoff(attempts: u32, retry_min: Duration, retry_max: Duration, random: u64) -> Duration {
    let min = u64::try_from(retry_min.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let max = u64::try_from(retry_max.as_millis())
        .unwrap_or(u64::MAX)
        .max(min);
    let shift = attempts.saturating_sub(1).min(40);
    let base = min.saturating_mul(1u64 << shift).min(max);
    let half = base / 2;
    Duration::from_millis(base - half + random % (half + 1))
}

/// A random number for the jitter (0 when the OS has none: no jitter then).
fn random() -> u64 {
    getrandom::u64().unwrap_or(0)
}

/// What one POST came to.
enum Outcome {
    /// Answered 2xx.
    Sent,
    /// Anything else, said in a few words for the log.
    Failed(String),
}

/// POSTs `body` signed.
async fn post(client: &mut surf::Client, cfg: &WebhookConfig, body: String) -> Outcome {
    let (Some(url), Some(secret)) = (&cfg.url, &cfg.secret) else {
        return Outcome::Failed("webhooks are off".into());
    };
    let sig = sign(secret.as_bytes(), unix_ms() / 1000, body.as_bytes());
    let req = surf::post(url.clone())
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sig)
        .header("user-agent", concat!("herald/", env!("CARGO_PKG_VERSION")))
        .body_string(body)
        .build();
    let exchange = async {
        let mut res = client.send(req).await?;
        // The answer is read to its end (and dropped) before its connection goes back to the
        // pool: a body left unread would be taken for the start of the next answer on it.
        let mut sink = Vec::new();
        let read = (&mut res)
            .take(cfg.max_answer as u64 + 1)
            .read_to_end(&mut sink)
            .await?;
        Ok::<_, surf::Error>((res.status(), read > cfg.max_answer))
    };
    match async_std::future::timeout(cfg.timeout, exchange).await {
        Err(_) => Outcome::Failed(format!("no answer within {:?}", cfg.timeout)),
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Ok(Ok((status, too_long))) => {
            if too_long {
                // Its connection still holds the rest: a new client, so it is never reused.
                log::warn!(
                    "webhooks: an answer longer than {} bytes (webhook.max_answer_bytes) was cut \
                     off",
                    cfg.max_answer
                );
                *client = surf::Client::new();
            }
            if status.is_success() {
                Outcome::Sent
            } else {
                Outcome::Failed(format!("answered {status}"))
            }
        }
    }
}

/// Sends due events until the process ends: see the module docs. Runs on nodes that serve
/// the REST API, when a URL is configured.
pub async fn run_sender<S: MessageStore>(webhooks: Arc<Webhooks>, store: Arc<S>, node: NodeId) {
    let cfg = &webhooks.config;
    let Some(url) = &cfg.url else {
        return;
    };
    log::info!(
        "webhooks: sending {:?} events to {}",
        cfg.events.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        redacted(url)
    );
    let mut client = surf::Client::new();
    let m = &webhooks.metrics.webhook;
    let mut last_stats = 0u64;
    loop {
        let now = unix_ms();
        if now.saturating_sub(last_stats) >= 1000 {
            last_stats = now;
            match store.outbox_stats().await {
                Ok(s) => {
                    m.depth.store(s.depth, Relaxed);
                    let age = s.oldest_ts.map_or(0, |t| now.saturating_sub(t) / 1000);
                    m.oldest_age_secs.store(age, Relaxed);
                }
                Err(e) => log::warn!("webhooks: cannot read the outbox size: {e}"),
            }
        }
        let leased = match store
            .outbox_lease(now, cfg.batch_max, cfg.lease, &node)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                log::warn!("webhooks: cannot read the outbox: {e}");
                async_std::task::sleep(cfg.batch_delay).await;
                continue;
            }
        };
        let full = leased.len() >= cfg.batch_max;
        if !leased.is_empty() {
            send_batch(&mut client, &webhooks, &*store, now, leased).await;
        }
        if !full {
            async_std::task::sleep(cfg.batch_delay).await;
        }
    }
}

/// Sends one leased batch: drops the events past their age, POSTs the others, and marks them
/// sent or reschedules them.
async fn send_batch<S: MessageStore>(
    client: &mut surf::Client,
    webhooks: &Webhooks,
    store: &S,
    now: u64,
    leased: Vec<OutboxEntry>,
) {
    let cfg = &webhooks.config;
    let m = &webhooks.metrics.webhook;
    let max_age = u64::try_from(cfg.max_age.as_millis()).unwrap_or(u64::MAX);
    let (old, live): (Vec<OutboxEntry>, Vec<OutboxEntry>) = leased
        .into_iter()
        .partition(|e| now.saturating_sub(e.event.ts) > max_age);
    if !old.is_empty() {
        let ids: Vec<_> = old.iter().map(|e| e.event.id.clone()).collect();
        match store.outbox_done(&ids).await {
            Ok(()) => {
                m.dropped_age.fetch_add(old.len() as u64, Relaxed);
                log::warn!(
                    "webhooks: gave up {} events older than webhook.max_age_secs ({} s), after \
                     up to {} attempts",
                    old.len(),
                    cfg.max_age.as_secs(),
                    old.iter().map(|e| e.attempts).max().unwrap_or(0)
                );
            }
            Err(e) => log::warn!("webhooks: cannot drop expired events: {e}"),
        }
    }
    if live.is_empty() {
        return;
    }
    let ids: Vec<_> = live.iter().map(|e| e.event.id.clone()).collect();
    let body = batch_body(live.iter().map(|e| &e.event));
    match post(client, cfg, body).await {
        Outcome::Sent => {
            m.sent.fetch_add(live.len() as u64, Relaxed);
            log::debug!("webhooks: sent {} events", live.len());
            if let Err(e) = store.outbox_done(&ids).await {
                // They come due again after the lease: sent twice, which receivers allow.
                log::warn!(
                    "webhooks: sent {} events but cannot mark them: {e}",
                    ids.len()
                );
            }
        }
        Outcome::Failed(why) => {
            Metrics::inc(&m.failed_attempts);
            let attempts = live.iter().map(|e| e.attempts).max().unwrap_or(0) + 1;
            let wait = backoff(attempts, cfg.retry_min, cfg.retry_max, random());
            log::warn!(
                "webhooks: POST of {} events failed ({why}); attempt {attempts}, next in {wait:?}",
                live.len()
            );
            let next = unix_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(0));
            if let Err(e) = store.outbox_retry(&ids, next).await {
                log::warn!("webhooks: cannot reschedule events: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let (min, max) = (Duration::from_millis(1000), Duration::from_millis(10_000));
        for (attempts, base) in [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (4, 8000),
            (5, 10_000),
            (60, 10_000),
        ] {
            let lo = backoff(attempts, min, max, 0);
            let hi = backoff(attempts, min, max, u64::MAX - 1);
            assert_eq!(
                lo,
                Duration::from_millis(base - base / 2),
                "attempt {attempts}"
            );
            assert!(
                hi <= Duration::from_millis(base) && hi >= lo,
                "attempt {attempts}: {hi:?}"
            );
            for r in [1, 7, 123_456_789] {
                let d = backoff(attempts, min, max, r);
                assert!(d >= lo && d <= Duration::from_millis(base));
            }
        }
        assert_eq!(backoff(0, min, max, 0), Duration::from_millis(500));
    }

    fn ev(kind: EventKind, n: u64) -> Event {
        Event::new(
            kind,
            "p1",
            herald_core::ClientId::new("u1").unwrap(),
            herald_core::Slot::new(0).unwrap(),
            herald_core::MessageId(n),
            1_764_000_000_000 + n,
        )
    }

    #[test]
    fn record_keeps_the_configured_kinds_and_counts_what_the_bound_drops() {
        let store = herald_core::MemoryStore::new(herald_core::Retention::default());
        let metrics = Arc::new(Metrics::default());
        let evs = [
            ev(EventKind::Delivered, 1),
            ev(EventKind::Acked, 1),
            ev(EventKind::Acked, 1), // the same fact twice
            ev(EventKind::Expired, 2),
        ];
        // Off: nothing recorded.
        let off = Webhooks::new(WebhookConfig::default(), metrics.clone());
        async_std::task::block_on(off.record(&store, &evs)).unwrap();
        let depth = |s: &herald_core::MemoryStore| {
            async_std::task::block_on(s.outbox_stats()).unwrap().depth
        };
        assert_eq!(depth(&store), 0);
        let on = Webhooks::new(
            WebhookConfig {
                url: Some(parse_url("http://127.0.0.1:9/").unwrap()),
                secret: Some("s".into()),
                events: vec![EventKind::Acked, EventKind::Expired],
                max_outbox: 1,
                ..WebhookConfig::default()
            },
            metrics.clone(),
        );
        async_std::task::block_on(on.record(&store, &evs)).unwrap();
        assert_eq!(
            depth(&store),
            1,
            "acked kept, delivered filtered, expired past the bound"
        );
        assert_eq!(metrics.webhook.dropped_full.load(Relaxed), 1);
        let leased = async_std::task::block_on(store.outbox_lease(
            u64::MAX / 2,
            10,
            Duration::from_secs(1),
            &NodeId::new("n").unwrap(),
        ))
        .unwrap();
        assert_eq!(leased[0].event, evs[1]);
    }

    #[test]
    fn urls_must_be_plain_http_with_a_host() {
        assert!(parse_url("http://127.0.0.1:9/hook").is_ok());
        assert!(parse_url("http://user:pw@example.com/x?y=1").is_ok());
        for (bad, says) in [
            ("https://example.com/", "https is not supported"),
            ("ftp://example.com/", "expected an http:// URL"),
            ("example.com/hook", "not a URL"),
            ("http://", "not a URL"),
            ("", "not a URL"),
        ] {
            let err = parse_url(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let url = parse_url("http://user:pw-secret@h/x").unwrap();
        assert!(!redacted(&url).contains("pw-secret"));
        assert!(
            !parse_url("ftp://u:pw-secret@h")
                .unwrap_err()
                .contains("pw-secret")
        );
    }
}
