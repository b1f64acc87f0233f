//! HTTP on the wire, for the hostile-client suite: a raw socket that writes exactly the bytes
//! a test gives and reads answers back as the server framed them, and the real HTTP clients
//! of business servers (`node-fetch`, `undici`, Python `requests`, `curl`) run as processes.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{WAIT, clients_dir, test_env};

/// One answer as read off the socket.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// The status code.
    pub status: u16,
    /// The header fields, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the answer says the connection closes after it.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A raw TCP connection to `http://host:port` (blocking, every read bounded by [`WAIT`]).
pub struct RawHttp {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawHttp {
    /// Connects to the `http://host:port` base URL.
    ///
    /// # Panics
    /// When the connection fails.
    pub fn connect(base: &str) -> RawHttp {
        let addr = base.trim_start_matches("http://").trim_end_matches('/');
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        RawHttp {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` as given.
    ///
    /// # Panics
    /// When the write fails.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one more piece; `false` at the end of the stream (or a reset).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("no answer within {WAIT:?}")
            }
            Err(_) => false,
        }
    }

    /// Reads the next answer; `None` when the connection ended before one came. `head_only`:
    /// the answer to a HEAD request (no body whatever its length says).
    ///
    /// # Panics
    /// When nothing arrives within [`WAIT`] or the answer is malformed.
    pub fn answer(&mut self, head_only: bool) -> Option<RawAnswer> {
        let (status, headers, n) = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
                let mut lines = head.split("\r\n");
                let status: u16 = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .and_then(|s| s.parse().ok())
                    .expect("a status line");
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect::<Vec<_>>();
                break (status, headers, end + 4);
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "connection ended inside an answer");
                return None;
            }
        };
        self.buf.drain(..n);
        let mut answer = RawAnswer {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status < 200 || status == 204 || status == 304 {
            return Some(answer);
        }
        if answer
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(e) = find(&self.buf, b"\r\n") {
                        break e;
                    }
                    assert!(self.fill(), "connection ended inside a chunk");
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&self.buf[..line_end]).unwrap().trim(),
                    16,
                )
                .expect("chunk size");
                while self.buf.len() < line_end + 2 + size + 2 {
                    assert!(self.fill(), "connection ended inside a chunk");
                }
                answer
                    .body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    return Some(answer);
                }
            }
        }
        match answer.header("content-length") {
            Some(len) => {
                let len: usize = len.parse().expect("Content-Length");
                while self.buf.len() < len {
                    assert!(self.fill(), "connection ended inside a body");
                }
                answer.body = self.buf.drain(..len).collect();
            }
            None => {
                while self.fill() {}
                answer.body = std::mem::take(&mut self.buf);
            }
        }
        Some(answer)
    }

    /// Reads one unmasked WebSocket text frame (as a server sends it) after a 101 answer.
    ///
    /// # Panics
    /// When the connection ends first or the frame is not a short text frame.
    pub fn ws_text(&mut self) -> String {
        while self.buf.len() < 2 {
            assert!(self.fill(), "connection ended before a frame");
        }
        assert_eq!(self.buf[0], 0x81, "not a final text frame: {:?}", self.buf);
        let (len, start) = match self.buf[1] {
            126 => {
                while self.buf.len() < 4 {
                    assert!(self.fill(), "connection ended inside a frame");
                }
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            n if n < 126 => (usize::from(n), 2),
            n => panic!("unexpected frame length byte {n}"),
        };
        while self.buf.len() < start + len {
            assert!(self.fill(), "connection ended inside a frame");
        }
        let text = String::from_utf8(self.buf[start..start + len].to_vec()).expect("UTF-8");
        self.buf.drain(..start + len);
        text
    }

    /// Whether the server closed the connection (end of stream or reset) within `limit`,
    /// with nothing more to read.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let closed = !self.fill() && self.buf.is_empty();
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        closed
    }

    /// Stops writing (the server sees the end of the stream).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs `it/clients/<script>` with `args` under the test environment's Node or Python
/// (chosen by the script's extension) and returns its last stdout line as JSON.
///
/// # Panics
/// When the script cannot run, fails, or does not print JSON.
pub fn run_client(script: &str, args: &Value) -> Value {
    let env = test_env();
    let path = clients_dir().join(script);
    let mut cmd = if script.ends_with(".py") {
        Command::new(env.join("venv/bin/python"))
    } else {
        let mut c = Command::new("node");
        c.env("NODE_PATH", env.join("node_modules"));
        c
    };
    last_json(cmd.arg(&path).arg(args.to_string()), &path)
}

fn last_json(cmd: &mut Command, path: &Path) -> Value {
    let out = cmd.output().expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "{} printed no JSON (exit {:?}):\n{stdout}\n{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
