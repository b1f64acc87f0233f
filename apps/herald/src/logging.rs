//! The node's log: its format (`log.format`), and the access log of the HTTP listeners (one
//! line per request, in place of tide's logger: two `info` lines per request, every health
//! probe and metrics scrape included).
//!
//! - `text` (the default): one readable line per record, written here:
//!   `2026-12-02T11:40:54.123Z INFO  herald: herald started: role=all ...` (UTC, RFC 3339 with
//!   milliseconds; the level; the target; the message).
//! - `json`: femme, as release builds logged before `log.format` existed, so that pipelines
//!   reading it keep working. femme chooses its form by build profile and does not let us
//!   choose: one JSON object per line (ndjson: `level` as a number, `time` in epoch
//!   milliseconds, `msg`) in release builds, its pretty multi-colour lines in debug builds.

use std::fmt;
use std::io::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use herald_socketio::http1::UtcTime;
use log::{Level, LevelFilter, Log, Metadata, Record};
use tide::{Next, Request};

/// How the node writes its log (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per record (see the module docs).
    Text,
    /// femme: ndjson in release builds, pretty in debug builds.
    Json,
}

/// Installs the logger for `format` at `level`, once, before anything logs.
pub fn init(format: LogFormat, level: LevelFilter) {
    match format {
        LogFormat::Json => femme::with_level(level),
        LogFormat::Text => {
            if log::set_boxed_logger(Box::new(TextLogger)).is_ok() {
                log::set_max_level(level);
            }
        }
    }
}

/// The `text` format's logger: each record as one line on standard output.
struct TextLogger;

impl Log for TextLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = text_line(
            SystemTime::now(),
            record.level(),
            record.target(),
            record.args(),
        );
        // One write per line: lines of concurrent tasks never interleave.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stdout().lock().flush();
    }
}

/// One record in the `text` format, newline included.
fn text_line(at: SystemTime, level: Level, target: &str, message: &fmt::Arguments<'_>) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let t = UtcTime::from_unix(since.as_secs());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {level:<5} {target}: {message}\n",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        since.subsec_millis()
    )
}

/// The access log: one line per request (method, path, status, duration, and for a refused
/// request why: [`Refusal`]), at `debug` for `/healthy` and `/metrics` (probes and scrapes),
/// at `warn` for a 5xx, else at `info`.
pub struct AccessLog;

/// Why a request was refused, attached to its answer: the access line says it, so a refused
/// request is logged once.
#[derive(Debug, Clone)]
pub struct Refusal(pub String);

#[tide::utils::async_trait]
impl<State: Clone + Send + Sync + 'static> tide::Middleware<State> for AccessLog {
    async fn handle(&self, req: Request<State>, next: Next<'_, State>) -> tide::Result {
        let started = Instant::now();
        let method = req.method();
        let path = req.url().path().to_owned();
        let res = next.run(req).await;
        let status = res.status() as u16;
        let level = level_for(&path, status);
        let why = res
            .ext::<Refusal>()
            .map_or(String::new(), |r| format!(": {}", r.0));
        log::log!(
            level,
            "{method} {path} {status} {:.1}ms{why}",
            started.elapsed().as_secs_f64() * 1000.0
        );
        Ok(res)
    }
}

/// The level of a request's access line.
fn level_for(path: &str, status: u16) -> Level {
    if status >= 500 {
        Level::Warn
    } else if path == "/healthy" || path == "/metrics" {
        Level::Debug
    } else {
        Level::Info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_line_has_utc_time_with_milliseconds_the_level_the_target_and_the_message() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_796_211_654_123);
        let line = text_line(
            at,
            Level::Warn,
            "herald::api",
            &format_args!("refused: {}", 3),
        );
        assert_eq!(
            line,
            "2026-12-02T11:40:54.123Z WARN  herald::api: refused: 3\n"
        );
        let epoch = text_line(UNIX_EPOCH, Level::Info, "t", &format_args!("m"));
        assert_eq!(epoch, "1970-01-01T00:00:00.000Z INFO  t: m\n");
    }

    #[test]
    fn probes_and_scrapes_log_at_debug_and_server_errors_at_warn() {
        assert_eq!(level_for("/healthy", 200), Level::Debug);
        assert_eq!(level_for("/metrics", 401), Level::Debug);
        assert_eq!(level_for("/push", 200), Level::Info);
        assert_eq!(level_for("/push", 401), Level::Info);
        assert_eq!(level_for("/metrics", 503), Level::Warn);
    }
}
