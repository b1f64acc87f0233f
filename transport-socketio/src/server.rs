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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_std::channel::{Receiver, Sender, bounded, unbounded};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tide::{Request, Response, StatusCode};

use crate::engineio::packet::{self as eio, Packet as EioPacket};
use crate::mailbox::{self, mailbox};
use crate::outbox::{self, Backlog, Outbox};
use crate::socketio::packet::{self as sio, Packet as SioPacket, PacketType};

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The path clients connect to (Socket.IO's `path` option), default `/socket.io/`.
    pub path: String,
    /// Time between the server's pings (Engine.IO `pingInterval`).
    pub ping_interval: Duration,
    /// Time a client has to answer a ping (`pingTimeout`).
    pub ping_timeout: Duration,
    /// Largest accepted message or polling body, bytes (`maxPayload`).
    pub max_payload: usize,
    /// Time a client has, after the handshake, to connect a namespace.
    pub connect_timeout: Duration,
    /// The namespaces clients may connect to; others get `Invalid namespace`.
    pub namespaces: Vec<String>,
    /// Most packets waiting to be sent to one client before it is disconnected as too slow.
    pub queue_limit: usize,
    /// Most bytes waiting to be sent to one client (the app's emits not yet taken, the
    /// session's queue, what is being written), control packets included, before its session
    /// is closed. Each packet counts its payload plus 64 bytes. One packet larger than this is
    /// still sent when nothing else waits. The same bound holds what the client sent and the
    /// session has not handled yet: past it the server stops reading the client's WebSocket
    /// until the session catches up, and refuses its polling POSTs. Default 16 MiB.
    pub queue_bytes: usize,
    /// How long the goodbye of an ending session may take (the last packets, the WebSocket
    /// close frame and the client's answer) before the server drops the connection anyway.
    /// Default 3 s.
    pub close_timeout: Duration,
    /// Serve bare Engine.IO: no Socket.IO layer. Every session is offered to the app at once
    /// (namespace `""`, no auth payload), and messages arrive as [`Event::Text`] and
    /// [`Event::Binary`]; the app answers with [`Socket::send_text`] and [`Socket::send_binary`].
    pub engine_only: bool,
    /// The web origins whose pages may use the server from another origin (CORS), as
    /// browsers write them (`https://app.example.com`, `http://localhost:8080`). `["*"]`
    /// (the default) lets any page in without credentials; listed origins get their own
    /// origin back with `Access-Control-Allow-Credentials: true` (`withCredentials`
    /// polling); an empty list sends no CORS header at all. Every answer carries them,
    /// errors included.
    pub cors_origins: Vec<String>,
    /// How long a browser may reuse a preflight answer (`Access-Control-Max-Age`).
    pub cors_max_age: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_millis(45_000),
            namespaces: vec!["/".into()],
            queue_limit: 4096,
            queue_bytes: 16 << 20,
            close_timeout: Duration::from_millis(3_000),
            engine_only: false,
            cors_origins: vec!["*".into()],
            cors_max_age: Duration::from_secs(600),
        }
    }
}

/// What a client presented when it connected a namespace.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The Engine.IO session id.
    pub sid: String,
    /// The namespace.
    pub namespace: String,
    /// The CONNECT packet's auth payload, if any.
    pub auth: Option<Value>,
    /// Headers of the request that opened the session (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Query parameters of that request.
    pub query: Vec<(String, String)>,
    /// The peer address, as the HTTP layer reported it.
    pub remote: Option<String>,
    /// The Engine.IO protocol of the client: 4 (socket.io 3.x and later) or 3 (socket.io
    /// 1.x/2.x). A v3 client connects to `/` without a CONNECT packet, so its `auth` is `None`:
    /// it authenticates with headers or query parameters.
    pub protocol: u8,
}

impl Handshake {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Something a connected client did.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An event from the client.
    Message {
        /// The event name.
        name: String,
        /// Its arguments (binary ones as `{"_placeholder":true,"num":n}`).
        args: Vec<Value>,
        /// The binary attachments, in placeholder order.
        attachments: Vec<Vec<u8>>,
        /// The ack id, when the client wants an answer ([`Socket::ack`]).
        ack: Option<u64>,
    },
    /// The client answered an emit made with an ack id.
    Ack {
        /// The ack id given to the emit.
        id: u64,
        /// The answer's arguments.
        args: Vec<Value>,
        /// Binary attachments of the answer.
        attachments: Vec<Vec<u8>>,
    },
    /// A text message (bare Engine.IO servers only).
    Text(String),
    /// A binary message (bare Engine.IO servers only).
    Binary(Vec<u8>),
    /// The connection ended; nothing more will come.
    Closed {
        /// Why.
        reason: String,
    },
}

/// Why an emit was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The client is not reading: its queue is full, and it is being disconnected.
    #[error("client too slow: outgoing queue full")]
    Full,
    /// The arguments are not a JSON array.
    #[error("arguments must be a JSON array")]
    NotAnArray,
}

/// One input of a session task.
enum Input {
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

/// A connection waiting for the app's decision.
#[derive(Debug)]
pub struct Pending {
    /// What the client presented.
    pub handshake: Handshake,
    tx: mailbox::Sender<Input>,
    backlog: Arc<Backlog>,
}

impl Pending {
    /// Accepts: the client gets its CONNECT answer, the app gets the connection.
    pub fn accept(self) -> Connection {
        let (etx, erx) = unbounded();
        let socket = self.decide(EventSink::Channel(etx));
        Connection {
            socket,
            events: erx,
            handshake: self.handshake,
        }
    }

    /// Accepts, with the client's events handed to `on_event` instead of a channel: the
    /// session calls it for each [`Event`], in order, ending with [`Event::Closed`]. It runs
    /// on the session's task, so it must not block (enqueue, count, return). No channel and
    /// no task of the app's per connection: what an app with many idle clients wants.
    pub fn accept_with(self, on_event: impl Fn(Event) + Send + Sync + 'static) -> Socket {
        self.decide(EventSink::Handler(Box::new(on_event)))
    }

    /// Sends the acceptance with the namespace's event sink; the socket to emit with.
    fn decide(&self, sink: EventSink) -> Socket {
        let _ = self.tx.try_send(Input::Decision {
            nsp: self.handshake.namespace.clone(),
            result: Ok(sink),
        });
        Socket {
            sid: self.handshake.sid.clone(),
            nsp: self.handshake.namespace.clone(),
            tx: self.tx.clone(),
            backlog: self.backlog.clone(),
        }
    }

    /// Refuses with a CONNECT_ERROR carrying `data` (e.g. `{"message":"unauthorized"}`).
    pub fn refuse(self, data: Value) {
        let _ = self.tx.try_send(Input::Decision {
            nsp: self.handshake.namespace.clone(),
            result: Err(Box::new(data)),
        });
    }
}

/// An accepted connection: a handle to emit and the stream of what the client does.
#[derive(Debug)]
pub struct Connection {
    /// What the client presented.
    pub handshake: Handshake,
    /// Emits to this client; cheap to clone.
    pub socket: Socket,
    /// What the client does, ending with [`Event::Closed`].
    pub events: Receiver<Event>,
}

/// A handle to one connected namespace of one client. Every method only enqueues.
#[derive(Debug, Clone)]
pub struct Socket {
    sid: String,
    nsp: String,
    tx: mailbox::Sender<Input>,
    backlog: Arc<Backlog>,
}

impl Socket {
    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    fn send(&self, text: String, attachments: Vec<Vec<u8>>) -> Result<(), EmitError> {
        let n = 1 + attachments.len();
        let bytes = Outgoing::cost(&text, &attachments);
        self.enqueue(
            n,
            bytes,
            Input::Send(Box::new(Outgoing {
                nsp: self.nsp.clone(),
                text,
                attachments,
            })),
        )
    }

    /// Queues `input` worth `n` packets and `bytes` bytes, unless the client is gone or too
    /// far behind.
    fn enqueue(&self, n: usize, bytes: usize, input: Input) -> Result<(), EmitError> {
        if self.tx.is_closed() {
            return Err(EmitError::Closed);
        }
        if !self.backlog.admit(n, bytes) {
            let _ = self
                .tx
                .try_send(Input::TransportError("outgoing queue full".into()));
            return Err(EmitError::Full);
        }
        self.tx.try_send(input).map_err(|_| EmitError::Closed)
    }

    /// Emits `event` with `args_json`, the JSON text of the argument array (e.g. `[1,"a"]`),
    /// asking for an ack with `ack` when given. The text is not parsed again.
    ///
    /// # Errors
    /// [`EmitError`] when the connection is gone or too slow, or `args_json` is no array.
    pub fn emit_json(
        &self,
        event: &str,
        args_json: &str,
        ack: Option<u64>,
    ) -> Result<(), EmitError> {
        let args = args_json.trim();
        if !(args.starts_with('[') && args.ends_with(']')) {
            return Err(EmitError::NotAnArray);
        }
        let name = Value::String(event.to_owned()).to_string();
        let inner = args[1..args.len() - 1].trim();
        let data = if inner.is_empty() {
            format!("[{name}]")
        } else {
            format!("[{name},{inner}]")
        };
        let text = sio::encode_raw(PacketType::Event, &self.nsp, ack, 0, Some(&data));
        self.send(text, Vec::new())
    }

    /// Emits `event` with `args`.
    ///
    /// # Errors
    /// [`EmitError`] when the connection is gone or too slow.
    pub fn emit(&self, event: &str, args: &[Value], ack: Option<u64>) -> Result<(), EmitError> {
        self.emit_json(event, &Value::Array(args.to_vec()).to_string(), ack)
    }

    /// Emits `event` with `args` holding placeholders for `attachments` (binary event).
    ///
    /// # Errors
    /// [`EmitError`] when the connection is gone or too slow.
    pub fn emit_binary(
        &self,
        event: &str,
        args: &[Value],
        attachments: Vec<Vec<u8>>,
        ack: Option<u64>,
    ) -> Result<(), EmitError> {
        let mut data = vec![Value::String(event.to_owned())];
        data.extend_from_slice(args);
        self.send_packet(PacketType::Event, ack, &Value::Array(data), attachments)
    }

    /// Answers the client's event that carried ack id `id`.
    ///
    /// # Errors
    /// [`EmitError`] when the connection is gone or too slow.
    pub fn ack(&self, id: u64, args: &[Value], attachments: Vec<Vec<u8>>) -> Result<(), EmitError> {
        self.send_packet(
            PacketType::Ack,
            Some(id),
            &Value::Array(args.to_vec()),
            attachments,
        )
    }

    /// Sends an event or an ack (their binary form when there are attachments).
    fn send_packet(
        &self,
        kind: PacketType,
        id: Option<u64>,
        data: &Value,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), EmitError> {
        let kind = match (kind, attachments.is_empty()) {
            (PacketType::Event, false) => PacketType::BinaryEvent,
            (PacketType::Ack, false) => PacketType::BinaryAck,
            (kind, _) => kind,
        };
        let text = sio::encode_raw(
            kind,
            &self.nsp,
            id,
            attachments.len(),
            Some(&data.to_string()),
        );
        self.send(text, attachments)
    }

    /// Disconnects this namespace (the client sees "io server disconnect" and does not
    /// reconnect on its own); with `close`, the whole Engine.IO session too.
    pub fn disconnect(&self, close: bool) {
        let _ = self.tx.try_send(Input::Disconnect {
            nsp: self.nsp.clone(),
            close,
        });
    }

    /// Sends a bare Engine.IO text message (servers with `engine_only`).
    ///
    /// # Errors
    /// [`EmitError`] when the connection is gone or too slow.
    pub fn send_text(&self, text: String) -> Result<(), EmitError> {
        self.send_raw(EioPacket::Message(text))
    }

    /// Sends a bare Engine.IO binary message (servers with `engine_only`).
    ///
    /// # Errors
    /// [`EmitError`] when the connection is gone or too slow.
    pub fn send_binary(&self, bytes: Vec<u8>) -> Result<(), EmitError> {
        self.send_raw(EioPacket::Binary(bytes))
    }

    fn send_raw(&self, packet: EioPacket) -> Result<(), EmitError> {
        self.enqueue(1, outbox::cost(&packet), Input::SendRaw(packet))
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<Inner>,
}

/// What the server keeps of a running session: its mailbox and what it has waiting.
struct SessionEntry {
    tx: mailbox::Sender<Input>,
    backlog: Arc<Backlog>,
}

struct Inner {
    config: ServerConfig,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    pending: Sender<Pending>,
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
    /// A server and the stream of connections waiting for the app's decision.
    pub fn new(config: ServerConfig) -> (SocketIo, Receiver<Pending>) {
        let (tx, rx) = bounded(1024);
        (
            SocketIo {
                inner: Arc::new(Inner {
                    config,
                    sessions: Mutex::new(HashMap::new()),
                    pending: tx,
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
                    async move {
                        let origin = origin_of(&req);
                        let res = io.handle_get(req).await;
                        Ok(io.with_cors(res, origin.as_deref()))
                    }
                })
                .post(move |req: Request<State>| {
                    let io = post.clone();
                    async move {
                        let origin = origin_of(&req);
                        let res = io.handle_post(req).await;
                        Ok(io.with_cors(res, origin.as_deref()))
                    }
                })
                .options(move |req: Request<State>| {
                    let io = options.clone();
                    async move { Ok(io.preflight(&req)) }
                });
        }
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

    /// Serves on its own listener at `addr` with our HTTP/1.1 connection code
    /// ([`crate::http1`], default limits, bodies up to `max_payload`). Returns the bound
    /// address through `bound` as soon as it is known (port 0 picks a free port).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn serve(
        self,
        addr: SocketAddr,
        bound: impl FnOnce(SocketAddr),
    ) -> std::io::Result<()> {
        let mut app = tide::new();
        app.with(self.cors_layer());
        self.mount(&mut app);
        let listener = async_std::net::TcpListener::bind(addr).await?;
        bound(listener.local_addr()?);
        let limits = crate::http1::HttpLimits {
            max_body: self.inner.config.max_payload,
            ..crate::http1::HttpLimits::default()
        };
        crate::http1::serve(listener, app, limits).await;
        Ok(())
    }

    /// Tells every client the server is going away (Engine.IO close) and ends every session.
    pub fn close_all(&self) {
        let sessions: Vec<mailbox::Sender<Input>> =
            self.lock().values().map(|e| e.tx.clone()).collect();
        for tx in sessions {
            let _ = tx.try_send(Input::Shutdown);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn session(&self, sid: &str) -> Option<mailbox::Sender<Input>> {
        self.lock().get(sid).map(|e| e.tx.clone())
    }

    fn session_entry(&self, sid: &str) -> Option<(mailbox::Sender<Input>, Arc<Backlog>)> {
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
            (None, false) => self.open(&req, &q, None),
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
                if tx.send(Input::Poll(atx)).await.is_err() {
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
        if req.len().is_some_and(|n| n > max) {
            let _ = tx
                .send(Input::TransportError("polling body over maxPayload".into()))
                .await;
            let mut res = Response::new(StatusCode::PayloadTooLarge);
            res.set_body(json!({"code": 3, "message": "Payload too large"}));
            return res;
        }
        let mut body = Vec::new();
        let read = {
            use async_std::io::ReadExt;
            req.take_body()
                .take(max as u64 + 1)
                .read_to_end(&mut body)
                .await
        };
        if read.is_err() || body.len() > max {
            let _ = tx
                .send(Input::TransportError("polling body over maxPayload".into()))
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
                Input::Packets(packets)
            }
            Ok(_) => Input::TransportError("polling faster than the session handles".into()),
            Err(e) => Input::TransportError(format!("invalid polling payload: {e}")),
        };
        let bad = matches!(input, Input::TransportError(_));
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
    fn open<State>(&self, req: &Request<State>, q: &Query, _: Option<()>) -> Response {
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
        to: Option<mailbox::Sender<Input>>,
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
        async_std::task::spawn(async move {
            let Some(conn) = upgraded.await else {
                log::debug!("websocket upgrade did not complete");
                return;
            };
            // A small read buffer: the default (128 KiB) is what an idle connection would
            // cost in memory. It grows when a large message arrives.
            let config = WebSocketConfig::default()
                .read_buffer_size(512)
                .max_message_size(Some(max))
                .max_frame_size(Some(max));
            let ws = WebSocketStream::from_raw_socket(conn, Role::Server, Some(config)).await;
            match to {
                Some(tx) => {
                    let _ = tx.send(Input::Upgrade(Box::new(ws))).await;
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
        });
        res
    }

    fn spawn_session(
        &self,
        sid: String,
        tx: mailbox::Sender<Input>,
        rx: mailbox::Receiver<Input>,
        start: SessionStart,
    ) {
        let io = self.clone();
        // Built before the task and boxed: the task's future then holds a pointer, not the
        // session next to the values it was made from (an idle connection's largest cost).
        let session = Box::new(Session::new(io.clone(), sid.clone(), tx.clone(), start));
        let backlog = session.outbox.backlog().clone();
        self.lock()
            .insert(sid.clone(), SessionEntry { tx, backlog });
        async_std::task::spawn(async move {
            session.run(rx).await;
            io.lock().remove(&sid);
        });
    }
}

/// What a session starts with.
struct SessionStart {
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
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

fn headers_of<State>(req: &Request<State>) -> Vec<(String, String)> {
    req.iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(|v| (name.as_str().to_ascii_lowercase(), v.as_str().to_owned()))
                .collect::<Vec<_>>()
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
    pairs: Vec<(String, String)>,
}

impl Query {
    fn of<State>(req: &Request<State>) -> Query {
        Query {
            pairs: req
                .url()
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// Whether the client speaks Engine.IO v3 (socket.io 1.x/2.x).
    fn eio3(&self) -> bool {
        self.get("EIO") == Some("3")
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
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

type WsSink = async_tungstenite::WebSocketSender<tide::http::upgrade::Connection>;

/// The transport a session currently sends on.
enum Transport {
    Polling {
        waiting: Option<async_std::channel::Sender<PollAnswer>>,
    },
    WebSocket {
        sink: WsSink,
    },
}

/// A namespace of the session.
enum Nsp {
    /// CONNECT received, the app is deciding.
    Deciding,
    /// Connected: events go to the app.
    Open(EventSink),
}

/// Where a connected namespace's events go: a channel the app reads
/// ([`Pending::accept`]), or a handler the session calls itself ([`Pending::accept_with`]).
enum EventSink {
    Channel(Sender<Event>),
    Handler(Box<dyn Fn(Event) + Send + Sync>),
}

impl EventSink {
    /// Hands `event` over; never waits (the channel is unbounded, a handler must not block).
    fn try_send(&self, event: Event) -> Result<(), Event> {
        match self {
            EventSink::Channel(tx) => tx.try_send(event).map_err(|e| e.into_inner()),
            EventSink::Handler(f) => {
                f(event);
                Ok(())
            }
        }
    }
}

struct Session {
    io: SocketIo,
    sid: String,
    tx: mailbox::Sender<Input>,
    transport: Transport,
    /// A WebSocket being probed for upgrade (its sink; its reader feeds `Packets`).
    probing: Option<WsSink>,
    /// The probe was answered: until the client sends `5`, every poll is answered at once
    /// (with what is queued, or a noop) so the client can pause polling and finish upgrading.
    upgrading: bool,
    /// What waits to be sent, counted against the session's bounds.
    outbox: Outbox,
    /// The tasks reading the client's WebSockets (the transport's and a probe's): each holds
    /// half of its connection, so the session ends them before it is gone.
    readers: Vec<async_std::task::JoinHandle<()>>,
    nsps: HashMap<String, Nsp>,
    assembling: Option<sio::Assembler>,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    remote: Option<String>,
    /// Engine.IO v3 (see [`SessionStart::eio3`]).
    eio3: bool,
    /// v4: when the server pings next. v3: by when the client must have pinged.
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    connect_deadline: Option<Instant>,
    closed: Option<String>,
    /// Close (with this reason) as soon as everything queued has been sent.
    close_when_flushed: Option<String>,
}

impl Session {
    fn new(io: SocketIo, sid: String, tx: mailbox::Sender<Input>, start: SessionStart) -> Session {
        let cfg = io.inner.config.clone();
        #[allow(clippy::disallowed_methods, reason = "the I/O shell owns the clock")]
        let now = Instant::now();
        let backlog = Backlog::new(cfg.queue_limit, cfg.queue_bytes);
        let mut s = Session {
            io,
            sid,
            tx,
            transport: Transport::Polling { waiting: None },
            probing: None,
            upgrading: false,
            outbox: Outbox::new(Arc::new(backlog)),
            readers: Vec::new(),
            nsps: HashMap::new(),
            assembling: None,
            headers: start.headers,
            query: start.query,
            remote: start.remote,
            eio3: start.eio3,
            next_ping: if start.eio3 {
                now + cfg.ping_interval + cfg.ping_timeout
            } else {
                now + cfg.ping_interval
            },
            pong_deadline: None,
            connect_deadline: Some(now + cfg.connect_timeout),
            closed: None,
            close_when_flushed: None,
        };
        if let Some(ws) = start.ws {
            let (sink, stream) = ws.split();
            s.transport = Transport::WebSocket { sink };
            s.spawn_reader(stream);
            let open = s.io.open_packet(&s.sid, false);
            s.queue(open);
        }
        s
    }

    /// Queues a packet the session made itself; past the byte bound, the session closes.
    fn queue(&mut self, p: EioPacket) {
        if !self.outbox.push(p) {
            self.close("outgoing queue over its byte bound");
        }
    }

    fn spawn_reader(
        &mut self,
        mut stream: async_tungstenite::WebSocketReceiver<tide::http::upgrade::Connection>,
    ) {
        let tx = self.tx.clone();
        let eio3 = self.eio3;
        let backlog = self.outbox.backlog().clone();
        let reader = async_std::task::spawn(async move {
            while let Some(msg) = stream.next().await {
                let decoded = match msg {
                    Ok(WsMessage::Text(t)) => EioPacket::decode(t.as_str()),
                    // v3 frames its bytes behind a type byte, v4 sends them bare.
                    Ok(WsMessage::Binary(b)) if eio3 => eio::decode_binary_frame_v3(&b),
                    Ok(WsMessage::Binary(b)) => Ok(EioPacket::Binary(b.to_vec())),
                    Ok(WsMessage::Close(_)) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx
                            .send(Input::TransportError(format!("transport error: {e}")))
                            .await;
                        return;
                    }
                };
                let input = match decoded {
                    Ok(p) => {
                        backlog.received(outbox::cost(&p));
                        Input::Packets(vec![p])
                    }
                    Err(e) => Input::TransportError(format!("invalid packet: {e}")),
                };
                let stop = matches!(input, Input::TransportError(_));
                if tx.send(input).await.is_err() || stop {
                    return;
                }
                // The next frame is read only once the session has room for it.
                backlog.room().await;
            }
            let _ = tx
                .send(Input::TransportError("transport close".into()))
                .await;
        });
        // Exactly one slot: an idle session's size counts.
        self.readers.reserve_exact(1);
        self.readers.push(reader);
    }

    async fn run(mut self: Box<Self>, rx: mailbox::Receiver<Input>) {
        log::debug!("engine.io session {} opened", self.sid);
        if self.io.inner.config.engine_only {
            self.offer();
        } else if self.eio3 {
            // socket.io 1.x/2.x clients are in `/` as soon as the handshake is done.
            self.connect_nsp("/".into(), None);
        }
        self.flush(self.io.inner.config.ping_timeout).await;
        while self.closed.is_none() {
            #[allow(clippy::disallowed_methods, reason = "the I/O shell owns the clock")]
            let now = Instant::now();
            let deadline = [
                Some(self.next_ping),
                self.pong_deadline,
                self.connect_deadline,
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("next_ping is always set");
            let wait = deadline.saturating_duration_since(now);
            // The handlers' futures are boxed: this loop's own future is what an idle session
            // costs in memory, and it would otherwise be as large as the largest of them.
            // An input already waiting is taken without arming a timer (one per input
            // otherwise, registered with the reactor and removed again).
            let next = match rx.recv().now_or_never() {
                Some(r) => Ok(r),
                None => async_std::future::timeout(wait, rx.recv()).await,
            };
            match next {
                Ok(Ok(input)) => Box::pin(self.input(input)).await,
                Ok(Err(_)) => self.close("server gone"),
                Err(_) => self.timers().await,
            }
            if self.closed.is_none() && !self.outbox.is_empty() {
                Box::pin(self.flush(self.io.inner.config.ping_timeout)).await;
            }
            if self.closed.is_none()
                && self.outbox.is_empty()
                && let Some(reason) = self.close_when_flushed.take()
            {
                self.close(&reason);
            }
        }
        let reason = self.closed.clone().unwrap_or_default();
        log::debug!("engine.io session {} closed: {reason}", self.sid);
        for (_, nsp) in self.nsps.drain() {
            if let Nsp::Open(events) = nsp {
                let _ = events.try_send(Event::Closed {
                    reason: reason.clone(),
                });
            }
        }
        rx.close();
        self.outbox.backlog().end();
        // The goodbye is bounded: a client that neither reads nor answers cannot keep the
        // socket. Then the readers (each holding half of a connection) are ended; the sinks
        // go with the session, and the connection is closed.
        let linger = self.io.inner.config.close_timeout;
        if async_std::future::timeout(linger, Box::pin(self.goodbye(&reason)))
            .await
            .is_err()
        {
            log::debug!(
                "engine.io session {}: no close answer within {linger:?}: dropped",
                self.sid
            );
        }
        for reader in self.readers.drain(..) {
            reader.cancel().await;
        }
        self.outbox.drain();
    }

    /// Tells the client the session is over when it can still hear it, and waits for its
    /// answer: the end of each WebSocket it has open.
    async fn goodbye(&mut self, reason: &str) {
        match &mut self.transport {
            Transport::Polling { waiting } => {
                if let Some(w) = waiting.take() {
                    let close = encode_payload(self.eio3, &[EioPacket::Close]);
                    let _ = w.try_send(PollAnswer::Payload(close));
                }
            }
            Transport::WebSocket { sink } => {
                if reason == "server shutdown" || reason == "server disconnect" {
                    let _ = sink.send(WsMessage::text(EioPacket::Close.encode())).await;
                }
                let _ = sink.close(None).await;
            }
        }
        if let Some(mut sink) = self.probing.take() {
            let _ = sink.close(None).await;
        }
        // A reader ends with the client's close frame, or the end of its stream.
        for reader in &mut self.readers {
            reader.await;
        }
    }

    fn close(&mut self, reason: &str) {
        if self.closed.is_none() {
            self.closed = Some(reason.to_owned());
        }
    }

    async fn timers(&mut self) {
        #[allow(clippy::disallowed_methods, reason = "the I/O shell owns the clock")]
        let now = Instant::now();
        let cfg = &self.io.inner.config;
        if self.connect_deadline.is_some_and(|d| d <= now) {
            return self.close("connect timeout");
        }
        if self.pong_deadline.is_some_and(|d| d <= now) {
            return self.close("ping timeout");
        }
        if self.eio3 {
            // v3: the client pings; silence past interval + timeout ends the session.
            if self.next_ping <= now {
                self.close("ping timeout");
            }
            return;
        }
        if self.next_ping <= now {
            self.pong_deadline = Some(now + cfg.ping_timeout);
            self.next_ping = now + cfg.ping_interval + cfg.ping_timeout;
            self.queue(EioPacket::Ping(String::new()));
        }
    }

    async fn input(&mut self, input: Input) {
        match input {
            Input::Packets(ps) => {
                self.outbox
                    .backlog()
                    .handled(ps.iter().map(outbox::cost).sum());
                for p in ps {
                    self.packet(p).await;
                    if self.closed.is_some() {
                        return;
                    }
                }
            }
            Input::TransportError(e) => self.close(&e),
            Input::Poll(answer) => match &mut self.transport {
                Transport::Polling { waiting } => {
                    if waiting.is_some() {
                        let _ = answer.try_send(PollAnswer::Error(
                            StatusCode::BadRequest,
                            json!({"code": 3, "message": "Bad request"}),
                        ));
                        self.close("overlapping polls");
                    } else if self.upgrading {
                        let payload = if self.outbox.is_empty() {
                            encode_payload(self.eio3, &[EioPacket::Noop])
                        } else {
                            encode_payload(self.eio3, &self.outbox.drain())
                        };
                        let _ = answer.try_send(PollAnswer::Payload(payload));
                    } else {
                        *waiting = Some(answer);
                    }
                }
                Transport::WebSocket { .. } => {
                    let _ = answer.try_send(PollAnswer::Error(
                        StatusCode::BadRequest,
                        json!({"code": 3, "message": "Bad request"}),
                    ));
                }
            },
            Input::Upgrade(ws) => {
                if self.probing.is_some() || matches!(self.transport, Transport::WebSocket { .. }) {
                    log::debug!("second upgrade of {}: refused", self.sid);
                    return;
                }
                let (sink, stream) = (*ws).split();
                self.probing = Some(sink);
                self.spawn_reader(stream);
            }
            Input::SendRaw(packet) => {
                let backlog = self.outbox.backlog();
                backlog.taken(1);
                if matches!(self.nsps.get(""), Some(Nsp::Open(_))) {
                    self.outbox.push_admitted(packet);
                } else {
                    backlog.refund(outbox::cost(&packet));
                }
            }
            Input::Send(out) => {
                let Outgoing {
                    nsp,
                    text,
                    attachments,
                } = *out;
                let backlog = self.outbox.backlog();
                backlog.taken(1 + attachments.len());
                if matches!(self.nsps.get(&nsp), Some(Nsp::Open(_))) {
                    self.outbox.push_admitted(EioPacket::Message(text));
                    for a in attachments {
                        self.outbox.push_admitted(EioPacket::Binary(a));
                    }
                } else {
                    backlog.refund(Outgoing::cost(&text, &attachments));
                }
            }
            Input::Decision { nsp, result } if self.io.inner.config.engine_only => match result {
                Ok(events) => {
                    self.nsps.insert(nsp, Nsp::Open(events));
                    self.connect_deadline = None;
                }
                Err(_) => self.close("refused by the app"),
            },
            Input::Decision { nsp, result } => match result {
                Ok(events) => {
                    // v5 answers with the namespace's sid; v4 (socket.io 2.x) with nothing.
                    let data = json!({ "sid": format!("{}#{}", self.sid, nsp) }).to_string();
                    self.queue(EioPacket::Message(sio::encode_raw(
                        PacketType::Connect,
                        &nsp,
                        None,
                        0,
                        (!self.eio3).then_some(data.as_str()),
                    )));
                    self.nsps.insert(nsp, Nsp::Open(events));
                    self.connect_deadline = None;
                }
                Err(data) => {
                    self.nsps.remove(&nsp);
                    // v5 CONNECT_ERROR; for socket.io 2.x the same type (4) is its ERROR packet.
                    let text = sio::encode_raw(
                        PacketType::ConnectError,
                        &nsp,
                        None,
                        0,
                        Some(&data.to_string()),
                    );
                    self.queue(EioPacket::Message(text));
                    if self.eio3 && nsp == "/" {
                        // A v3 client had no say in joining `/`: refused there, it is done
                        // once it has the refusal and the close (polling: with its next poll).
                        self.queue(EioPacket::Close);
                        self.close_when_flushed = Some("refused by the app".into());
                    }
                }
            },
            Input::Disconnect { nsp, close } => {
                if let Some(Nsp::Open(events)) = self.nsps.remove(&nsp) {
                    let _ = events.try_send(Event::Closed {
                        reason: "server disconnect".into(),
                    });
                    self.queue(EioPacket::Message(sio::encode_raw(
                        PacketType::Disconnect,
                        &nsp,
                        None,
                        0,
                        None,
                    )));
                }
                if close {
                    self.flush(self.io.inner.config.close_timeout).await;
                    self.close("server disconnect");
                }
            }
            Input::Shutdown => {
                self.queue(EioPacket::Close);
                self.flush(self.io.inner.config.close_timeout).await;
                self.close("server shutdown");
            }
        }
    }

    async fn packet(&mut self, p: EioPacket) {
        match p {
            EioPacket::Ping(data) if self.eio3 && data != "probe" => {
                #[allow(clippy::disallowed_methods, reason = "the I/O shell owns the clock")]
                let now = Instant::now();
                let cfg = &self.io.inner.config;
                self.next_ping = now + cfg.ping_interval + cfg.ping_timeout;
                self.queue(EioPacket::Pong(data));
            }
            EioPacket::Pong(_) => {
                if self.pong_deadline.take().is_some() {
                    #[allow(clippy::disallowed_methods, reason = "the I/O shell owns the clock")]
                    let now = Instant::now();
                    self.next_ping = now + self.io.inner.config.ping_interval;
                }
            }
            EioPacket::Ping(data) if data == "probe" => {
                if let Some(sink) = self.probing.as_mut() {
                    // A probe that does not read is given up like a client too slow to read.
                    let pong = sink.send(WsMessage::text(EioPacket::Pong("probe".into()).encode()));
                    let limit = self.io.inner.config.ping_timeout;
                    if !matches!(async_std::future::timeout(limit, pong).await, Ok(Ok(()))) {
                        self.probing = None;
                        return;
                    }
                    // Release a waiting poll so the client can finish the upgrade.
                    self.upgrading = true;
                    let noop = encode_payload(self.eio3, &[EioPacket::Noop]);
                    if let Transport::Polling { waiting } = &mut self.transport
                        && let Some(w) = waiting.take()
                    {
                        let _ = w.try_send(PollAnswer::Payload(noop));
                    }
                } else {
                    self.close("probe without an upgrade");
                }
            }
            EioPacket::Upgrade => match self.probing.take() {
                Some(sink) => {
                    let noop = encode_payload(self.eio3, &[EioPacket::Noop]);
                    if let Transport::Polling { waiting } = &mut self.transport
                        && let Some(w) = waiting.take()
                    {
                        let _ = w.try_send(PollAnswer::Payload(noop));
                    }
                    self.transport = Transport::WebSocket { sink };
                    self.upgrading = false;
                    log::debug!("engine.io session {} upgraded to websocket", self.sid);
                }
                None => self.close("upgrade without a probe"),
            },
            EioPacket::Noop => {}
            EioPacket::Close => self.close("client close"),
            EioPacket::Message(text) if self.io.inner.config.engine_only => {
                self.raw(Event::Text(text))
            }
            EioPacket::Binary(bytes) if self.io.inner.config.engine_only => {
                self.raw(Event::Binary(bytes))
            }
            EioPacket::Message(text) => self.socketio(&text),
            EioPacket::Binary(bytes) => match self.assembling.take() {
                Some(mut a) => {
                    if a.push(bytes) {
                        let (packet, attachments) = a.finish();
                        self.dispatch(packet, attachments);
                    } else {
                        self.assembling = Some(a);
                    }
                }
                None => self.close("binary data without a binary packet"),
            },
            EioPacket::Open(_) | EioPacket::Ping(_) => self.close("invalid packet from client"),
        }
    }

    /// A connection of namespace `nsp` for the app to decide on.
    fn pending(&self, nsp: String, auth: Option<Value>) -> Pending {
        Pending {
            handshake: Handshake {
                sid: self.sid.clone(),
                namespace: nsp,
                auth,
                headers: self.headers.clone(),
                query: self.query.clone(),
                remote: self.remote.clone(),
                protocol: if self.eio3 { 3 } else { 4 },
            },
            tx: self.tx.clone(),
            backlog: self.outbox.backlog().clone(),
        }
    }

    /// Offers a connection to `nsp` to the app (refused at once when the backlog is full).
    fn connect_nsp(&mut self, nsp: String, auth: Option<Value>) {
        self.nsps.insert(nsp.clone(), Nsp::Deciding);
        let pending = self.pending(nsp.clone(), auth);
        if self.io.inner.pending.try_send(pending).is_err() {
            log::warn!("connection backlog full: refusing {}", self.sid);
            self.nsps.remove(&nsp);
            let text = sio::encode_raw(
                PacketType::ConnectError,
                &nsp,
                None,
                0,
                Some(r#"{"message":"server busy"}"#),
            );
            self.queue(EioPacket::Message(text));
        }
    }

    /// A bare Engine.IO message for the app.
    fn raw(&mut self, event: Event) {
        if let Some(Nsp::Open(events)) = self.nsps.get("") {
            let _ = events.try_send(event);
        } else {
            log::debug!(
                "session {}: message before the app accepted it: dropped",
                self.sid
            );
        }
    }

    /// Offers a bare Engine.IO session to the app (no CONNECT comes in that mode).
    fn offer(&mut self) {
        self.nsps.insert(String::new(), Nsp::Deciding);
        let pending = self.pending(String::new(), None);
        if self.io.inner.pending.try_send(pending).is_err() {
            self.close("connection backlog full");
        }
    }

    fn socketio(&mut self, text: &str) {
        if self.assembling.is_some() {
            return self.close("text packet while attachments were expected");
        }
        let packet = match SioPacket::decode(text) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("session {}: invalid socket.io packet: {e}", self.sid);
                return self.close("invalid packet");
            }
        };
        if packet.kind.is_binary() {
            if !packet
                .data
                .as_ref()
                .is_some_and(|d| sio::placeholders_valid(d, packet.attachments))
            {
                return self.close("invalid attachment placeholder");
            }
            self.assembling = Some(sio::Assembler::new(packet));
            return;
        }
        self.dispatch(packet, Vec::new());
    }

    fn dispatch(&mut self, packet: SioPacket, attachments: Vec<Vec<u8>>) {
        let nsp = packet.nsp.clone();
        match packet.kind {
            PacketType::Connect => {
                if !self.io.inner.config.namespaces.contains(&nsp) {
                    // socket.io 2.x servers said it with a bare string.
                    let reason = if self.eio3 {
                        r#""Invalid namespace""#
                    } else {
                        r#"{"message":"Invalid namespace"}"#
                    };
                    let text =
                        sio::encode_raw(PacketType::ConnectError, &nsp, None, 0, Some(reason));
                    self.queue(EioPacket::Message(text));
                    return;
                }
                if self.nsps.contains_key(&nsp) {
                    log::debug!("session {}: second CONNECT of {nsp} ignored", self.sid);
                    return;
                }
                self.connect_nsp(nsp, packet.data);
            }
            PacketType::Disconnect => {
                if let Some(Nsp::Open(events)) = self.nsps.remove(&nsp) {
                    let _ = events.try_send(Event::Closed {
                        reason: "client namespace disconnect".into(),
                    });
                }
                if self.nsps.is_empty() {
                    self.close("client namespace disconnect");
                }
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let Some(Nsp::Open(events)) = self.nsps.get(&nsp) else {
                    log::debug!(
                        "session {}: event on unconnected namespace {nsp} dropped",
                        self.sid
                    );
                    return;
                };
                let Some(Value::Array(mut args)) = packet.data else {
                    return;
                };
                let Value::String(name) = args.remove(0) else {
                    return;
                };
                let _ = events.try_send(Event::Message {
                    name,
                    args,
                    attachments,
                    ack: packet.id,
                });
            }
            PacketType::Ack | PacketType::BinaryAck => {
                if let (Some(Nsp::Open(events)), Some(id), Some(Value::Array(args))) =
                    (self.nsps.get(&nsp), packet.id, packet.data)
                {
                    let _ = events.try_send(Event::Ack {
                        id,
                        args,
                        attachments,
                    });
                }
            }
            PacketType::ConnectError => self.close("CONNECT_ERROR from a client"),
        }
    }

    /// Sends what is queued on the current transport. A client that does not take it within
    /// `limit`, or passes a bound of its backlog meanwhile, is closed.
    async fn flush(&mut self, limit: Duration) {
        if self.outbox.is_empty() {
            return;
        }
        let eio3 = self.eio3;
        match &mut self.transport {
            Transport::Polling { waiting } => {
                if let Some(w) = waiting.take() {
                    let packets = self.outbox.drain();
                    let _ = w.try_send(PollAnswer::Payload(encode_payload(eio3, &packets)));
                }
            }
            Transport::WebSocket { sink } => {
                // Counted until written: a client that does not read holds them here.
                let (mut packets, bytes) = self.outbox.take();
                let failure = {
                    let write = async {
                        while let Some(p) = packets.pop_front() {
                            let msg = match p {
                                EioPacket::Binary(b) if eio3 => {
                                    WsMessage::Binary(eio::encode_binary_frame_v3(&b).into())
                                }
                                EioPacket::Binary(b) => WsMessage::Binary(b.into()),
                                other => WsMessage::text(other.encode()),
                            };
                            sink.feed(msg).await?;
                        }
                        sink.flush().await
                    };
                    let mut write = std::pin::pin!(write);
                    // Usually the socket takes it all at once: the timer (for a client too slow
                    // to read) and the watch on the bounds are armed only when it does not.
                    let written = match (&mut write).now_or_never() {
                        Some(r) => Ok(r),
                        None => {
                            let over = std::pin::pin!(self.outbox.backlog().passed());
                            let either = futures::future::select(write, over);
                            match async_std::future::timeout(limit, either).await {
                                Ok(futures::future::Either::Left((r, _))) => Ok(r),
                                Ok(futures::future::Either::Right(_)) => {
                                    Err("client too slow: outgoing queue full")
                                }
                                Err(_) => Err("client too slow to read"),
                            }
                        }
                    };
                    match written {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(format!("transport error: {e}")),
                        Err(reason) => Some(reason.to_owned()),
                    }
                };
                self.outbox.backlog().refund(bytes);
                if let Some(reason) = failure {
                    self.close(&reason);
                }
            }
        }
    }
}
