//! The access log of the HTTP listeners: one line per request, in place of tide's logger
//! (two `info` lines per request, every health probe and metrics scrape included).

use std::time::Instant;

use log::Level;
use tide::{Next, Request};

/// The access log: one line per request (method, path, status, duration), at `debug` for
/// `/healthy` and `/metrics` (probes and scrapes), at `warn` for a 5xx, else at `info`.
pub struct AccessLog;

#[tide::utils::async_trait]
impl<State: Clone + Send + Sync + 'static> tide::Middleware<State> for AccessLog {
    async fn handle(&self, req: Request<State>, next: Next<'_, State>) -> tide::Result {
        let started = Instant::now();
        let method = req.method();
        let path = req.url().path().to_owned();
        let res = next.run(req).await;
        let status = res.status() as u16;
        let level = level_for(&path, status);
        log::log!(
            level,
            "{method} {path} {status} {:.1}ms",
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
    fn probes_and_scrapes_log_at_debug_and_server_errors_at_warn() {
        assert_eq!(level_for("/healthy", 200), Level::Debug);
        assert_eq!(level_for("/metrics", 401), Level::Debug);
        assert_eq!(level_for("/push", 200), Level::Info);
        assert_eq!(level_for("/push", 401), Level::Info);
        assert_eq!(level_for("/metrics", 503), Level::Warn);
    }
}
