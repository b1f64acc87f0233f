//! `herald-cli webhook-listen`: a small webhook receiver for trying webhooks out. It verifies
//! each request's `x-herald-signature` (401 otherwise, the reason on stderr), prints every
//! event of a verified request as one JSON line on stdout, and answers 200.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_core::webhook::{SIGNATURE_HEADER, verify};
use serde_json::value::RawValue;
use tide::listener::{ListenInfo, Listener};

/// Largest request body read, bytes: a batch of 10,000 events is far below.
const MAX_BODY: usize = 16 << 20;

/// What every request's handler shares.
#[derive(Clone)]
struct State {
    /// The signing secret.
    secret: Arc<Vec<u8>>,
    /// How far a signature's time may be from now.
    tolerance: Duration,
    /// Events printed so far.
    printed: Arc<AtomicU64>,
    /// Exit after this many events.
    count: Option<u64>,
}

/// Says `msg` on stderr.
fn note(msg: &str) {
    #[allow(clippy::print_stderr, reason = "a command-line tool's report")]
    {
        eprintln!("herald-cli: {msg}");
    }
}

fn answer(status: u16, body: &str) -> tide::Response {
    let mut res = tide::Response::new(status);
    res.set_content_type("application/json");
    res.set_body(body.to_owned());
    res
}

async fn handle(mut req: tide::Request<State>) -> tide::Result {
    let state = req.state().clone();
    match req.len() {
        Some(n) if n <= MAX_BODY => {}
        Some(_) => return Ok(answer(413, r#"{"ok":0,"errors":["body too large"]}"#)),
        None => {
            return Ok(answer(
                411,
                r#"{"ok":0,"errors":["content-length required"]}"#,
            ));
        }
    }
    let body = req.body_bytes().await?;
    let Some(header) = req.header(SIGNATURE_HEADER).map(|h| h.as_str().to_owned()) else {
        note(&format!(
            "refused a request without {SIGNATURE_HEADER} (401)"
        ));
        return Ok(answer(401, r#"{"ok":0,"errors":["no signature"]}"#));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Err(e) = verify(&state.secret, &header, &body, now, state.tolerance) {
        note(&format!("refused a request: {e} (401)"));
        return Ok(answer(401, r#"{"ok":0,"errors":["bad signature"]}"#));
    }
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        events: Vec<&'a RawValue>,
    }
    let batch: Batch<'_> = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            note(&format!(
                "a signed request is not {{\"events\":[...]}}: {e} (400)"
            ));
            return Ok(answer(400, r#"{"ok":0,"errors":["not an events batch"]}"#));
        }
    };
    let mut out = std::io::stdout().lock();
    for ev in &batch.events {
        // One line per event, its fields in the order sent. A raw line break in JSON can only
        // be whitespace between tokens (inside strings it is escaped).
        let line = ev.get().replace(['\n', '\r'], " ");
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    let printed = state
        .printed
        .fetch_add(batch.events.len() as u64, Ordering::SeqCst)
        + batch.events.len() as u64;
    if state.count.is_some_and(|c| printed >= c) {
        std::process::exit(0);
    }
    Ok(answer(200, r#"{"ok":1}"#))
}

/// Listens on `host:port` until killed (or until `count` events were printed).
///
/// # Errors
/// When the address cannot be bound.
pub async fn run(
    secret: &str,
    host: &str,
    port: u16,
    tolerance: Duration,
    count: Option<u64>,
) -> anyhow::Result<()> {
    if secret.is_empty() {
        anyhow::bail!("--secret is empty: give the secret of the server's webhook.secret");
    }
    let mut app = tide::with_state(State {
        secret: Arc::new(secret.as_bytes().to_vec()),
        tolerance,
        printed: Arc::default(),
        count,
    });
    app.at("/").all(handle);
    app.at("/*").all(handle);
    let mut listener = app
        .bind(format!("{host}:{port}"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))?;
    for info in listener.info() {
        let info: &ListenInfo = &info;
        note(&format!("listening for webhooks on {info}"));
    }
    listener.accept().await?;
    Ok(())
}
