//! Our HTTP/1.1 server connection: the wire under tide for both of Herald's listeners.
//!
//! tide's own server (async-h1) is unmaintained and answers wrongly in ways clients notice
//! (no `Connection: close` before it closes, two differing `Content-Length` accepted, HTTP/1.0
//! and pipelined requests dropped, no read timeouts). tide stays the framework: this module
//! reads requests off the socket, hands each to [`tide::Server::respond`] as an
//! `tide::http::Request`, and writes the answer.
//!
//! One connection, one task, requests answered in order:
//! 1. the head, at most [`HttpLimits::max_head`] bytes, within [`HttpLimits::head_timeout`]
//!    (the wait for a next request on a kept-alive connection is
//!    [`HttpLimits::idle_timeout`]); parsed and checked by [`head::parse_head`], which refuses
//!    ambiguous framing (400), a missing `Host` (400), a head too large (431);
//! 2. the body, by `Content-Length` or chunked ([`chunked`]), at most
//!    [`HttpLimits::max_body`] bytes, within [`HttpLimits::body_timeout`]. A larger body is not
//!    read: the app sees its declared length (and answers 413), and the connection closes;
//! 3. the app's answer, written within [`HttpLimits::write_timeout`] with `Content-Length`
//!    when its length is known (chunked for HTTP/1.1 otherwise, close-delimited for
//!    HTTP/1.0), and `Connection: close` whenever the connection ends after it;
//! 4. a `101 Switching Protocols` answer with an upgrade hands the socket (and any bytes
//!    already read past the head) to the app through `http_types`' upgrade channel.
//!
//! Any refusal is answered with its status and reason, then the connection closes after
//! lingering briefly so the client reads the answer instead of a reset.
//!
//! [`serve`] is the accept loop: `TCP_NODELAY` on every socket, and at most
//! [`HttpLimits::max_connections`] connections at once (and within a [`SharedLimit`] the
//! listeners of a process may share); beyond that a connection is answered 503 and closed,
//! logged once per [`LOG_EVERY`].

mod answer;
pub mod chunked;
pub mod head;
mod slots;

use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_std::net::{TcpListener, TcpStream};
use futures::io::{AsyncRead, AsyncWrite};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use herald_core::Runtime;
use herald_core::runtime::timeout;
use tide::http::upgrade::Connection;
use tide::http::{Body, Response, StatusCode};

pub use answer::UtcTime;
#[cfg(test)]
use answer::format_date;
use answer::{http_date, write_answer, write_head};
use head::{Framing, Head, Refusal};
use slots::Throttled;
pub use slots::{SharedLimit, Slot};

/// How often refused connections and failed accepts are logged, at most.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 4096;

/// Answers up to this size are written with their head in one write.
const INLINE_BODY: usize = 64 << 10;

/// How long, and how many bytes, a closing connection keeps reading so the peer sees our last
/// answer rather than a reset (its unread bytes would make the close a reset).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request head (request line and header fields), bytes; larger → 431.
    pub max_head: usize,
    /// Largest request body read, bytes; a larger one is not read and the connection closes
    /// after the answer (the app's own limit gives the answer, 413).
    pub max_body: usize,
    /// Time a request head may take to arrive, from its first byte (from the accept for a
    /// connection's first request).
    pub head_timeout: Duration,
    /// Time a request body may take to arrive.
    pub body_timeout: Duration,
    /// Time a kept-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// Time an answer may take to be written (a client that does not read).
    pub write_timeout: Duration,
    /// Connections served at once by this listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// A budget shared with other listeners, if any; beyond it, 503 as well.
    pub shared: Option<Arc<SharedLimit>>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_head: 8 << 10,
            max_body: 1 << 20,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            shared: None,
        }
    }
}

/// Accepts connections on `listener` and serves each with `app` in a task on `runtime`, until
/// the listener fails for good (it never does for a full descriptor table: that is waited out).
pub async fn serve<State: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    app: tide::Server<State>,
    limits: HttpLimits,
    runtime: Arc<dyn Runtime>,
) {
    let limits = Arc::new(limits);
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let open = Arc::new(AtomicUsize::new(0));
    let refused = Throttled::new(format!(
        "connections refused on {addr} (limit {} reached)",
        limits.max_connections
    ));
    let failed = Throttled::new(format!("accepting on {addr} failed"));
    log::info!(
        "HTTP on {addr}: at most {} connections ({} shared with the other listeners), heads {} \
         bytes, bodies {} bytes",
        limits.max_connections,
        limits.shared.as_ref().map_or(0, |s| s.max),
        limits.max_head,
        limits.max_body
    );
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if is_transient(&e) => continue,
            Err(e) => {
                // Out of file descriptors, typically: wait instead of spinning.
                failed.note(&e.to_string());
                runtime.sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&open, limits.max_connections, limits.shared.as_ref()) else {
            refused.note("answered 503");
            refuse_busy(stream);
            continue;
        };
        let app = app.clone();
        let limits = limits.clone();
        let conn = serve_connection(stream, app, limits, slot, runtime.clone());
        runtime.spawn(Box::pin(conn));
    }
}

/// Accept errors that concern one connection only.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Answers 503 without waiting for anything (the answer fits the socket's empty send buffer)
/// and closes.
fn refuse_busy(stream: TcpStream) {
    use futures::FutureExt;
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 24\r\nconnection: close\r\nretry-after: 1\r\n\r\ntoo many connections, retry\n";
    let _ = (&stream).write(&BUSY[..BUSY.len() - 4]).now_or_never();
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Checks the parsers' invariants on `data` as the start of a connection and panics when one
/// breaks: a parsed head never claims more bytes than it was given or than `max_head`, and a
/// chunked body after it decodes the same at once and byte by byte. Shared by the fuzz target
/// and the corpus replay in `cargo test`. `Ok(true)`: a head was parsed; `Ok(false)`: more
/// bytes were needed.
///
/// # Errors
/// The refusal when the head is refused.
#[doc(hidden)]
pub fn check_invariants(data: &[u8]) -> Result<bool, Refusal> {
    const MAX: usize = 8192;
    let Some((head, n)) = head::parse_head(data, MAX)? else {
        return Ok(false);
    };
    assert!(n <= data.len() && n <= MAX, "head of {n} bytes");
    if head.framing == Framing::Chunked {
        let rest = &data[n..];
        let (mut whole, mut bytewise) = (chunked::Decoder::default(), chunked::Decoder::default());
        let (mut out_whole, mut out_bytewise) = (Vec::new(), Vec::new());
        let at_once = whole.feed(rest, &mut out_whole);
        let mut used = 0;
        let mut failed = false;
        for b in rest {
            if bytewise.is_done() {
                break;
            }
            match bytewise.feed(std::slice::from_ref(b), &mut out_bytewise) {
                Ok(k) => used += k,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert_eq!(at_once.is_err(), failed, "at once: {at_once:?}");
        if let Ok(k) = at_once {
            assert_eq!(
                (k, whole.is_done(), &out_whole),
                (used, bytewise.is_done(), &out_bytewise)
            );
        }
    }
    Ok(true)
}

/// A connection's socket and the bytes read from it that are not used yet.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// `buf[pos..]` is not used yet.
    pos: usize,
    /// The timer of its limits.
    runtime: Arc<dyn Runtime>,
}

impl Conn {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads once more into the buffer; `Ok(0)` at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let read = self.stream.read(&mut self.buf[len..]).await;
        self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Reads until a whole head is buffered. `Ok(None)`: the peer closed.
    async fn read_head(&mut self, max_head: usize) -> Result<Option<Head>, Refusal> {
        loop {
            if !self.buffered().is_empty()
                && let Some((head, n)) = head::parse_head(self.buffered(), max_head)?
            {
                self.consume(n);
                return Ok(Some(head));
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Reads a body of `len` bytes. `None`: the peer closed first.
    async fn read_exact_body(&mut self, len: usize) -> Option<Vec<u8>> {
        let mut body = Vec::with_capacity(len);
        let have = self.buffered().len().min(len);
        body.extend_from_slice(&self.buffered()[..have]);
        self.consume(have);
        body.resize(len, 0);
        self.stream.read_exact(&mut body[have..]).await.ok()?;
        Some(body)
    }

    /// Reads a chunked body, at most `max + 1` bytes of data (more is left unread). `Ok(None)`:
    /// the peer closed first.
    async fn read_chunked_body(&mut self, max: usize) -> Result<Option<Vec<u8>>, Refusal> {
        let mut decoder = chunked::Decoder::default();
        let mut body = Vec::new();
        loop {
            let used = decoder
                .feed(self.buffered(), &mut body)
                .map_err(|e| Refusal {
                    status: 400,
                    reason: e.0,
                })?;
            self.consume(used);
            if decoder.is_done() || body.len() > max {
                return Ok(Some(body));
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], limit: Duration) -> bool {
        matches!(
            timeout(&*self.runtime, limit, self.stream.write_all(bytes)).await,
            Some(Ok(()))
        )
    }

    /// Ends the connection so the peer reads our last answer: no more writes, then what it
    /// still sends is read and dropped for a short while.
    async fn linger(mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 4096];
        let mut seen = 0;
        let runtime = self.runtime.clone();
        let drain = async {
            while seen < LINGER_BYTES {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen += n,
                }
            }
        };
        let _ = timeout(&*runtime, LINGER, drain).await;
    }
}

/// Serves HTTP/1.x on one accepted connection until it ends (see the module doc). `slot` is
/// held as long as the connection is open, an upgraded one included.
pub async fn serve_connection<State: Clone + Send + Sync + 'static>(
    stream: TcpStream,
    app: tide::Server<State>,
    limits: Arc<HttpLimits>,
    slot: Slot,
    runtime: Arc<dyn Runtime>,
) {
    // Answers and deliveries are small writes: without it each one written while the previous
    // is unacknowledged waits for the peer's delayed ACK (40 ms).
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("TCP_NODELAY not set: {e}");
    }
    let local = stream.local_addr().ok().map(|a| a.to_string());
    let peer = stream.peer_addr().ok().map(|a| a.to_string());
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        pos: 0,
        runtime: runtime.clone(),
    };
    let mut served = 0u64;
    loop {
        if conn.buffered().is_empty() {
            let wait = if served == 0 {
                limits.head_timeout
            } else {
                limits.idle_timeout
            };
            match timeout(&*runtime, wait, conn.fill()).await {
                Some(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
        let head = match timeout(
            &*runtime,
            limits.head_timeout,
            conn.read_head(limits.max_head),
        )
        .await
        {
            Some(Ok(Some(head))) => head,
            Some(Ok(None)) => return,
            Some(Err(refusal)) => return refuse(conn, refusal, &limits).await,
            None => {
                let late = Refusal {
                    status: 408,
                    reason: "request head not received in time",
                };
                return refuse(conn, late, &limits).await;
            }
        };
        served += 1;
        let Head {
            mut request,
            framing,
            mut keep_alive,
            expect_continue,
            upgrade: _,
            http10,
        } = head;
        let continue_first =
            |conn: &Conn, len: usize| expect_continue && conn.buffered().len() < len;
        let body = match framing {
            Framing::Empty => Body::empty(),
            Framing::Length(n) if n > limits.max_body as u64 => {
                // Not read: the app refuses it by its declared length, then we close.
                keep_alive = false;
                Body::from_reader(async_std::io::empty(), Some(n as usize))
            }
            Framing::Length(n) => {
                let n = n as usize;
                if continue_first(&conn, n)
                    && !conn
                        .write(b"HTTP/1.1 100 Continue\r\n\r\n", limits.write_timeout)
                        .await
                {
                    return;
                }
                match timeout(&*runtime, limits.body_timeout, conn.read_exact_body(n)).await {
                    Some(Some(body)) => Body::from_bytes(body),
                    Some(None) => return,
                    None => return refuse(conn, body_late(), &limits).await,
                }
            }
            Framing::Chunked => {
                if continue_first(&conn, usize::MAX)
                    && !conn
                        .write(b"HTTP/1.1 100 Continue\r\n\r\n", limits.write_timeout)
                        .await
                {
                    return;
                }
                match timeout(
                    &*runtime,
                    limits.body_timeout,
                    conn.read_chunked_body(limits.max_body),
                )
                .await
                {
                    Some(Ok(Some(body))) => {
                        if body.len() > limits.max_body {
                            keep_alive = false;
                        }
                        Body::from_bytes(body)
                    }
                    Some(Ok(None)) => return,
                    Some(Err(refusal)) => return refuse(conn, refusal, &limits).await,
                    None => return refuse(conn, body_late(), &limits).await,
                }
            }
        };
        let head_only = request.method() == tide::http::Method::Head;
        request.set_body(body);
        request.set_peer_addr(peer.as_ref());
        request.set_local_addr(local.as_ref());
        let mut res: Response = match app.respond(request).await {
            Ok(res) => res,
            Err(e) => {
                log::warn!("the app failed a request: {e}");
                Response::new(StatusCode::InternalServerError)
            }
        };
        if res
            .header("connection")
            .is_some_and(|v| v.as_str().eq_ignore_ascii_case("close"))
        {
            keep_alive = false;
        }
        // The app switched protocols (it checked the request's Upgrade header).
        if res.status() == StatusCode::SwitchingProtocols && res.has_upgrade() {
            let mut out = Vec::with_capacity(256);
            write_head(
                &mut out,
                &res,
                None,
                &["content-length", "transfer-encoding"],
            );
            out.extend_from_slice(b"\r\n");
            if !conn.write(&out, limits.write_timeout).await {
                return;
            }
            let rest = conn.buffered().to_vec();
            let upgraded = Upgraded {
                early: rest,
                at: 0,
                stream: conn.stream,
                _slot: slot,
            };
            res.send_upgrade().send(Connection::new(upgraded)).await;
            return;
        }
        let ok = write_answer(&mut conn, res, head_only, http10, &mut keep_alive, &limits).await;
        if !ok {
            return;
        }
        if !keep_alive {
            return conn.linger().await;
        }
    }
}

fn body_late() -> Refusal {
    Refusal {
        status: 408,
        reason: "request body not received in time",
    }
}

/// Answers a refused request and closes.
async fn refuse(mut conn: Conn, refusal: Refusal, limits: &HttpLimits) {
    let status = StatusCode::try_from(refusal.status).unwrap_or(StatusCode::BadRequest);
    let mut out = Vec::with_capacity(256);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\ndate: {}\r\n\r\n{}\n",
        refusal.status,
        status.canonical_reason(),
        refusal.reason.len() + 1,
        http_date(SystemTime::now()),
        refusal.reason,
    );
    log::debug!(
        "HTTP request refused: {} {}",
        refusal.status,
        refusal.reason
    );
    if conn.write(&out, limits.write_timeout).await {
        conn.linger().await;
    }
}

/// An upgraded connection: the bytes read past the 101's request first, then the socket.
/// Holds the listener's slot while it lives.
struct Upgraded {
    early: Vec<u8>,
    at: usize,
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.at < this.early.len() {
            let n = buf.len().min(this.early.len() - this.at);
            buf[..n].copy_from_slice(&this.early[this.at..this.at + n]);
            this.at += n;
            if this.at == this.early.len() {
                this.early = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of requests, so random sequences reach the framing checks and the chunked
    /// decoder (random bytes alone rarely make a head).
    const PIECES: &[&str] = &[
        "POST /push HTTP/1.1\r\n",
        "GET / HTTP/1.0\r\n",
        "Host: h\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 3\r\n",
        "Connection: close, upgrade\r\n",
        "Expect: 100-continue\r\n",
        "\r\n",
        "\n",
        "5\r\nhello\r\n",
        "0\r\n",
        "1;ext\r\n",
        "x",
        "T: v\r\n",
    ];

    proptest! {
        /// What the `http_request` fuzz target checks, on random bytes and random pieces.
        #[test]
        fn any_input_keeps_the_parsers_invariants(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            pieces in proptest::collection::vec(0..PIECES.len(), 0..24),
        ) {
            let _ = check_invariants(&bytes);
            let text: String = pieces.iter().map(|&i| PIECES[i]).collect();
            let _ = check_invariants(text.as_bytes());
        }
    }

    #[test]
    fn dates_are_formatted_as_rfc_9110_asks() {
        assert_eq!(format_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(format_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(format_date(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
    }
}
