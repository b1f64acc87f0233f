//! The REST API (role `api`): `POST /push`, `GET /queues/:id`, `GET /watch/:id`,
//! `GET /healthy`, `GET /apis`, `GET /metrics`, `GET /clients/:id` (in `clients.rs`), on tide.
//!
//! Errors always have the shape `{"ok":0,"errors":[...]}` with the problems found (at most
//! `api.max_listed_errors`, then one line counting the rest), are logged once at `info`, and
//! change nothing. Unknown routes and methods get that shape too ([`json_errors`]).
//!
//! With API keys configured, every route but `/healthy` needs one ([`keyed`]).
//!
//! Answers carrying messages are written by hand, not through `serde_json::Value`: `data` goes
//! out byte for byte as it was pushed (a `Value` would round big integers and long decimals to
//! `f64`), and `/queues` stops adding messages before `api.max_answer` bytes.
//!
//! The route groups are in submodules: `push` (`POST /push`), `queues` (`/queues`, `/watch`),
//! `receipts` (`GET` and `DELETE /push/:push_id`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_core::{Broker, ClientId, HubStats, IdempotencyTimes, MessageStore, PushIds};
use serde_json::json;
use subtle::ConstantTimeEq;
use tide::{Next, Request, Response, StatusCode};

use crate::metrics::Metrics;
use crate::shutdown::Inflight;
use crate::watch::Watch;

mod push;
mod queues;
mod receipts;

/// Default of `api.max_body`: the largest accepted body, bytes.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Default of `api.max_answer`: the largest `/queues` answer, bytes.
pub const DEFAULT_MAX_ANSWER: usize = 4 << 20;
/// Default of `api.max_listed_errors`: problems listed in an error answer.
pub const DEFAULT_MAX_LISTED_ERRORS: usize = 20;
/// Defaults of `api.idempotency_ttl_secs` (24 h) and `api.idempotency_lease_ms` (60 s).
pub const DEFAULT_IDEMPOTENCY: IdempotencyTimes = IdempotencyTimes {
    ttl: Duration::from_secs(24 * 3600),
    lease: Duration::from_secs(60),
};

/// This node's push id source: 64 random bits drawn once, so that no two nodes make the
/// same id.
///
/// # Errors
/// When the system has no randomness to give.
pub fn node_push_ids() -> anyhow::Result<std::sync::Mutex<PushIds>> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the push id source: {e}"))?;
    Ok(std::sync::Mutex::new(PushIds::new(u64::from_le_bytes(
        bytes,
    ))))
}

/// Everything the REST handlers need, shared by all requests.
pub struct ApiState<S, B> {
    /// The queues.
    pub store: Arc<S>,
    /// The broker, for notifications.
    pub broker: Arc<B>,
    /// Starts watching a client's queue (the engine's [`crate::driver::Node::watch`]).
    pub watch: Arc<dyn Fn(&ClientId) -> Watch + Send + Sync>,
    /// Metrics of this node.
    pub metrics: Arc<Metrics>,
    /// Store writes under way, which a graceful stop waits for (pushes' appends among them).
    pub inflight: Arc<Inflight>,
    /// The engine's counts for `/metrics`.
    pub engine_counts: Arc<dyn Fn() -> HubStats + Send + Sync>,
    /// Accepted API keys; empty = none needed.
    pub keys: Vec<String>,
    /// Largest accepted body, bytes.
    pub max_body: usize,
    /// Largest `/queues` answer, bytes (one message always comes, whatever its size).
    pub max_answer: usize,
    /// Problems listed in an error answer before one line counts the rest.
    pub max_listed_errors: usize,
    /// This node's name, for metrics.
    pub node: String,
    /// Names this node's pushes.
    pub push_ids: std::sync::Mutex<PushIds>,
    /// `Idempotency-Key` time to live and lease.
    pub idempotency: IdempotencyTimes,
    /// Where recalls become webhook events (disabled without `webhook.url`).
    pub webhooks: Arc<crate::webhook::Webhooks>,
}

impl<S: MessageStore, B: Broker> ApiState<S, B> {
    /// A state on `store` and `broker` with no API key, the default limits (`api.max_body`
    /// 1 MiB, `api.max_answer` 4 MiB, 20 listed errors) and no engine (a watch is never
    /// woken: it reads once and at its timeout): what tests and tools serve the routes with.
    /// The node sets every field from its configuration instead.
    pub fn new(store: Arc<S>, broker: Arc<B>, node: &str) -> Self {
        ApiState {
            store,
            broker,
            watch: Arc::new(|_: &ClientId| Watch::idle()),
            metrics: Arc::new(Metrics::default()),
            inflight: Arc::new(Inflight::default()),
            engine_counts: Arc::new(HubStats::default),
            keys: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
            max_answer: DEFAULT_MAX_ANSWER,
            max_listed_errors: DEFAULT_MAX_LISTED_ERRORS,
            node: node.to_owned(),
            push_ids: std::sync::Mutex::new(PushIds::new(0x5eed)),
            idempotency: DEFAULT_IDEMPOTENCY,
            webhooks: Arc::new(crate::webhook::Webhooks::new(
                crate::webhook::WebhookConfig::default(),
                Arc::new(Metrics::default()),
            )),
        }
    }
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

/// Adds the REST routes to `app`. Every one but `/healthy` needs an API key when keys are
/// configured: a reader of `/queues` or `/watch` reads every client's messages.
pub fn routes<S: MessageStore, B: Broker>(app: &mut tide::Server<State<S, B>>) {
    app.at("/push").post(keyed("push", push::push::<S, B>));
    app.at("/queues/:id")
        .get(keyed("queues", queues::queues::<S, B>));
    app.at("/watch/:id")
        .get(keyed("watch", queues::watch::<S, B>));
    health(app);
    app.at("/apis").get(keyed("apis", apis::<S, B>));
    app.at("/metrics").get(keyed("metrics", metrics::<S, B>));
    crate::console::routes(app);
    // The client view (issue 14).
    app.at("/clients/:id")
        .get(keyed("clients", crate::clients::client::<S, B>));
    // Issue 14 (receipts): a push's status and its recall.
    app.at("/push/:push_id")
        .get(keyed("status", receipts::push_status::<S, B>))
        .delete(keyed("recall", receipts::recall::<S, B>));
}

/// Adds `GET /healthy` alone: the connector listener serves it too, for load balancers and
/// readiness probes of connector-only nodes.
pub fn health<S: MessageStore, B: Broker>(app: &mut tide::Server<State<S, B>>) {
    app.at("/healthy").get(healthy::<S, B>);
}

/// A boxed handler future, as tide's function endpoints and middleware take them.
type Handled<'a> = Pin<Box<dyn Future<Output = tide::Result> + Send + 'a>>;

/// `handler`, refused with 401 unless the request carries a configured API key.
fn keyed<S, B, F, Fut>(
    route: &'static str,
    handler: F,
) -> impl Fn(Request<State<S, B>>) -> Handled<'static> + Clone + Send + Sync + 'static
where
    S: MessageStore,
    B: Broker,
    F: Fn(Request<State<S, B>>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = tide::Result> + Send + 'static,
{
    move |req| {
        let handler = handler.clone();
        Box::pin(async move {
            if authorized(&req) {
                return handler(req).await;
            }
            if route == "push" {
                Metrics::inc(&req.state().metrics.push_rejected);
            }
            Ok(errors(
                StatusCode::Unauthorized,
                vec!["missing or wrong API key (Authorization: Bearer <key>)".into()],
            ))
        })
    }
}

/// Gives the `{"ok":0,"errors":[...]}` shape to the empty 404 and 405 answers of `app`'s
/// router (an unknown path, a method a path does not take).
pub fn json_errors<St: Clone + Send + Sync + 'static>(app: &mut tide::Server<St>) {
    app.with(shape_router_errors::<St>);
}

fn shape_router_errors<St: Clone + Send + Sync + 'static>(
    req: Request<St>,
    next: Next<'_, St>,
) -> Handled<'_> {
    Box::pin(async move {
        let method = req.method();
        let res = next.run(req).await;
        let empty = res.len() == Some(0);
        Ok(match res.status() {
            StatusCode::NotFound if empty => errors(
                StatusCode::NotFound,
                vec!["no such route (GET /apis lists them)".into()],
            ),
            StatusCode::MethodNotAllowed if empty => {
                let mut shaped = errors(
                    StatusCode::MethodNotAllowed,
                    vec![format!("method {method} is not allowed on this route")],
                );
                if let Some(allow) = res.header("allow") {
                    shaped.insert_header("allow", allow);
                }
                shaped
            }
            _ => res,
        })
    })
}

/// An answer `{"ok":0,"errors":[...]}` with `status`.
pub(crate) fn errors(status: StatusCode, errors: Vec<String>) -> Response {
    let mut res = Response::new(status);
    // The access line says why (once per request).
    res.insert_ext(crate::logging::Refusal(errors.join("; ")));
    res.set_body(json!({ "ok": 0, "errors": errors }));
    res
}

/// An answer with a JSON body and status 200.
pub(crate) fn ok(body: serde_json::Value) -> Response {
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(body);
    res
}

/// An answer with status 200 and `json`, JSON text written by hand.
fn ok_text(json: String) -> Response {
    Response::builder(StatusCode::Ok)
        .body(json)
        .content_type(tide::http::mime::JSON)
        .build()
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

/// The `:id` path parameter, percent-decoded (what `encodeURIComponent` or Python's `quote`
/// send for `u@42`: `u%4042`), as a client id.
pub(crate) fn client_param<S, B>(
    req: &Request<State<S, B>>,
    errs: &mut Vec<String>,
) -> Option<ClientId> {
    let raw = req.param("id").unwrap_or("");
    let decoded = match percent_encoding::percent_decode_str(raw).decode_utf8() {
        Ok(d) => d,
        Err(_) => {
            errs.push("id: not UTF-8 once percent-decoded".into());
            return None;
        }
    };
    match ClientId::new(&decoded) {
        Ok(c) => Some(c),
        Err(e) => {
            errs.push(format!("id: {e}"));
            None
        }
    }
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
    let broker = async_std::future::timeout(limit, state.broker.ping()).await;
    let mut problems = Vec::new();
    match store {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(e.to_string()),
        Err(_) => problems.push(format!("store did not answer within {timeout} ms")),
    }
    // The broker is not on the durability path: pushes are still stored and answered 200
    // without it, and sessions catch up when it is back. So it makes the node degraded, not
    // unhealthy (a load balancer must not take every node out when Redis goes away).
    let mut degraded = Vec::new();
    match broker {
        Ok(Ok(())) => {}
        Ok(Err(e)) => degraded.push(format!("broker: {e}")),
        Err(_) => degraded.push(format!("broker did not answer within {timeout} ms")),
    }
    if let Some(redis) = state.metrics.redis.get() {
        let r = redis.report();
        if let (Some(down), true) = (r.down_for, degraded.is_empty()) {
            degraded.push(format!(
                "broker: Redis unreachable for {} ms: {}",
                down.as_millis(),
                r.reason
            ));
        }
    }
    if !problems.is_empty() {
        problems.extend(degraded);
        log::warn!("health check failed: {}", problems.join("; "));
        Ok(errors(StatusCode::ServiceUnavailable, problems))
    } else if !degraded.is_empty() {
        log::warn!("health check: degraded: {}", degraded.join("; "));
        Ok(ok(json!({ "ok": 1, "degraded": degraded })))
    } else {
        Ok(ok(json!({ "ok": 1 })))
    }
}

async fn apis<S: MessageStore, B: Broker>(_req: Request<State<S, B>>) -> tide::Result {
    Ok(ok(json!({
        "v1": ["/push", "/healthy", "/apis", "/queues", "/watch", "/metrics", "/clients"]
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
