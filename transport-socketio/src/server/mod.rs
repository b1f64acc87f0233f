//! The Socket.IO server: Engine.IO sessions over WebSocket and HTTP long-polling (with
//! upgrade), Socket.IO namespaces on top, served on tide.
//!
//! Each Engine.IO session is one task owning all its state (transport, outgoing queue,
//! heartbeat and connect deadlines as plain timestamps) and fed by one channel: packets from
//! the transport, polls, the app's commands. The app only ever enqueues, so emitting never
//! blocks it; a session whose emits not yet taken exceed [`ServerConfig::queue_limit`]
//! packets, or whose waiting bytes (control packets included) exceed
//! [`ServerConfig::queue_bytes`], is closed (see the `outbox` module).
//!
//! A session that ends lets go of its socket within [`ServerConfig::close_timeout`]: the
//! WebSocket close handshake gets that long, then both halves of the connection are dropped,
//! whether the client answered, read, or did nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_std::channel::{Receiver, Sender, bounded, unbounded};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use futures::{FutureExt, SinkExt, StreamExt};
use herald_core::runtime::timeout;
use herald_core::{Runtime, Task};
use serde_json::{Value, json};
use tide::{Request, Response, StatusCode};

use crate::engineio::packet::{self as eio, Packet as EioPacket};
use crate::mailbox::{self, mailbox};
use crate::outbox::{self, Backlog, Outbox};
use crate::pairs::Pairs;
use crate::socketio::packet::{self as sio, Packet as SioPacket, PacketType};

mod dispatch;
mod session;
mod socket;

use session::{EventSink, Session};
pub use socket::{Connection, EmitError, Event, Handshake, Pending, ServerConfig, Socket};

/// A WebSocket's read buffer, bytes: what an idle connection keeps for reading. Clients send
/// small frames (pings, acknowledgements, a few dozen bytes); a larger frame is read in
/// several reads and grows the buffer for that connection. Tungstenite's default (128 KiB)
/// would be most of an idle connection's memory (at 512, the buffer was 10% of its heap).
const WS_READ_BUFFER: usize = 128;

/// One input of a session task.
enum SessionInput {
    /// Packets from the client (over whichever transport).
    Packets(Vec<EioPacket>),
    /// A transport failed or the client sent something invalid.
    TransportError(String),
    /// A polling GET waits for data.
    Poll(async_std::channel::Sender<PollAnswer>),
    /// A WebSocket arrived for this session (upgrade).
    Upgrade(Box<WebSocketStream<tide::http::upgrade::Connection>>),
    /// The app's text packet for the client (boxed: every queued input is as large as the
    /// largest variant, and each session keeps a block of them).
    Send(Box<Outgoing>),
    /// The app's raw Engine.IO message (bare Engine.IO servers).
    SendRaw(EioPacket),
    /// The app's decision on a CONNECT.
    Decision {
        nsp: String,
        result: Result<EventSink, Box<Value>>,
    },
    /// The app disconnects a namespace (and the session if `close`).
    Disconnect { nsp: String, close: bool },
    /// The server stops.
    Shutdown,
}

/// A text packet (and its attachments) the app sends to one namespace.
struct Outgoing {
    nsp: String,
    text: String,
    attachments: Vec<Vec<u8>>,
}

impl Outgoing {
    /// The bytes the packets of this emit are counted for (see [`outbox::cost`]).
    fn cost(text: &str, attachments: &[Vec<u8>]) -> usize {
        (1 + attachments.len()) * outbox::PACKET_OVERHEAD
            + text.len()
            + attachments.iter().map(Vec::len).sum::<usize>()
    }
}

/// What a poll gets.
enum PollAnswer {
    Payload(String),
    Error(StatusCode, Value),
}

/// The server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<Inner>,
}

/// What the server keeps of a running session: its mailbox and what it has waiting.
struct SessionEntry {
    tx: mailbox::Sender<SessionInput>,
    backlog: Arc<Backlog>,
}

struct Inner {
    config: ServerConfig,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    /// Notified each time the last session ends ([`SocketIo::sessions_ended`]).
    emptied: event_listener::Event,
    pending: Sender<Pending>,
    /// The application's executor and timer: sessions and their deadlines.
    runtime: Arc<dyn Runtime>,
}

impl std::fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIo")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Engine.IO error answers (code, message), as the reference server gives them.
const TRANSPORT_UNKNOWN: (u8, &str) = (0, "Transport unknown");
const SESSION_UNKNOWN: (u8, &str) = (1, "Session ID unknown");
const BAD_HANDSHAKE_METHOD: (u8, &str) = (2, "Bad handshake method");
const BAD_REQUEST: (u8, &str) = (3, "Bad request");
const UNSUPPORTED_VERSION: (u8, &str) = (5, "Unsupported protocol version");

fn eio_error((code, message): (u8, &str)) -> Response {
    let mut res = Response::new(StatusCode::BadRequest);
    res.set_body(json!({ "code": code, "message": message }));
    res
}

fn random_id() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 15];
    // The OS RNG; an id that cannot be made is a broken machine, but never panic.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b[..15].copy_from_slice(&t.to_le_bytes()[..15]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl SocketIo {
    /// A server and the stream of connections waiting for the app's decision. Its tasks and
    /// timers run on `runtime`.
    pub fn new(config: ServerConfig, runtime: Arc<dyn Runtime>) -> (SocketIo, Receiver<Pending>) {
        let (tx, rx) = bounded(1024);
        (
            SocketIo {
                inner: Arc::new(Inner {
                    config,
                    sessions: Mutex::new(HashMap::new()),
                    emptied: event_listener::Event::new(),
                    pending: tx,
                    runtime,
                }),
            },
            rx,
        )
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Adds the Socket.IO routes (GET and POST on the configured path) to `app`, so it can
    /// serve REST and Socket.IO on one port.
    pub fn mount<State: Clone + Send + Sync + 'static>(&self, app: &mut tide::Server<State>) {
        let path = self.inner.config.path.trim_end_matches('/').to_owned();
        for p in [path.clone(), format!("{path}/")] {
            let get = self.clone();
            let post = self.clone();
            let options = self.clone();
            app.at(&p)
                .get(move |req: Request<State>| {
                    let io = get.clone();
                    async move { Ok(io.answer_with_cors(req, false).await) }
                })
                .post(move |req: Request<State>| {
                    let io = post.clone();
                    async move { Ok(io.answer_with_cors(req, true).await) }
                })
                .options(move |req: Request<State>| {
                    let io = options.clone();
                    async move { Ok(io.preflight(&req)) }
                });
        }
    }

    /// A GET (polling read, WebSocket upgrade) or a POST (polling write), answered with the
    /// CORS headers its origin gets.
    async fn answer_with_cors<State: Clone + Send + Sync + 'static>(
        &self,
        req: Request<State>,
        post: bool,
    ) -> Response {
        let origin = origin_of(&req);
        let res = if post {
            self.handle_post(req).await
        } else {
            self.handle_get(req).await
        };
        self.with_cors(res, origin.as_deref())
    }

    /// A tide middleware that gives every answer of the app it wraps the CORS headers of
    /// [`ServerConfig::cors_origins`]: for a listener that serves Socket.IO alone, so that
    /// even its router's 404 and 405 reach the page instead of a CORS failure. Add it before
    /// any middleware that rewrites answers, so it sees their final form.
    pub fn cors_layer(&self) -> CorsLayer {
        CorsLayer(self.clone())
    }

    /// Adds the CORS headers `origin` is entitled to (see [`ServerConfig::cors_origins`]).
    fn with_cors(&self, mut res: Response, origin: Option<&str>) -> Response {
        let origins = &self.inner.config.cors_origins;
        if origins.iter().any(|o| o == "*") {
            res.insert_header("access-control-allow-origin", "*");
            return res;
        }
        if origins.is_empty() {
            return res;
        }
        // The answer depends on the Origin header: caches must keep one per origin.
        res.insert_header("vary", "Origin");
        if let Some(o) = origin.filter(|o| origins.iter().any(|allowed| allowed == o)) {
            res.insert_header("access-control-allow-origin", o);
            res.insert_header("access-control-allow-credentials", "true");
        }
        res
    }

    /// Answers a CORS preflight: the methods the server serves, the headers the page asked
    /// to send, and how long the browser may keep the answer.
    fn preflight<State>(&self, req: &Request<State>) -> Response {
        let mut res = Response::new(StatusCode::NoContent);
        res.insert_header("access-control-allow-methods", "GET, POST, OPTIONS");
        let asked = req
            .header("access-control-request-headers")
            .map(|h| h.as_str().to_owned());
        res.insert_header(
            "access-control-allow-headers",
            asked.unwrap_or_else(|| "content-type".to_owned()),
        );
        res.insert_header(
            "access-control-max-age",
            self.inner.config.cors_max_age.as_secs().to_string(),
        );
        self.with_cors(res, origin_of(req).as_deref())
    }

    /// Tells every client the server is going away (Engine.IO close) and ends every session.
    pub fn close_all(&self) {
        let sessions: Vec<mailbox::Sender<SessionInput>> =
            self.lock().values().map(|e| e.tx.clone()).collect();
        for tx in sessions {
            let _ = tx.try_send(SessionInput::Shutdown);
        }
    }

    /// Bytes waiting to be sent, summed over every open session (see
    /// [`ServerConfig::queue_bytes`]).
    pub fn queued_bytes(&self) -> usize {
        self.lock().values().map(|e| e.backlog.bytes()).sum()
    }

    /// Number of open Engine.IO sessions.
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    /// Resolves once no session is open (at once when none is): after
    /// [`SocketIo::close_all`], when every client was told and every session has ended.
    pub async fn sessions_ended(&self) {
        loop {
            if self.session_count() == 0 {
                return;
            }
            // Listen before looking again: the last session ending in between is not missed.
            let listener = self.inner.emptied.listen();
            if self.session_count() == 0 {
                return;
            }
            listener.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn session(&self, sid: &str) -> Option<mailbox::Sender<SessionInput>> {
        self.lock().get(sid).map(|e| e.tx.clone())
    }

    fn session_entry(&self, sid: &str) -> Option<(mailbox::Sender<SessionInput>, Arc<Backlog>)> {
        self.lock()
            .get(sid)
            .map(|e| (e.tx.clone(), e.backlog.clone()))
    }

    async fn handle_get<State>(&self, req: Request<State>) -> Response {
        let q = Query::of(&req);
        if let Some(err) = q.check() {
            return err;
        }
        let websocket = q.get("transport") == Some("websocket");
        match (q.get("sid"), websocket) {
            (None, false) => self.open(&req, &q),
            (None, true) => self.websocket(req, q, None).await,
            (Some(sid), true) => match self.session(sid) {
                Some(tx) => self.websocket(req, q.clone(), Some(tx)).await,
                None => eio_error(SESSION_UNKNOWN),
            },
            (Some(sid), false) => {
                let Some(tx) = self.session(sid) else {
                    return eio_error(SESSION_UNKNOWN);
                };
                let (atx, arx) = bounded(1);
                if tx.send(SessionInput::Poll(atx)).await.is_err() {
                    return eio_error(SESSION_UNKNOWN);
                }
                match arx.recv().await {
                    Ok(PollAnswer::Payload(p)) => {
                        let mut res = Response::new(StatusCode::Ok);
                        res.set_body(p);
                        res.set_content_type("text/plain; charset=UTF-8");
                        res
                    }
                    Ok(PollAnswer::Error(status, body)) => {
                        let mut res = Response::new(status);
                        res.set_body(body);
                        res
                    }
                    Err(_) => eio_error(SESSION_UNKNOWN),
                }
            }
        }
    }

    async fn handle_post<State>(&self, mut req: Request<State>) -> Response {
        let q = Query::of(&req);
        if let Some(err) = q.check() {
            return err;
        }
        if q.get("transport") != Some("polling") {
            return eio_error(BAD_REQUEST);
        }
        let Some(sid) = q.get("sid") else {
            return eio_error(BAD_HANDSHAKE_METHOD);
        };
        let Some((tx, backlog)) = self.session_entry(sid) else {
            return eio_error(SESSION_UNKNOWN);
        };
        let max = self.inner.config.max_payload;
        let mut body = Vec::new();
        // A declared length over the limit is refused unread; otherwise at most one byte
        // more than the limit is read, to tell.
        let too_large = req.len().is_some_and(|n| n > max) || {
            use async_std::io::ReadExt;
            let read = req
                .take_body()
                .take(max as u64 + 1)
                .read_to_end(&mut body)
                .await;
            read.is_err() || body.len() > max
        };
        if too_large {
            let _ = tx
                .send(SessionInput::TransportError(
                    "polling body over maxPayload".into(),
                ))
                .await;
            let mut res = Response::new(StatusCode::PayloadTooLarge);
            res.set_body(json!({"code": 3, "message": "Payload too large"}));
            return res;
        }
        let input = match String::from_utf8(body)
            .map_err(|_| "polling body is not UTF-8".to_owned())
            .and_then(|s| {
                let packets = if q.eio3() {
                    eio::decode_payload_v3(&s)
                } else {
                    eio::decode_payload(&s)
                };
                packets.map_err(|e| e.to_string())
            }) {
            // Queued only when the session has room for it (see the `outbox` module).
            Ok(packets) if backlog.has_room() => {
                backlog.received(packets.iter().map(outbox::cost).sum());
                SessionInput::Packets(packets)
            }
            Ok(_) => SessionInput::TransportError("polling faster than the session handles".into()),
            Err(e) => SessionInput::TransportError(format!("invalid polling payload: {e}")),
        };
        let bad = matches!(input, SessionInput::TransportError(_));
        let _ = tx.send(input).await;
        if bad {
            eio_error(BAD_REQUEST)
        } else {
            let mut res = Response::new(StatusCode::Ok);
            res.set_body("ok");
            res.set_content_type("text/html");
            res
        }
    }

    /// Opens a polling session: answers the handshake.
    fn open<State>(&self, req: &Request<State>, q: &Query) -> Response {
        let sid = random_id();
        let (tx, rx) = mailbox();
        let open = self.open_packet(&sid, true);
        let eio3 = q.eio3();
        self.spawn_session(
            sid,
            tx,
            rx,
            SessionStart {
                headers: headers_of(req),
                query: q.pairs.clone(),
                remote: req.remote().map(str::to_owned),
                ws: None,
                eio3,
            },
        );
        let mut res = Response::new(StatusCode::Ok);
        res.set_body(if eio3 {
            eio::encode_payload_v3(&[open])
        } else {
            open.encode()
        });
        res.set_content_type("text/plain; charset=UTF-8");
        res
    }

    fn open_packet(&self, sid: &str, polling: bool) -> EioPacket {
        let c = &self.inner.config;
        let upgrades: Vec<&str> = if polling { vec!["websocket"] } else { vec![] };
        EioPacket::Open(
            json!({
                "sid": sid,
                "upgrades": upgrades,
                "pingInterval": c.ping_interval.as_millis() as u64,
                "pingTimeout": c.ping_timeout.as_millis() as u64,
                "maxPayload": c.max_payload,
            })
            .to_string(),
        )
    }

    /// Answers a WebSocket upgrade request: a new session (`to` None) or an upgrade of one.
    async fn websocket<State>(
        &self,
        req: Request<State>,
        q: Query,
        to: Option<mailbox::Sender<SessionInput>>,
    ) -> Response {
        let upgrade = req
            .header("upgrade")
            .is_some_and(|h| h.as_str().eq_ignore_ascii_case("websocket"));
        let Some(key) = req
            .header("sec-websocket-key")
            .map(|h| h.as_str().to_owned())
        else {
            return eio_error(BAD_REQUEST);
        };
        if !upgrade {
            return eio_error(BAD_REQUEST);
        }
        let headers = headers_of(&req);
        let remote = req.remote().map(str::to_owned);
        let mut res = Response::new(StatusCode::SwitchingProtocols);
        res.insert_header("upgrade", "websocket");
        res.insert_header("connection", "Upgrade");
        res.insert_header("sec-websocket-accept", derive_accept_key(key.as_bytes()));
        let http_res: &mut tide::http::Response = res.as_mut();
        let upgraded = http_res.recv_upgrade().await;
        let io = self.clone();
        let max = self.inner.config.max_payload;
        self.inner.runtime.spawn(Box::pin(async move {
            let Some(conn) = upgraded.await else {
                log::debug!("websocket upgrade did not complete");
                return;
            };
            let config = WebSocketConfig::default()
                .read_buffer_size(WS_READ_BUFFER)
                .max_message_size(Some(max))
                .max_frame_size(Some(max));
            let ws = WebSocketStream::from_raw_socket(conn, Role::Server, Some(config)).await;
            match to {
                Some(tx) => {
                    let _ = tx.send(SessionInput::Upgrade(Box::new(ws))).await;
                }
                None => {
                    let sid = random_id();
                    let (tx, rx) = mailbox();
                    io.spawn_session(
                        sid,
                        tx,
                        rx,
                        SessionStart {
                            headers,
                            eio3: q.eio3(),
                            query: q.pairs,
                            remote,
                            ws: Some(ws),
                        },
                    );
                }
            }
        }));
        res
    }

    fn spawn_session(
        &self,
        sid: String,
        tx: mailbox::Sender<SessionInput>,
        rx: mailbox::Receiver<SessionInput>,
        start: SessionStart,
    ) {
        // Built before the task and boxed: the task's future then holds a pointer, not the
        // session next to the values it was made from (an idle connection's largest cost).
        let session = Box::new(Session::new(self.clone(), sid.clone(), tx.clone(), start));
        let backlog = session.outbox.backlog().clone();
        self.lock()
            .insert(sid.clone(), SessionEntry { tx, backlog });
        self.inner.runtime.spawn(Box::pin(session.run(rx)));
    }
}

/// What a session starts with.
struct SessionStart {
    headers: Pairs,
    query: Pairs,
    remote: Option<String>,
    ws: Option<WebSocketStream<tide::http::upgrade::Connection>>,
    /// Engine.IO v3: the client pings, the server answers; v3 polling framing; `/` is
    /// connected without a CONNECT packet.
    eio3: bool,
}

/// A polling payload in the session's Engine.IO version.
fn encode_payload(eio3: bool, packets: &[EioPacket]) -> String {
    if eio3 {
        eio::encode_payload_v3(packets)
    } else {
        eio::encode_payload(packets)
    }
}

fn headers_of<State>(req: &Request<State>) -> Pairs {
    req.iter()
        .flat_map(|(name, values)| {
            let name = name.as_str().to_ascii_lowercase();
            values.iter().map(move |v| (name.clone(), v.as_str()))
        })
        .collect()
}

/// See [`SocketIo::cors_layer`].
pub struct CorsLayer(SocketIo);

#[tide::utils::async_trait]
impl<State: Clone + Send + Sync + 'static> tide::Middleware<State> for CorsLayer {
    async fn handle(&self, req: Request<State>, next: tide::Next<'_, State>) -> tide::Result {
        let origin = origin_of(&req);
        let res = next.run(req).await;
        Ok(self.0.with_cors(res, origin.as_deref()))
    }
}

/// The page origin a request came from (browsers send it on cross-origin requests).
fn origin_of<State>(req: &Request<State>) -> Option<String> {
    req.header("origin").map(|h| h.as_str().to_owned())
}

/// The query parameters of a request.
#[derive(Debug, Clone)]
struct Query {
    pairs: Pairs,
}

impl Query {
    fn of<State>(req: &Request<State>) -> Query {
        Query {
            pairs: req.url().query_pairs().collect(),
        }
    }

    /// Whether the client speaks Engine.IO v3 (socket.io 1.x/2.x).
    fn eio3(&self) -> bool {
        self.get("EIO") == Some("3")
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.pairs.get(k)
    }

    /// The Engine.IO checks every request passes: protocol 4 (or 3), a known transport.
    fn check(&self) -> Option<Response> {
        if !matches!(self.get("EIO"), Some("4" | "3")) {
            return Some(eio_error(UNSUPPORTED_VERSION));
        }
        match self.get("transport") {
            Some("polling" | "websocket") => None,
            _ => Some(eio_error(TRANSPORT_UNKNOWN)),
        }
    }
}
