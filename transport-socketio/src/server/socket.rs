//! What the app holds: the server's configuration, a connection waiting for its decision
//! ([`Pending`]), an accepted one ([`Socket`], [`Connection`]) and its events.

use super::*;

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
    pub headers: Pairs,
    /// Query parameters of that request.
    pub query: Pairs,
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
        self.headers.get_ignore_case(name)
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

/// A connection waiting for the app's decision.
#[derive(Debug)]
pub struct Pending {
    /// What the client presented.
    pub handshake: Handshake,
    pub(super) tx: mailbox::Sender<SessionInput>,
    pub(super) backlog: Arc<Backlog>,
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
    pub(super) fn decide(&self, sink: EventSink) -> Socket {
        let _ = self.tx.try_send(SessionInput::Decision {
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
        let _ = self.tx.try_send(SessionInput::Decision {
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
    pub(super) sid: String,
    pub(super) nsp: String,
    pub(super) tx: mailbox::Sender<SessionInput>,
    pub(super) backlog: Arc<Backlog>,
}

impl Socket {
    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    pub(super) fn send(&self, text: String, attachments: Vec<Vec<u8>>) -> Result<(), EmitError> {
        let n = 1 + attachments.len();
        let bytes = Outgoing::cost(&text, &attachments);
        self.enqueue(
            n,
            bytes,
            SessionInput::Send(Box::new(Outgoing {
                nsp: self.nsp.clone(),
                text,
                attachments,
            })),
        )
    }

    /// Queues `input` worth `n` packets and `bytes` bytes, unless the client is gone or too
    /// far behind.
    pub(super) fn enqueue(
        &self,
        n: usize,
        bytes: usize,
        input: SessionInput,
    ) -> Result<(), EmitError> {
        if self.tx.is_closed() {
            return Err(EmitError::Closed);
        }
        if !self.backlog.admit(n, bytes) {
            let _ = self
                .tx
                .try_send(SessionInput::TransportError("outgoing queue full".into()));
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
    pub(super) fn send_packet(
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
        let _ = self.tx.try_send(SessionInput::Disconnect {
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

    pub(super) fn send_raw(&self, packet: EioPacket) -> Result<(), EmitError> {
        self.enqueue(1, outbox::cost(&packet), SessionInput::SendRaw(packet))
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
