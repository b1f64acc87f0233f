//! The request head: parsed with `httparse`, then checked the way RFC 9112 asks of a server
//! that must not be confused about where a request ends (§6.3, request smuggling): one
//! `Content-Length` of digits only, `Transfer-Encoding: chunked` alone and never together with
//! `Content-Length`, exactly one `Host` in HTTP/1.1. Pure: bytes in, a request or a refusal
//! out.

use std::str::FromStr;

use tide::http::headers::{HeaderName, HeaderValue};
use tide::http::{Method, Request, Url, Version};

/// Most header lines a request may carry (more is answered 431).
pub const MAX_HEADERS: usize = 100;

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and checked request head.
#[derive(Debug)]
pub struct Head {
    /// Method, URL, version and headers; the body is added by the connection.
    pub request: Request,
    /// Where the body ends.
    pub framing: Framing,
    /// The connection may carry another request after this one (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// The client asks to switch protocols (`Connection: upgrade` and an `Upgrade` header).
    pub upgrade: bool,
    /// HTTP/1.0 (no chunked answers, close unless keep-alive was asked for).
    pub http10: bool,
}

/// Why a head is refused: the status to answer and a reason for the client. The connection is
/// closed after the answer: where the next request would start is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 431, 501 or 505.
    pub status: u16,
    /// Said in the answer's body.
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Parses the head at the start of `buf`. `Ok(None)`: the head is not complete yet and more
/// bytes may come; `Ok(Some((head, n)))`: the head took the first `n` bytes.
///
/// # Errors
/// A [`Refusal`] when the head is malformed, ambiguous, or longer than `max_head` bytes.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<(Head, usize)>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let n = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(_) if buf.len() >= max_head => {
            return Err(refuse(431, "request head too large"));
        }
        Ok(httparse::Status::Complete(_)) | Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(431, "too many header fields"));
        }
        Err(httparse::Error::Version) => {
            return Err(refuse(505, "only HTTP/1.0 and HTTP/1.1 are served"));
        }
        Err(_) => return Err(refuse(400, "malformed request head")),
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(refuse(400, "malformed request line"));
    };
    let http10 = version == 0;
    let method = Method::from_str(method).map_err(|_| refuse(501, "method not implemented"))?;

    let mut host: Option<&str> = None;
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut upgrade_header = false;
    let mut expect_continue = false;
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .ok()
            .filter(|v| v.is_ascii())
            .ok_or(refuse(400, "header value is not ASCII"))?;
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let n = parse_length(part.trim())?;
                if length.is_some_and(|l| l != n) {
                    return Err(refuse(400, "conflicting Content-Length values"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in value.split(',').map(str::trim) {
                // `chunked` must be the only coding, given once: anything else is a body
                // we cannot delimit or decode.
                if !coding.eq_ignore_ascii_case("chunked") || chunked {
                    return Err(refuse(501, "transfer coding not implemented"));
                }
                chunked = true;
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = Some(value.trim());
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
                upgrade_token |= token.eq_ignore_ascii_case("upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_header = true;
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.trim().eq_ignore_ascii_case("100-continue") {
                return Err(refuse(417, "only 100-continue can be expected"));
            }
            expect_continue = !http10;
        }
    }
    let framing = match (transfer_encoding, length) {
        (true, Some(_)) => {
            return Err(refuse(400, "both Content-Length and Transfer-Encoding"));
        }
        (true, None) if http10 => {
            return Err(refuse(400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        (true, None) => Framing::Chunked,
        (false, Some(0) | None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    if hosts > 1 {
        return Err(refuse(400, "more than one Host header"));
    }
    if !http10 && hosts == 0 {
        return Err(refuse(400, "no Host header"));
    }
    let host = host.unwrap_or("");
    if !host.bytes().all(is_host_byte) {
        return Err(refuse(400, "invalid Host header"));
    }
    let url = if target.starts_with('/') {
        let host = if host.is_empty() { "localhost" } else { host };
        Url::parse(&format!("http://{host}{target}"))
    } else if target.starts_with("http://") || target.starts_with("https://") {
        Url::parse(target)
    } else {
        return Err(refuse(
            400,
            "request target must be a path or an absolute URL",
        ));
    }
    .map_err(|_| refuse(400, "invalid request target"))?;

    let mut request = Request::new(method, url);
    request.set_version(Some(if http10 {
        Version::Http1_0
    } else {
        Version::Http1_1
    }));
    for h in parsed.headers.iter() {
        // Both were checked above: a token name, an ASCII value.
        let name = HeaderName::from_str(h.name).map_err(|_| refuse(400, "invalid header name"))?;
        let value = std::str::from_utf8(h.value)
            .ok()
            .and_then(|v| HeaderValue::from_str(v.trim()).ok())
            .ok_or(refuse(400, "header value is not ASCII"))?;
        request.append_header(name, value);
    }
    let head = Head {
        request,
        framing,
        keep_alive: !close && (!http10 || keep_alive_token),
        expect_continue: expect_continue && framing != Framing::Empty,
        upgrade: upgrade_token && upgrade_header,
        http10,
    };
    Ok(Some((head, n)))
}

/// `Content-Length = 1*DIGIT` (no sign, no spaces inside, no overflow).
fn parse_length(s: &str) -> Result<u64, Refusal> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse(400, "invalid Content-Length"));
    }
    s.parse().map_err(|_| refuse(400, "invalid Content-Length"))
}

/// Bytes of a host name, an IPv4/IPv6 literal and a port.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Option<(Head, usize)>, Refusal> {
        parse_head(head.as_bytes(), 8192)
    }

    fn status(head: &str) -> u16 {
        parse(head).expect_err("refused").status
    }

    #[test]
    fn a_plain_request_parses_with_its_url_and_framing() {
        let text = "POST /push?x=1 HTTP/1.1\r\nHost: h:3000\r\nContent-Length: 41\r\n\r\nBODY";
        let (head, n) = parse(text).unwrap().unwrap();
        assert_eq!(n, text.len() - 4);
        assert_eq!(head.request.url().as_str(), "http://h:3000/push?x=1");
        assert_eq!(head.request.method(), Method::Post);
        assert_eq!(head.framing, Framing::Length(41));
        assert!(head.keep_alive && !head.http10 && !head.upgrade && !head.expect_continue);
        assert_eq!(
            head.request.header("content-length").unwrap().as_str(),
            "41"
        );
    }

    #[test]
    fn an_incomplete_head_asks_for_more_until_the_limit() {
        assert!(parse("GET / HTTP/1.1\r\nHost: h\r\n").unwrap().is_none());
        let long = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(status(&long), 431);
        let long = format!("{long}\r\n");
        assert_eq!(status(&long), 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: v\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n")),
            431
        );
    }

    #[test]
    fn ambiguous_lengths_are_refused() {
        let h = "POST / HTTP/1.1\r\nHost: h\r\n";
        assert_eq!(
            status(&format!(
                "{h}Content-Length: 41\r\nContent-Length: 4\r\n\r\n"
            )),
            400
        );
        assert_eq!(status(&format!("{h}Content-Length: 41, 4\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Content-Length: +41\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Content-Length: -1\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Content-Length: 0x10\r\n\r\n")), 400);
        assert_eq!(status(&format!("{h}Content-Length:\r\n\r\n")), 400);
        assert_eq!(
            status(&format!(
                "{h}Content-Length: 99999999999999999999999\r\n\r\n"
            )),
            400
        );
        assert_eq!(
            status(&format!(
                "{h}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            )),
            400
        );
        assert_eq!(
            status(&format!("{h}Transfer-Encoding: gzip, chunked\r\n\r\n")),
            501
        );
        assert_eq!(
            status(&format!("{h}Transfer-Encoding: chunked, chunked\r\n\r\n")),
            501
        );
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        // The same value twice is one length (RFC 9112 §6.3 allows it).
        let (head, _) = parse(&format!(
            "{h}Content-Length: 4\r\nContent-Length: 4\r\n\r\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framing::Length(4));
        let (head, _) = parse(&format!("{h}Transfer-Encoding: Chunked\r\n\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
    }

    #[test]
    fn host_is_required_once_in_http11_and_optional_in_http10() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n"), 400);
        let (head, _) = parse("GET /healthy HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(head.http10 && !head.keep_alive);
        assert_eq!(head.request.url().path(), "/healthy");
        assert_eq!(head.request.version(), Some(Version::Http1_0));
        let (head, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
    }

    #[test]
    fn connection_tokens_decide_keep_alive_and_upgrade() {
        let (head, _) = parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
        let (head, _) = parse(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.keep_alive && head.upgrade);
        let (head, _) = parse(
            "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.expect_continue);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nExpect: later\r\n\r\n"),
            417
        );
    }

    #[test]
    fn bad_request_lines_are_refused() {
        assert_eq!(status("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
        assert_eq!(status("BREW / HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
        assert_eq!(status("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nX: \u{e9}\r\n\r\n"),
            400
        );
        assert_eq!(status("\x00\x01\x02\r\n\r\n"), 400);
    }
}
