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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_std::io::ReadExt;
use herald_core::IdempotencyClaim;
use herald_core::{
    Broker, ClientId, CopyState, HubStats, IdempotencyTimes, Message, MessageId, MessageStore,
    Payload, Published, PushId, PushIds, Slot, StoreError,
};
use serde_json::json;
use sha2::Digest;
use subtle::ConstantTimeEq;
use tide::{Next, Request, Response, StatusCode};

use crate::metrics::Metrics;
use crate::shutdown::Inflight;
use crate::watch::Watch;

/// Messages read from the store per round trip while a `/queues` answer is built: what is
/// held in memory at once beyond the answer itself.
const HISTORY_PAGE: usize = 32;

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
    app.at("/push").post(keyed("push", push::<S, B>));
    app.at("/queues/:id").get(keyed("queues", queues::<S, B>));
    app.at("/watch/:id").get(keyed("watch", watch::<S, B>));
    health(app);
    app.at("/apis").get(keyed("apis", apis::<S, B>));
    app.at("/metrics").get(keyed("metrics", metrics::<S, B>));
    crate::console::routes(app);
    // The client view (issue 14).
    app.at("/clients/:id")
        .get(keyed("clients", crate::clients::client::<S, B>));
    // Issue 14 (receipts): a push's status and its recall.
    app.at("/push/:push_id")
        .get(keyed("status", push_status::<S, B>))
        .delete(keyed("recall", recall::<S, B>));
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

/// One message as a REST answer writes it: keys in alphabetical order, like every answer, and
/// `data` exactly as pushed.
fn message_json(m: &Message) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        channel: &'a [String],
        data: &'a Payload,
        from: &'a str,
        id: u64,
        ts: u64,
    }
    serde_json::to_string(&Out {
        channel: &m.channel,
        data: &m.data,
        from: &m.from,
        id: m.id.0,
        ts: m.ts,
    })
    .expect("strings, numbers and a raw JSON value serialize")
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
    let json_type = req
        .content_type()
        .is_some_and(|m| m.essence() == "application/json");
    if !json_type {
        Metrics::inc(&state.metrics.push_rejected);
        return Ok(errors(
            StatusCode::UnsupportedMediaType,
            vec!["Content-Type must be application/json".into()],
        ));
    }
    let body = match read_body(&mut req, state.max_body).await {
        Ok(b) => b,
        Err(res) => {
            Metrics::inc(&state.metrics.push_rejected);
            return Ok(res);
        }
    };
    let key = match idempotency_key(&req) {
        Ok(key) => key,
        Err(e) => {
            Metrics::inc(&state.metrics.push_rejected);
            log::info!("push refused: {e}");
            return Ok(errors(StatusCode::BadRequest, vec![e]));
        }
    };
    if let Some(key) = &key {
        let sha: [u8; 32] = sha2::Sha256::digest(&body).into();
        let claim = state
            .store
            .claim_idempotency(key, sha, unix_ms(), state.idempotency)
            .await;
        match claim {
            Ok(IdempotencyClaim::Claimed) => {}
            Ok(IdempotencyClaim::Replay(answer)) => {
                log::info!("push with Idempotency-Key {key:?} repeated: first answer replayed");
                let mut res = ok_text(answer);
                res.insert_header("Idempotent-Replayed", "true");
                return Ok(res);
            }
            Ok(IdempotencyClaim::InProgress) => {
                log::info!("push with Idempotency-Key {key:?} refused: the first is in progress");
                return Ok(errors(
                    StatusCode::Conflict,
                    vec![
                        "Idempotency-Key: a push with this key is still being stored; retry later"
                            .into(),
                    ],
                ));
            }
            Ok(IdempotencyClaim::Mismatch) => {
                Metrics::inc(&state.metrics.push_rejected);
                log::info!("push with Idempotency-Key {key:?} refused: another body");
                return Ok(errors(
                    StatusCode::UnprocessableEntity,
                    vec!["Idempotency-Key: this key was used with another request body".into()],
                ));
            }
            Err(e) => {
                return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()]));
            }
        }
    }
    let answer = publish_answer(&state, &body).await;
    if let Some(key) = &key {
        let done = match &answer {
            Ok(text) => state.store.finish_idempotency(key, text).await,
            Err(_) => state.store.release_idempotency(key).await,
        };
        if let Err(e) = done {
            log::warn!(
                "Idempotency-Key {key:?}: the claim could not be settled ({e}); it holds until its lease runs out"
            );
        }
    }
    Ok(answer.map_or_else(|res| res, ok_text))
}

/// The `Idempotency-Key` header, if given: one, of 1 to 255 visible ASCII characters.
fn idempotency_key<S, B>(req: &Request<State<S, B>>) -> Result<Option<String>, String> {
    let Some(values) = req.header("idempotency-key") else {
        return Ok(None);
    };
    let mut values = values.iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err("Idempotency-Key: give it once".into());
    };
    let key = value.as_str();
    if !herald_core::receipts::valid_idempotency_key(key) {
        return Err(format!(
            "Idempotency-Key: expected 1 to 255 visible ASCII characters, found {} bytes: {:?}",
            key.len(),
            key.chars().take(40).collect::<String>()
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Publishes `body` under a new push id: `Ok` with the 200 answer's JSON text once something
/// was stored, `Err` with the answer to give when nothing was.
async fn publish_answer<S: MessageStore, B: Broker>(
    state: &ApiState<S, B>,
    body: &[u8],
) -> Result<String, Response> {
    let now = unix_ms();
    let push_id = state
        .push_ids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .next(now);
    let published = {
        let _writing = state.inflight.enter();
        herald_core::publish(&*state.store, &*state.broker, body, now, push_id).await
    };
    let (stored, failed) = match published {
        Published::Refused(errs) => {
            Metrics::inc(&state.metrics.push_rejected);
            let errs: Vec<String> = herald_core::push::cap_errors(errs, state.max_listed_errors)
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(errors(StatusCode::BadRequest, errs));
        }
        Published::NotStored { error, failed } => {
            if !failed.is_empty() {
                // The store answered, but kept no copy: a failure the metered store cannot see.
                Metrics::inc(&state.metrics.store_errors);
                state
                    .metrics
                    .push_failed_recipients
                    .fetch_add(failed.len() as u64, Relaxed);
            }
            return Err(errors(
                StatusCode::ServiceUnavailable,
                vec![error.to_string()],
            ));
        }
        // Stored: the answer is 200 whatever the broker did.
        Published::Stored { stored, failed, .. } => (stored.len() as u64, failed),
    };
    Metrics::inc(&state.metrics.push_requests);
    state.metrics.pushed_messages.fetch_add(stored, Relaxed);
    state
        .metrics
        .push_failed_recipients
        .fetch_add(failed.len() as u64, Relaxed);
    let mut body = json!({ "ok": 1, "send": stored, "push_id": push_id.as_str() });
    if !failed.is_empty() {
        let failed: Vec<&str> = failed.iter().map(ClientId::as_str).collect();
        body["failed"] = json!(failed);
    }
    Ok(body.to_string())
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
    let after = query_int(&q, "after", 0, 0, i64::MAX, &mut errs);
    let (Some(client), true) = (client, errs.is_empty()) else {
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let read = Read {
        since_ms: since as u64 * 1000,
        after: after as u64,
        limit: limit as usize,
        max_answer: state.max_answer,
        now_ms: now,
    };
    match read_history(&state, &client, &read).await {
        Ok(answer) => Ok(ok_text(answer)),
        Err(e) => Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()])),
    }
}

/// What a `/queues` request asks for.
struct Read {
    /// Messages stored at or after this time, Unix milliseconds.
    since_ms: u64,
    /// Only messages with a greater id (the caller's continuation).
    after: u64,
    /// At most this many messages.
    limit: usize,
    /// The answer's size bound, bytes.
    max_answer: usize,
    /// Now, Unix milliseconds (expired messages are left out).
    now_ms: u64,
}

/// The `/queues` answer: `{"messages":[...],"more":true,"ok":1}`, `more` only when the size
/// bound left messages out. Reads the store a page at a time, so neither the answer nor what
/// is held while building it grows past about `max_answer` plus one page.
///
/// The store reads by time (`since_ms`) and gives messages oldest first; each next page starts
/// at the newest time read so far and skips the messages of that millisecond already read.
async fn read_history<S: MessageStore, B: Broker>(
    state: &ApiState<S, B>,
    client: &ClientId,
    read: &Read,
) -> Result<String, StoreError> {
    const OPEN: &str = r#"{"messages":["#;
    const CLOSE_MORE: &str = r#"],"more":true,"ok":1}"#;
    let mut out = String::from(OPEN);
    let (mut count, mut more) = (0usize, false);
    // The next page starts at `cursor_ms`; the first `same_ms` messages it gives were read.
    let (mut cursor_ms, mut same_ms, mut read_upto) = (read.since_ms, 0usize, 0u64);
    'pages: while count < read.limit {
        let want = (read.limit - count).min(HISTORY_PAGE) + same_ms;
        let page = state
            .store
            .history(client, cursor_ms, want, read.now_ms)
            .await?;
        let exhausted = page.len() < want;
        for m in page {
            if m.id.0 <= read_upto {
                continue;
            }
            read_upto = m.id.0;
            if m.ts > cursor_ms {
                (cursor_ms, same_ms) = (m.ts, 1);
            } else if m.ts == cursor_ms {
                same_ms += 1;
            }
            if m.id.0 <= read.after {
                continue;
            }
            let text = message_json(&m);
            if count > 0 && out.len() + 1 + text.len() + CLOSE_MORE.len() > read.max_answer {
                more = true;
                break 'pages;
            }
            if count > 0 {
                out.push(',');
            }
            out.push_str(&text);
            count += 1;
            if count == read.limit {
                break 'pages;
            }
        }
        if exhausted {
            break;
        }
    }
    out.push_str(if more { CLOSE_MORE } else { r#"],"ok":1}"# });
    Ok(out)
}

async fn watch<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let q = query_pairs(&req);
    let client = client_param(&req, &mut errs);
    let slot = query_int(&q, "channel", 0, 0, 15, &mut errs);
    let timeout = query_int(&q, "timeout", 30_000, 0, 300_000, &mut errs);
    let (Some(client), true) = (client, errs.is_empty()) else {
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let slot = Slot::new(slot).expect("checked range");
    let deadline = Instant::now() + Duration::from_millis(timeout as u64);

    // Watch before the first read: a push landing after it wakes us, and so does the start
    // of the client's subscription, after which no push is missed.
    let watch = (state.watch)(&client);
    let answer = loop {
        let r = state
            .store
            .unacked(&client, slot, MessageId::ZERO, 1, unix_ms())
            .await;
        match r {
            Ok(found) if !found.is_empty() => {
                break ok_text(format!(
                    r#"{{"message":{},"ok":1}}"#,
                    message_json(&found[0])
                ));
            }
            Ok(_) => {}
            Err(e) => break errors(StatusCode::ServiceUnavailable, vec![e.to_string()]),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break ok(json!({ "ok": 1, "message": null }));
        }
        log::debug!("watch of {client} slot {slot}: waiting");
        // Woken by a notification, or time's up (then one last read above decides).
        let _ = async_std::future::timeout(left, watch.woken.recv()).await;
    };
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

// ---- Issue 14 (receipts): GET and DELETE /push/:push_id -----------------------------------

/// Largest `limit` of a status page.
const MAX_STATUS_PAGE: i64 = 1000;

/// The `:push_id` path parameter as a push id.
fn push_param<S, B>(req: &Request<State<S, B>>, errs: &mut Vec<String>) -> Option<PushId> {
    match PushId::parse(req.param("push_id").unwrap_or("")) {
        Ok(p) => Some(p),
        Err(e) => {
            errs.push(format!("push_id: {e}"));
            None
        }
    }
}

/// The 404 of an unknown push.
fn no_such_push(push: PushId) -> Response {
    errors(
        StatusCode::NotFound,
        vec![format!(
            "push_id: no push {push} is known (never stored here, expired more than a day ago, \
             or forgotten beyond store.receipts_max_copies)"
        )],
    )
}

/// `GET /push/:push_id?slot=&limit=&after=`: where each copy of the push stands for one slot.
async fn push_status<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let q = query_pairs(&req);
    let push = push_param(&req, &mut errs);
    let slot = query_int(&q, "slot", 0, 0, 15, &mut errs);
    let limit = query_int(&q, "limit", 100, 1, MAX_STATUS_PAGE, &mut errs) as usize;
    let after = query_int(&q, "after", 0, 0, i64::MAX, &mut errs) as usize;
    let (Some(push), true) = (push, errs.is_empty()) else {
        log::info!("status refused: {}", errs.join("; "));
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let slot = Slot::new(slot).expect("checked range");
    let status = match state.store.push_status(push, slot, unix_ms()).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(no_such_push(push)),
        Err(e) => return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()])),
    };
    if after > status.copies.len() {
        return Ok(errors(
            StatusCode::BadRequest,
            vec![format!(
                "after: {after} is beyond the push's {} recipients (give back a `next` this route answered)",
                status.copies.len()
            )],
        ));
    }
    let mut summary = serde_json::Map::new();
    for state in [
        CopyState::Stored,
        CopyState::Delivered,
        CopyState::Acked,
        CopyState::Expired,
        CopyState::Recalled,
    ] {
        let n = status.copies.iter().filter(|c| c.state == state).count();
        summary.insert(state.as_str().to_owned(), json!(n));
    }
    let page: Vec<serde_json::Value> = status
        .copies
        .iter()
        .skip(after)
        .take(limit)
        .map(|c| {
            json!({
                "client": c.client.as_str(),
                "id": c.id.0,
                "state": c.state.as_str(),
                "delivered_at": c.delivered_at,
                "acked_at": c.acked_at,
            })
        })
        .collect();
    let end = after + page.len();
    let mut body = json!({
        "ok": 1,
        "push_id": push.as_str(),
        "slot": slot.get(),
        "ts": status.ts,
        "expires_at": status.expires_ms,
        "recipients": status.copies.len(),
        "summary": summary,
        "entries": page,
    });
    if end < status.copies.len() {
        body["next"] = json!(end.to_string());
    }
    Ok(ok(body))
}

/// `DELETE /push/:push_id`: hides every copy not yet acknowledged from every slot that has
/// not acknowledged it, and tells the sessions holding one.
async fn recall<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let Some(push) = push_param(&req, &mut errs) else {
        log::info!("recall refused: {}", errs.join("; "));
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let (report, clients) = match state.store.recall(push, unix_ms()).await {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(no_such_push(push)),
        Err(e) => return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()])),
    };
    // The store hides the copies from every read from now on; sessions that hold one in
    // memory drop it when told. A failed notice leaves them to deliver what they hold.
    if let Err(e) = state.broker.notify_recall(push, &clients).await {
        log::warn!(
            "recall of {push}: sessions could not all be told ({e}); copies they hold may still be delivered"
        );
    }
    log::info!(
        "recall of {push}: {} copies recalled, {} already acknowledged",
        report.recalled,
        report.already_acked
    );
    recalled_events(&state, push).await;
    Ok(ok(json!({
        "ok": 1,
        "recalled": report.recalled,
        "already_acked": report.already_acked,
    })))
}

/// With webhooks on, a `recalled` event per copy that slot 0 had not acknowledged (`slot` 0:
/// a recall is about the copy in every slot). A repeated recall makes the same events (same
/// ids), so receivers keep them once. A failure is logged: the recall itself stands.
async fn recalled_events<S: MessageStore, B: Broker>(state: &ApiState<S, B>, push: PushId) {
    if !state.webhooks.enabled() {
        return;
    }
    let now = unix_ms();
    let status = match state.store.push_status(push, Slot::default(), now).await {
        Ok(Some(status)) => status,
        Ok(None) => return,
        Err(e) => {
            log::warn!("recall of {push}: no recalled events ({e})");
            return;
        }
    };
    let events: Vec<herald_core::webhook::Event> = status
        .copies
        .into_iter()
        .filter(|c| c.state == herald_core::CopyState::Recalled)
        .map(|c| {
            use herald_core::webhook::{Event, EventKind};
            Event::new(
                EventKind::Recalled,
                push.as_str(),
                c.client,
                Slot::default(),
                c.id,
                now,
            )
        })
        .collect();
    if let Err(e) = state.webhooks.record(&*state.store, &events).await {
        log::warn!(
            "recall of {push}: {} recalled events not recorded: {e}",
            events.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use herald_core::{MemoryBroker, MemoryBrokerNode, MemoryStore, NewMessage, Retention};

    use super::*;

    fn state(store: &MemoryStore) -> ApiState<MemoryStore, MemoryBrokerNode> {
        ApiState::new(
            Arc::new(store.clone()),
            Arc::new(MemoryBroker::new().node()),
            "test",
        )
    }

    /// Reads every page, following `more` with `after`; the ids, and the pages' sizes.
    fn read_all(
        state: &ApiState<MemoryStore, MemoryBrokerNode>,
        client: &ClientId,
        read: Read,
    ) -> (Vec<u64>, Vec<usize>) {
        let (mut ids, mut sizes, mut read) = (Vec::new(), Vec::new(), read);
        loop {
            let text = async_std::task::block_on(read_history(state, client, &read)).unwrap();
            sizes.push(text.len());
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let got: Vec<u64> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_u64().unwrap())
                .collect();
            ids.extend(&got);
            if v.get("more").is_none() {
                return (ids, sizes);
            }
            read.after = *got.last().unwrap();
        }
    }

    #[test]
    fn history_pages_through_messages_of_one_millisecond() {
        // 100 messages stored in the same millisecond, then 50 later: more than three store
        // pages share one `ts`, the case where a time cursor alone would repeat or stall.
        let store = MemoryStore::new(Retention::default());
        let client = ClientId::new("c").unwrap();
        let message = |n: usize| NewMessage {
            from: "s".into(),
            channel: Vec::new(),
            data: Payload::from_json(&format!("\"{n:0>500}\"")).unwrap(),
            ttl: None,
            push: None,
        };
        for n in 0..150 {
            let ts = if n < 100 { 5_000 } else { 6_000 + n as u64 };
            let appended = async_std::task::block_on(store.append(
                &message(n),
                std::slice::from_ref(&client),
                ts,
            ));
            appended.unwrap()[0].as_ref().unwrap();
        }
        let st = state(&store);
        let all: Vec<u64> = (1..=150).collect();
        let read = |after, limit, max_answer| Read {
            since_ms: 0,
            after,
            limit,
            max_answer,
            now_ms: 10_000,
        };
        let (ids, sizes) = read_all(&st, &client, read(0, 1000, 4 << 20));
        assert_eq!((ids, sizes.len()), (all.clone(), 1));
        let (ids, _) = read_all(&st, &client, read(70, 1000, 4 << 20));
        assert_eq!(ids, all[70..].to_vec());
        let (ids, _) = read_all(&st, &client, read(0, 5, 4 << 20));
        assert_eq!(ids, all[..5].to_vec(), "limit counts messages given");
        // A 4 KiB bound: about 7 messages an answer, each answer within it.
        let (ids, sizes) = read_all(&st, &client, read(0, 1000, 4096));
        assert_eq!(ids, all);
        assert!(sizes.len() > 15, "{sizes:?}");
        assert!(sizes.iter().all(|&s| s <= 4096), "{sizes:?}");
        // A bound smaller than one message: one message an answer, never none.
        let (ids, sizes) = read_all(&st, &client, read(95, 1000, 100));
        assert_eq!((ids, sizes.len()), (all[95..].to_vec(), 55));
    }
}
