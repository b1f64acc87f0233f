//! Clients that misbehave on purpose, on plain TCP: a WebSocket that completes its handshake
//! and then never reads or answers, frames written by hand, and a look at a process's open
//! file descriptors. The hostile-client tests use them to see what a server keeps for a client
//! that went silent.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Opens a WebSocket to `path_and_query` (e.g. `/socket.io/?EIO=4&transport=websocket`) on
/// `base` (`http://host:port`) and returns the TCP stream once the server switched protocols.
/// Nothing is read after the handshake unless the caller reads.
///
/// # Errors
/// When the connection fails or the server does not answer `101`.
pub fn open_websocket(base: &str, path_and_query: &str) -> std::io::Result<TcpStream> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host)?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )?;
    // The answer's head, byte by byte: what follows it is the server's first frame.
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed during the WebSocket handshake",
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(format!(
            "expected 101 Switching Protocols, got {head:?}"
        )));
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

/// A client's WebSocket text frame carrying `text` (masked, as RFC 6455 requires of clients;
/// the mask is zero, so the payload reads as it is).
pub fn text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mut f = vec![0x81];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Reads and discards what `s` receives until the server closes the connection (end of
/// stream or reset); `false` when it is still open after `within`.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if s.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .is_err()
        {
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
}

/// The number of open file descriptors of process `pid` (Linux: `/proc/<pid>/fd`).
///
/// # Panics
/// When the process's descriptor table cannot be read.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .count()
}
