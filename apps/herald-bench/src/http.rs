//! A minimal keep-alive HTTP/1.1 client for `POST /push`: one request at a time per
//! connection, answers read by `Content-Length` or chunked encoding. Enough for an open-loop
//! generator that keeps a pool of these busy.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use async_std::io::BufReader;
use async_std::net::TcpStream;
use async_std::prelude::*;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// One keep-alive connection to a server.
pub struct HttpConn {
    addr: SocketAddr,
    stream: BufReader<TcpStream>,
}

impl HttpConn {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// When the TCP connection fails.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<HttpConn> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("HTTP connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        Ok(HttpConn {
            addr,
            stream: BufReader::new(tcp),
        })
    }

    /// `POST path` with a JSON `body`, and its answer.
    ///
    /// # Errors
    /// When the connection fails or the answer is not HTTP/1.1 as expected; the connection
    /// should then be dropped.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let mut request = Vec::with_capacity(head.len() + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body);
        self.stream.get_mut().write_all(&request).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> anyhow::Result<Answer> {
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        if line.is_empty() {
            bail!("the server closed the connection");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("expected an HTTP status line, found {line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                bail!("expected a header line, found {header:?}");
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .with_context(|| format!("bad Content-Length {value:?}"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("bad chunk size line {line:?}"))?;
                let start = body.len();
                body.resize(start + size, 0);
                self.stream.read_exact(&mut body[start..]).await?;
                let mut crlf = [0u8; 2];
                self.stream.read_exact(&mut crlf).await?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let n = length.context("an answer with neither Content-Length nor chunks")?;
            body.resize(n, 0);
            self.stream.read_exact(&mut body).await?;
        }
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_std::net::TcpListener;

    /// Serves `answers` in order on one connection, each after reading one request head.
    async fn serve_once(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        async_std::task::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut r = BufReader::new(s);
            for a in answers {
                let mut len = 0;
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).await.unwrap();
                    if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if l == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).await.unwrap();
                r.get_mut().write_all(a.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[async_std::test]
    async fn reads_length_and_chunked_answers_on_one_connection() {
        let addr = serve_once(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"ok\":1}",
            "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ])
        .await;
        let mut c = HttpConn::connect(addr).await.unwrap();
        let a = c.post_json("/push", b"{}").await.unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"{\"ok\":1}"[..]));
        let b = c.post_json("/push", b"{}").await.unwrap();
        assert_eq!((b.status, b.body.as_slice()), (400, &b"abcde"[..]));
    }
}
