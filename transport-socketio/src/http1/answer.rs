//! Writing an answer: the status line and header fields (with `Content-Length` or chunked
//! framing, `Connection: close` when the connection ends, the `Date`), the body, all within
//! the write timeout.

use super::*;

/// Writes the status line and the answer's header fields (without those in `skip`) into
/// `out`, with `Content-Length` when `len` is given, and the date.
pub(super) fn write_head(out: &mut Vec<u8>, res: &Response, len: Option<usize>, skip: &[&str]) {
    let status = res.status();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status as u16,
        status.canonical_reason()
    );
    for (name, values) in res.iter() {
        if skip.iter().any(|s| name.as_str().eq_ignore_ascii_case(s)) {
            continue;
        }
        for v in values.iter() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_str().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(len) = len {
        let _ = write!(out, "content-length: {len}\r\n");
    }
    let _ = write!(out, "date: {}\r\n", http_date(SystemTime::now()));
}

/// Writes an answer (see the module doc). `false`: the connection failed or timed out.
pub(super) async fn write_answer(
    conn: &mut Conn,
    mut res: Response,
    head_only: bool,
    http10: bool,
    keep_alive: &mut bool,
    limits: &HttpLimits,
) -> bool {
    const SKIP: &[&str] = &["content-length", "transfer-encoding", "connection", "date"];
    let status = res.status() as u16;
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let mut body = res.take_body();
    let len = body.len();
    // Without a length, an HTTP/1.0 answer ends where the connection does.
    if len.is_none() && http10 && !no_body && !head_only {
        *keep_alive = false;
    }
    let mut out = Vec::with_capacity(256 + len.filter(|&l| l <= INLINE_BODY).unwrap_or(0));
    write_head(&mut out, &res, if no_body { None } else { len }, SKIP);
    let chunked = len.is_none() && !http10 && !no_body;
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !*keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if no_body || head_only {
        return conn.write(&out, limits.write_timeout).await;
    }
    match len {
        Some(len) if len <= INLINE_BODY => {
            let at = out.len();
            if body.read_to_end(&mut out).await.is_err() || out.len() - at != len {
                log::warn!("an answer's body did not match its length");
                return false;
            }
            conn.write(&out, limits.write_timeout).await
        }
        _ => {
            if !conn.write(&out, limits.write_timeout).await {
                return false;
            }
            let mut chunk = vec![0u8; 16 << 10];
            let mut framed = Vec::new();
            loop {
                let n = match body.read(&mut chunk).await {
                    Ok(n) => n,
                    Err(e) => {
                        log::warn!("an answer's body failed: {e}");
                        return false;
                    }
                };
                framed.clear();
                if chunked {
                    let _ = write!(framed, "{n:x}\r\n");
                    framed.extend_from_slice(&chunk[..n]);
                    framed.extend_from_slice(b"\r\n");
                } else {
                    framed.extend_from_slice(&chunk[..n]);
                }
                if !framed.is_empty() && !conn.write(&framed, limits.write_timeout).await {
                    return false;
                }
                if n == 0 {
                    return true;
                }
            }
        }
    }
}

/// `Date` header value (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`; the text is
/// made once per second per thread.
pub(super) fn http_date(now: SystemTime) -> String {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, format_date(secs));
        }
        c.1.clone()
    })
}

pub(super) fn format_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = UtcTime::from_unix(secs);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(secs / 86_400 % 7) as usize],
        t.day,
        MONTHS[(t.month - 1) as usize],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// A moment as a UTC calendar date and time of day (HTTP dates here; log lines in the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// The year (proleptic Gregorian).
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59.
    pub second: u32,
}

impl UtcTime {
    /// The moment `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: u64) -> UtcTime {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // The proleptic Gregorian calendar from day 0 = 1970-01-01, by 400-year eras of
        // 146,097 days counted from 0000-03-01 (so the leap day is the era year's last day).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        UtcTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u32,
            day: day as u32,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }
}
