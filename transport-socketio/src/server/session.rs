//! One Engine.IO session: its task, its transport (polling or WebSocket), its queue, its
//! heartbeat and deadlines, and the inputs it takes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::*;

pub(super) type WsSink = async_tungstenite::WebSocketSender<tide::http::upgrade::Connection>;
pub(super) type WsStream = async_tungstenite::WebSocketReceiver<tide::http::upgrade::Connection>;

/// The transport a session currently sends on.
pub(super) enum Transport {
    Polling {
        waiting: Option<async_std::channel::Sender<PollAnswer>>,
    },
    WebSocket {
        sink: WsSink,
    },
}

/// A namespace of the session.
pub(super) enum Nsp {
    /// CONNECT received, the app is deciding.
    Deciding,
    /// Connected: events go to the app.
    Open(EventSink),
}

/// The namespaces of one session by name. Nearly always one (`/`): a list sized to its
/// entries, not a map (a `HashMap` held about 200 bytes per idle connection for that one).
#[derive(Default)]
pub(super) struct Namespaces(Vec<(String, Nsp)>);

impl Namespaces {
    pub(super) fn get(&self, name: &str) -> Option<&Nsp> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, nsp)| nsp)
    }

    pub(super) fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`'s state, replacing the one it had.
    pub(super) fn insert(&mut self, name: String, nsp: Nsp) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => *old = nsp,
            None => {
                self.0.reserve_exact(1);
                self.0.push((name, nsp));
            }
        }
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<Nsp> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        let (_, nsp) = self.0.swap_remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(nsp)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = (String, Nsp)> + '_ {
        self.0.drain(..)
    }
}

/// Where a connected namespace's events go: a channel the app reads
/// ([`Pending::accept`]), or a handler the session calls itself ([`Pending::accept_with`]).
pub(super) enum EventSink {
    Channel(Sender<Event>),
    Handler(Box<dyn Fn(Event) + Send + Sync>),
}

impl EventSink {
    /// Hands `event` over; never waits (the channel is unbounded, a handler must not block).
    pub(super) fn try_send(&self, event: Event) -> Result<(), Event> {
        match self {
            EventSink::Channel(tx) => tx.try_send(event).map_err(|e| e.into_inner()),
            EventSink::Handler(f) => {
                f(event);
                Ok(())
            }
        }
    }
}

/// What one wait of a session's loop brought.
enum Next {
    /// An input from the app, a poll or the server (`Err`: every sender is gone).
    Input(Result<SessionInput, mailbox::Closed>),
    /// A frame of the client's WebSocket at this index of [`Session::streams`]: a packet, or
    /// why that WebSocket is over.
    Frame(usize, Result<EioPacket, String>),
    /// A deadline came (heartbeat, connect).
    Deadline,
}

/// What a frame read from a client's WebSocket means to its session: a packet, or why the
/// WebSocket is over (its end, its close frame, an error, a packet that does not decode).
/// `None` for frames that mean nothing to Engine.IO (WebSocket pings, pongs).
fn frame(
    eio3: bool,
    msg: Option<Result<WsMessage, async_tungstenite::tungstenite::Error>>,
) -> Option<Result<EioPacket, String>> {
    let decoded = match msg {
        None | Some(Ok(WsMessage::Close(_))) => return Some(Err("transport close".into())),
        Some(Err(e)) => return Some(Err(format!("transport error: {e}"))),
        Some(Ok(WsMessage::Text(t))) => EioPacket::decode(t.as_str()),
        // v3 frames its bytes behind a type byte, v4 sends them bare.
        Some(Ok(WsMessage::Binary(b))) if eio3 => eio::decode_binary_frame_v3(&b),
        Some(Ok(WsMessage::Binary(b))) => Ok(EioPacket::Binary(b.to_vec())),
        Some(Ok(_)) => return None,
    };
    Some(decoded.map_err(|e| format!("invalid packet: {e}")))
}

/// The client's WebSockets a session reads: at most two (the transport's and, during an
/// upgrade, the probe's), held in the session: a list was one more allocation per connection.
#[derive(Default)]
pub(super) struct Streams([Option<WsStream>; 2]);

impl Streams {
    /// Adds `stream`; gives it back when two are read already.
    fn push(&mut self, stream: WsStream) -> Result<(), WsStream> {
        match self.0.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(stream);
                Ok(())
            }
            None => Err(stream),
        }
    }

    /// Stops reading the stream at index `i` (it is dropped).
    fn remove(&mut self, i: usize) {
        self.0[i] = None;
    }

    fn clear(&mut self) {
        self.0 = Default::default();
    }

    /// The streams read, each with its index.
    fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut WsStream)> {
        self.0
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|s| (i, s)))
    }
}

/// The next frame that means something from any of `streams`, with its stream's index.
fn poll_frames(
    streams: &mut Streams,
    eio3: bool,
    cx: &mut Context<'_>,
) -> Poll<(usize, Result<EioPacket, String>)> {
    for (i, stream) in streams.iter_mut() {
        while let Poll::Ready(msg) = stream.poll_next_unpin(cx) {
            if let Some(f) = frame(eio3, msg) {
                return Poll::Ready((i, f));
            }
        }
    }
    Poll::Pending
}

/// The handling of an input or a packet that has to wait (a write, an answer).
type Handling<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One wait of a session's loop: its next input or frame, or its next deadline. An input or a
/// frame already waiting is taken without arming a timer (one is made only when the session
/// has to wait).
struct Wait<'a> {
    session: &'a mut Session,
    rx: &'a mailbox::Receiver<SessionInput>,
    wait: Duration,
    timer: Option<Task>,
}

impl Future for Wait<'_> {
    type Output = Next;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Next> {
        let this = self.get_mut();
        if let Poll::Ready(r) = this.rx.recv().poll_unpin(cx) {
            return Poll::Ready(Next::Input(r));
        }
        let s = &mut *this.session;
        if let Poll::Ready((i, f)) = poll_frames(&mut s.streams, s.eio3, cx) {
            return Poll::Ready(Next::Frame(i, f));
        }
        let (runtime, wait) = (&s.io.inner.runtime, this.wait);
        let timer = this.timer.get_or_insert_with(|| runtime.sleep(wait));
        timer.as_mut().poll(cx).map(|()| Next::Deadline)
    }
}

pub(super) struct Session {
    pub(super) io: SocketIo,
    pub(super) sid: String,
    pub(super) tx: mailbox::Sender<SessionInput>,
    pub(super) transport: Transport,
    /// A WebSocket being probed for upgrade (its sink; the session reads its stream in [`Session::streams`]).
    pub(super) probing: Option<WsSink>,
    /// The probe was answered: until the client sends `5`, every poll is answered at once
    /// (with what is queued, or a noop) so the client can pause polling and finish upgrading.
    pub(super) upgrading: bool,
    /// What waits to be sent, counted against the session's bounds.
    pub(super) outbox: Outbox,
    /// The client's WebSockets the session reads (the transport's and, during an upgrade, the
    /// probe's). The session reads them itself, between its other inputs: no task per
    /// connection besides the session's, and a frame is handled where it is read. While the
    /// session handles one (or writes), it reads no other: a client cannot queue more.
    pub(super) streams: Streams,
    pub(super) nsps: Namespaces,
    /// A binary packet waiting for its attachments; boxed: most sessions never have one, and
    /// inline it would be a quarter of every session's size.
    pub(super) assembling: Option<Box<sio::Assembler>>,
    pub(super) headers: Pairs,
    pub(super) query: Pairs,
    /// The client's address. This and the reasons below never grow: boxed `str`s, 8 bytes
    /// smaller than `String`s in every session.
    pub(super) remote: Option<Box<str>>,
    /// Engine.IO v3 (see [`SessionStart::eio3`]).
    pub(super) eio3: bool,
    /// v4: when the server pings next. v3: by when the client must have pinged.
    pub(super) next_ping: Instant,
    pub(super) pong_deadline: Option<Instant>,
    pub(super) connect_deadline: Option<Instant>,
    pub(super) closed: Option<Box<str>>,
    /// Close (with this reason) as soon as everything queued has been sent.
    pub(super) close_when_flushed: Option<Box<str>>,
}

impl Session {
    pub(super) fn new(
        io: SocketIo,
        sid: String,
        tx: mailbox::Sender<SessionInput>,
        start: SessionStart,
    ) -> Session {
        let cfg = io.inner.config.clone();
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
            streams: Streams::default(),
            nsps: Namespaces::default(),
            assembling: None,
            headers: start.headers,
            query: start.query,
            remote: start.remote.map(String::into_boxed_str),
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
            s.read(stream);
            let open = s.io.open_packet(&s.sid, false);
            s.queue(open);
        }
        s
    }

    /// Queues a packet the session made itself; past the byte bound, the session closes.
    pub(super) fn queue(&mut self, p: EioPacket) {
        if !self.outbox.push(p) {
            self.close("outgoing queue over its byte bound");
        }
    }

    /// Starts reading `stream` along with the session's other inputs.
    pub(super) fn read(&mut self, stream: WsStream) {
        // Not reached: a second upgrade is refused before its stream is read.
        if self.streams.push(stream).is_err() {
            log::debug!("a third WebSocket of {}: dropped", self.sid);
        }
    }

    pub(super) async fn run(mut self: Box<Self>, rx: mailbox::Receiver<SessionInput>) {
        log::debug!("engine.io session {} opened", self.sid);
        if self.io.inner.config.engine_only {
            self.offer();
        } else if self.eio3 {
            // socket.io 1.x/2.x clients are in `/` as soon as the handshake is done.
            self.connect_nsp("/".into(), None);
        }
        Box::pin(self.flush(self.io.inner.config.ping_timeout)).await;
        while self.closed.is_none() {
            // The handlers' futures are boxed, and this wait is written out rather than a
            // `timeout` around a future: this loop's own future is what an idle session costs
            // in memory, and it would otherwise hold the largest of them next to the wait.
            let next = Wait {
                wait: self.wait(),
                session: &mut self,
                rx: &rx,
                timer: None,
            }
            .await;
            if let Some(handling) = self.handle(next) {
                handling.await;
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
        // Boxed: what closing holds would otherwise be part of every idle session's future.
        Box::pin(self.end(rx)).await;
    }

    /// Takes what a wait brought: at once, or in the future returned (boxed: see
    /// [`Session::run`]).
    fn handle(&mut self, next: Next) -> Option<Handling<'_>> {
        match next {
            Next::Input(Ok(input)) => Some(Box::pin(self.input(input))),
            Next::Input(Err(_)) => {
                self.close("server gone");
                None
            }
            Next::Frame(_, Ok(p)) => Some(Box::pin(self.packet(p))),
            Next::Frame(i, Err(why)) => {
                // That WebSocket is over: its half of the connection goes now.
                self.streams.remove(i);
                self.close(&why);
                None
            }
            Next::Deadline => {
                self.timers();
                None
            }
        }
    }

    /// How long the session can wait for an input or a frame before a deadline (heartbeat,
    /// connect) comes.
    fn wait(&self) -> Duration {
        let deadline = [
            Some(self.next_ping),
            self.pong_deadline,
            self.connect_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("next_ping is always set");
        deadline.saturating_duration_since(Instant::now())
    }

    /// The session is over: tells its namespaces and the client, then leaves the server's
    /// table of sessions.
    async fn end(mut self: Box<Self>, rx: mailbox::Receiver<SessionInput>) {
        let reason = self.closed.as_deref().unwrap_or_default().to_owned();
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
        // socket. Then the WebSockets' halves the session reads are dropped; the sinks go
        // with the session, and the connection is closed.
        let linger = self.io.inner.config.close_timeout;
        let runtime = self.io.inner.runtime.clone();
        if timeout(&*runtime, linger, Box::pin(self.goodbye(&reason)))
            .await
            .is_none()
        {
            log::debug!(
                "engine.io session {}: no close answer within {linger:?}: dropped",
                self.sid
            );
        }
        self.streams.clear();
        self.outbox.drain();
        // The session (its sinks: the connection) is gone before the table says so.
        let (io, sid) = (self.io.clone(), std::mem::take(&mut self.sid));
        drop(self);
        let emptied = {
            let mut sessions = io.lock();
            sessions.remove(&sid);
            sessions.is_empty()
        };
        if emptied {
            io.inner.emptied.notify(usize::MAX);
        }
    }

    /// Tells the client the session is over when it can still hear it, and waits for its
    /// answer: the end of each WebSocket it has open.
    pub(super) async fn goodbye(&mut self, reason: &str) {
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
        // Each WebSocket is read until the client's close frame, or the end of its stream.
        let eio3 = self.eio3;
        for (_, stream) in self.streams.iter_mut() {
            while let Some(msg) = stream.next().await {
                if matches!(frame(eio3, Some(msg)), Some(Err(_))) {
                    break;
                }
            }
        }
    }

    pub(super) fn close(&mut self, reason: &str) {
        if self.closed.is_none() {
            self.closed = Some(reason.into());
        }
    }

    pub(super) fn timers(&mut self) {
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

    pub(super) async fn input(&mut self, input: SessionInput) {
        match input {
            SessionInput::Packets(ps) => {
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
            SessionInput::TransportError(e) => self.close(&e),
            SessionInput::Poll(answer) => match &mut self.transport {
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
            SessionInput::Upgrade(ws) => {
                if self.probing.is_some() || matches!(self.transport, Transport::WebSocket { .. }) {
                    log::debug!("second upgrade of {}: refused", self.sid);
                    return;
                }
                let (sink, stream) = (*ws).split();
                self.probing = Some(sink);
                self.read(stream);
            }
            SessionInput::SendRaw(packet) => {
                let backlog = self.outbox.backlog();
                backlog.taken(1);
                if matches!(self.nsps.get(""), Some(Nsp::Open(_))) {
                    self.outbox.push_admitted(packet);
                } else {
                    backlog.refund(outbox::cost(&packet));
                }
            }
            SessionInput::Send(out) => {
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
            SessionInput::Decision { nsp, result } if self.io.inner.config.engine_only => {
                match result {
                    Ok(events) => {
                        self.nsps.insert(nsp, Nsp::Open(events));
                        self.connect_deadline = None;
                    }
                    Err(_) => self.close("refused by the app"),
                }
            }
            SessionInput::Decision { nsp, result } => match result {
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
            SessionInput::Disconnect { nsp, close } => {
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
            SessionInput::Shutdown => {
                self.queue(EioPacket::Close);
                self.flush(self.io.inner.config.close_timeout).await;
                self.close("server shutdown");
            }
        }
    }
}
