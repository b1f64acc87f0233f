//! A session's packets: Engine.IO packets from the client, Socket.IO packets on top of them
//! (namespaces, events, acknowledgements), and flushing what is queued to the transport.

use super::session::*;
use super::*;

impl Session {
    pub(super) async fn packet(&mut self, p: EioPacket) {
        match p {
            EioPacket::Ping(data) if self.eio3 && data != "probe" => {
                let now = Instant::now();
                let cfg = &self.io.inner.config;
                self.next_ping = now + cfg.ping_interval + cfg.ping_timeout;
                self.queue(EioPacket::Pong(data));
            }
            EioPacket::Pong(_) => {
                if self.pong_deadline.take().is_some() {
                    let now = Instant::now();
                    self.next_ping = now + self.io.inner.config.ping_interval;
                }
            }
            EioPacket::Ping(data) if data == "probe" => {
                if let Some(sink) = self.probing.as_mut() {
                    // A probe that does not read is given up like a client too slow to read.
                    let pong = sink.send(WsMessage::text(EioPacket::Pong("probe".into()).encode()));
                    let limit = self.io.inner.config.ping_timeout;
                    let runtime = &*self.io.inner.runtime;
                    if !matches!(timeout(runtime, limit, pong).await, Some(Ok(()))) {
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
                        let (packet, attachments) = (*a).finish();
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
    pub(super) fn pending(&self, nsp: String, auth: Option<Value>) -> Pending {
        Pending {
            handshake: Handshake {
                sid: self.sid.clone(),
                namespace: nsp,
                auth,
                headers: self.headers.clone(),
                query: self.query.clone(),
                remote: self.remote.as_deref().map(str::to_owned),
                protocol: if self.eio3 { 3 } else { 4 },
            },
            tx: self.tx.clone(),
            backlog: self.outbox.backlog().clone(),
        }
    }

    /// Offers a connection to `nsp` to the app (refused at once when the backlog is full).
    pub(super) fn connect_nsp(&mut self, nsp: String, auth: Option<Value>) {
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
    pub(super) fn raw(&mut self, event: Event) {
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
    pub(super) fn offer(&mut self) {
        self.nsps.insert(String::new(), Nsp::Deciding);
        let pending = self.pending(String::new(), None);
        if self.io.inner.pending.try_send(pending).is_err() {
            self.close("connection backlog full");
        }
    }

    pub(super) fn socketio(&mut self, text: &str) {
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
            self.assembling = Some(Box::new(sio::Assembler::new(packet)));
            return;
        }
        self.dispatch(packet, Vec::new());
    }

    pub(super) fn dispatch(&mut self, packet: SioPacket, attachments: Vec<Vec<u8>>) {
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
    pub(super) async fn flush(&mut self, limit: Duration) {
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
                            match timeout(&*self.io.inner.runtime, limit, either).await {
                                Some(futures::future::Either::Left((r, _))) => Ok(r),
                                Some(futures::future::Either::Right(_)) => {
                                    Err("client too slow: outgoing queue full")
                                }
                                None => Err("client too slow to read"),
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
