//! The REST API (role `api`): `POST /push`, `GET /queues/:id`, `GET /watch/:id`,
//! `GET /healthy`, `GET /apis`, `GET /metrics`, on tide.
//!
//! Errors always have the shape `{"ok":0,"errors":[...]}` with every problem found, are logged
//! once at `info`, and change nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_std::io::ReadExt;
use herald_core::{Broker, ClientId, MessageId, MessageStore, Slot, StoreError};
use serde_json::json;
use subtle::ConstantTimeEq;
use tide::{Request, Response, StatusCode};

use crate::metrics::{EngineCounts, Metrics};
use crate::subs::{Subscriptions, Watchers};

/// Everything the REST handlers need, shared by all requests.
pub struct ApiState<S, B> {
    /// The queues.
    pub store: Arc<S>,
    /// Subscriptions, for watchers, and the broker, for notifications.
    pub subs: Arc<Subscriptions<B>>,
    /// Waiting watch requests.
    pub watchers: Arc<Watchers>,
    /// Metrics of this node.
    pub metrics: Arc<Metrics>,
    /// The engine's counts for `/metrics`.
    pub engine_counts: Arc<dyn Fn() -> EngineCounts + Send + Sync>,
    /// Accepted API keys; empty = none needed.
    pub keys: Vec<String>,
    /// Largest accepted body, bytes.
    pub max_body: usize,
    /// This node's name, for metrics.
    pub node: String,
}

/// The state tide hands to every handler.
pub type State<S, B> = Arc<ApiState<S, B>>;

/// Wall-clock time in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Adds the REST routes to `app`.
pub fn routes<S: MessageStore, B: Broker>(app: &mut tide::Server<State<S, B>>) {
    app.at("/push").post(push::<S, B>);
    app.at("/queues/:id").get(queues::<S, B>);
    app.at("/watch/:id").get(watch::<S, B>);
    app.at("/healthy").get(healthy::<S, B>);
    app.at("/apis").get(apis);
    app.at("/metrics").get(metrics::<S, B>);
}

/// An answer `{"ok":0,"errors":[...]}` with `status`.
fn errors(status: StatusCode, errors: Vec<String>) -> Response {
    let mut res = Response::new(status);
    res.set_body(json!({ "ok": 0, "errors": errors }));
    res
}

/// An answer with a JSON body and status 200.
fn ok(body: serde_json::Value) -> Response {
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(body);
    res
}

/// Checks the bearer key when keys are configured.
fn authorized<S, B>(req: &Request<State<S, B>>) -> bool {
    let keys = &req.state().keys;
    if keys.is_empty() {
        return true;
    }
    let Some(given) = req
        .header("authorization")
        .and_then(|h| h.as_str().strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    // Compare against every key, without stopping early, in constant time per key.
    keys.iter().fold(false, |found, k| {
        found | bool::from(k.as_bytes().ct_eq(given.as_bytes()))
    })
}

/// Reads the body up to `max` bytes; `Err` is the answer to give instead.
async fn read_body<S, B>(req: &mut Request<State<S, B>>, max: usize) -> Result<Vec<u8>, Response> {
    let too_large = || {
        errors(
            StatusCode::PayloadTooLarge,
            vec![format!("request body is larger than {max} bytes")],
        )
    };
    if req.len().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let body = req.take_body();
    let mut buf = Vec::new();
    let mut limited = body.take(max as u64 + 1);
    limited.read_to_end(&mut buf).await.map_err(|e| {
        errors(
            StatusCode::BadRequest,
            vec![format!("could not read the body: {e}")],
        )
    })?;
    if buf.len() > max {
        return Err(too_large());
    }
    Ok(buf)
}

async fn push<S: MessageStore, B: Broker>(mut req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    if !authorized(&req) {
        Metrics::inc(&state.metrics.push_rejected);
        log::info!("push refused: missing or wrong API key");
        return Ok(errors(
            StatusCode::Unauthorized,
            vec!["missing or wrong API key (Authorization: Bearer <key>)".into()],
        ));
    }
    let json_type = req
        .content_type()
        .is_some_and(|m| m.essence() == "application/json");
    if !json_type {
        Metrics::inc(&state.metrics.push_rejected);
        log::info!("push refused: content type is not application/json");
        return Ok(errors(
            StatusCode::UnsupportedMediaType,
            vec!["Content-Type must be application/json".into()],
        ));
    }
    let body = match read_body(&mut req, state.max_body).await {
        Ok(b) => b,
        Err(res) => {
            Metrics::inc(&state.metrics.push_rejected);
            log::info!("push refused: body over {} bytes", state.max_body);
            return Ok(res);
        }
    };
    let push = match herald_core::push::parse_push(&body) {
        Ok(p) => p,
        Err(errs) => {
            Metrics::inc(&state.metrics.push_rejected);
            let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
            log::info!("push refused: {}", errs.join("; "));
            return Ok(errors(StatusCode::BadRequest, errs));
        }
    };
    let started = Instant::now();
    let now_ms = unix_ms();
    let result = state
        .store
        .append(&push.message, &push.recipients, now_ms)
        .await;
    state.metrics.store_latency.observe(started.elapsed());
    let results = match result {
        Ok(r) => r,
        Err(e) => {
            Metrics::inc(&state.metrics.store_errors);
            log::warn!("push failed, store down: {e}");
            return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()]));
        }
    };
    let mut sent = 0u64;
    let mut failed = Vec::new();
    let mut notify = Vec::with_capacity(results.len());
    for (client, r) in push.recipients.iter().zip(results) {
        match r {
            Ok(id) => {
                sent += 1;
                notify.push((client.clone(), id));
            }
            Err(e) => {
                log::warn!("push to {client} failed: {e}");
                failed.push(client.as_str().to_owned());
            }
        }
    }
    if sent == 0 {
        Metrics::inc(&state.metrics.store_errors);
        state
            .metrics
            .push_failed_recipients
            .fetch_add(failed.len() as u64, Relaxed);
        return Ok(errors(
            StatusCode::ServiceUnavailable,
            vec![StoreError::Unavailable("no recipient's copy could be stored".into()).to_string()],
        ));
    }
    // Stored: the answer is 200 whatever the broker does. A failed notification only delays
    // delivery until the broker resyncs (sessions then re-read their queues).
    // The notifications of the push go out together (pipelined by the Redis broker): a push
    // to thousands of recipients must not cost thousands of broker round trips.
    let started = Instant::now();
    // Each notification carries the message, so that a session waiting for exactly this id
    // delivers it without reading it back from the store.
    let notes: Vec<_> = notify
        .into_iter()
        .map(|(client, id)| (client, push.message.to_message(id, now_ms)))
        .collect();
    if let Err(e) = state.subs.broker().notify_messages(&notes).await {
        Metrics::inc(&state.metrics.broker_errors);
        for (client, message) in &notes {
            log::warn!("notify {client} of message {} failed: {e}", message.id);
        }
    }
    state.metrics.broker_latency.observe(started.elapsed());
    Metrics::inc(&state.metrics.push_requests);
    state.metrics.pushed_messages.fetch_add(sent, Relaxed);
    state
        .metrics
        .push_failed_recipients
        .fetch_add(failed.len() as u64, Relaxed);
    let mut body = json!({ "ok": 1, "send": sent });
    if !failed.is_empty() {
        body["failed"] = json!(failed);
    }
    Ok(ok(body))
}

/// Reads an integer query parameter within bounds, or its default.
fn query_int(
    req_query: &[(String, String)],
    name: &str,
    default: i64,
    min: i64,
    max: i64,
    errs: &mut Vec<String>,
) -> i64 {
    match req_query.iter().rev().find(|(k, _)| k == name) {
        None => default,
        Some((_, v)) => match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                errs.push(format!(
                    "{name}: expected a whole number from {min} to {max}, found {v:?}"
                ));
                default
            }
        },
    }
}

fn query_pairs<S, B>(req: &Request<State<S, B>>) -> Vec<(String, String)> {
    req.url()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn client_param<S, B>(req: &Request<State<S, B>>, errs: &mut Vec<String>) -> Option<ClientId> {
    let raw = req.param("id").unwrap_or("");
    match ClientId::new(raw) {
        Ok(c) => Some(c),
        Err(e) => {
            errs.push(format!("id: {e}"));
            None
        }
    }
}

async fn queues<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let q = query_pairs(&req);
    let client = client_param(&req, &mut errs);
    let now = unix_ms();
    let since = query_int(
        &q,
        "since",
        (now / 1000) as i64 - 300,
        0,
        i64::from(u32::MAX) * 1000,
        &mut errs,
    );
    let limit = query_int(&q, "limit", 10, 1, 1000, &mut errs);
    let (Some(client), true) = (client, errs.is_empty()) else {
        log::info!("queues refused: {}", errs.join("; "));
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let started = Instant::now();
    let r = state
        .store
        .history(&client, since as u64 * 1000, limit as usize, now)
        .await;
    state.metrics.store_latency.observe(started.elapsed());
    match r {
        Ok(messages) => Ok(ok(json!({ "ok": 1, "messages": messages }))),
        Err(e) => {
            Metrics::inc(&state.metrics.store_errors);
            Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()]))
        }
    }
}

async fn watch<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let q = query_pairs(&req);
    let client = client_param(&req, &mut errs);
    let slot = query_int(&q, "channel", 0, 0, 15, &mut errs);
    let timeout = query_int(&q, "timeout", 30_000, 0, 300_000, &mut errs);
    let (Some(client), true) = (client, errs.is_empty()) else {
        log::info!("watch refused: {}", errs.join("; "));
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let slot = Slot::new(slot).expect("checked range");
    let deadline = Instant::now() + Duration::from_millis(timeout as u64);

    // Register and subscribe before the first read, so a push landing in between still wakes us.
    let guard = state.watchers.register(&client);
    if let Err(e) = state.subs.subscribe(&client).await {
        Metrics::inc(&state.metrics.broker_errors);
        log::warn!("watch of {client}: subscribe failed, falling back to the timeout: {e}");
    }
    let answer = loop {
        let started = Instant::now();
        let r = state
            .store
            .unacked(&client, slot, MessageId::ZERO, 1, unix_ms())
            .await;
        state.metrics.store_latency.observe(started.elapsed());
        match r {
            Ok(mut found) if !found.is_empty() => {
                break ok(json!({ "ok": 1, "message": found.remove(0) }));
            }
            Ok(_) => {}
            Err(e) => {
                Metrics::inc(&state.metrics.store_errors);
                break errors(StatusCode::ServiceUnavailable, vec![e.to_string()]);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break ok(json!({ "ok": 1, "message": null }));
        }
        log::debug!("watch of {client} slot {slot}: waiting");
        // Woken by a notification, or time's up (then one last read above decides).
        let _ = async_std::future::timeout(left, guard.woken.recv()).await;
    };
    drop(guard);
    if let Err(e) = state.subs.unsubscribe(&client).await {
        log::warn!("watch of {client}: unsubscribe failed: {e}");
    }
    Ok(answer)
}

async fn healthy<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let q = query_pairs(&req);
    let timeout = query_int(&q, "timeout", 3_000, 1, 60_000, &mut errs);
    if !errs.is_empty() {
        return Ok(errors(StatusCode::BadRequest, errs));
    }
    let limit = Duration::from_millis(timeout as u64);
    let store = async_std::future::timeout(limit, state.store.ping()).await;
    let broker = async_std::future::timeout(limit, state.subs.broker().ping()).await;
    let mut problems = Vec::new();
    match store {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(e.to_string()),
        Err(_) => problems.push(format!("store did not answer within {timeout} ms")),
    }
    match broker {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(e.to_string()),
        Err(_) => problems.push(format!("broker did not answer within {timeout} ms")),
    }
    if problems.is_empty() {
        Ok(ok(json!({ "ok": 1 })))
    } else {
        log::warn!("health check failed: {}", problems.join("; "));
        Ok(errors(StatusCode::ServiceUnavailable, problems))
    }
}

async fn apis<S, B>(_req: Request<State<S, B>>) -> tide::Result
where
    S: Send + Sync + 'static,
    B: Send + Sync + 'static,
{
    Ok(ok(json!({
        "v1": ["/push", "/healthy", "/apis", "/queues", "/watch", "/metrics"]
    })))
}

async fn metrics<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state();
    let text = state.metrics.render(&state.node, (state.engine_counts)());
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(text);
    res.set_content_type("text/plain; version=0.0.4; charset=utf-8");
    Ok(res)
}
