//! A webhook receiver for the tests: a real HTTP server (tide) that records every request
//! Herald POSTs and checks signatures the way docs/rest-api.md tells a receiver to.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::process::{WAIT, unix_secs};
use crate::wait::poll_until;

/// The secret the tests' webhook configurations use.
pub const HOOK_SECRET: &str = "hook-secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    /// `x-herald-signature`.
    pub signature: String,
    /// The body, as sent.
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
}

/// A webhook receiver on `127.0.0.1:<port>/hook`, answering `status` (switchable).
#[derive(Clone)]
pub struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// What it answers now.
    pub status: Arc<AtomicU16>,
    /// The body of every answer (most receivers answer one).
    body: &'static str,
}

impl Receiver {
    /// Starts it on `port` answering `status` with no body, and waits until it accepts
    /// connections.
    pub async fn start(port: u16, status: u16) -> Receiver {
        Receiver::answering(port, status, "").await
    }

    /// Starts it on `port` answering `status` with `body`.
    pub async fn answering(port: u16, status: u16, body: &'static str) -> Receiver {
        let r = Receiver {
            got: Arc::default(),
            status: Arc::new(AtomicU16::new(status)),
            body,
        };
        let mut app = tide::with_state(r.clone());
        app.at("/hook")
            .post(|mut req: tide::Request<Receiver>| async move {
                let body = req.body_string().await?;
                let signature = req
                    .header("x-herald-signature")
                    .map(|h| h.as_str().to_owned())
                    .unwrap_or_default();
                let status = req.state().status.load(Ordering::SeqCst);
                req.state().got.lock().unwrap().push(Got {
                    signature,
                    body,
                    status,
                });
                let mut res = tide::Response::new(status);
                if !req.state().body.is_empty() {
                    res.set_content_type("application/json");
                    res.set_body(req.state().body);
                }
                Ok(res)
            });
        async_std::task::spawn(app.listen(format!("127.0.0.1:{port}")));
        assert!(
            poll_until(WAIT, async || {
                async_std::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await,
            "the receiver did not start"
        );
        r
    }

    /// Every request so far, in the order they came.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The ids of the events that came more than once in requests answered 2xx.
    pub fn twice(&self) -> Vec<String> {
        self.delivered()
            .into_iter()
            .filter(|(_, (_, n))| *n > 1)
            .map(|(id, _)| id)
            .collect()
    }

    /// The events of the requests answered 2xx, by id, with how often each came.
    pub fn delivered(&self) -> BTreeMap<String, (Value, usize)> {
        let mut out: BTreeMap<String, (Value, usize)> = BTreeMap::new();
        for g in self.got().iter().filter(|g| (200..300).contains(&g.status)) {
            let v: Value = serde_json::from_str(&g.body).expect("a JSON body");
            for ev in v["events"].as_array().expect("an events array") {
                let id = ev["id"].as_str().unwrap().to_owned();
                out.entry(id).or_insert((ev.clone(), 0)).1 += 1;
            }
        }
        out
    }
}

/// Checks a request's signature the way the docs tell a receiver to, without Herald's code:
/// `t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, `t` within 300 s of now.
pub fn assert_signed(g: &Got) {
    let mut t = None;
    let mut v1 = None;
    for part in g.signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_owned()),
            Some(("v1", v)) => v1 = Some(v.to_owned()),
            _ => panic!("unexpected signature part {part:?} in {:?}", g.signature),
        }
    }
    let (t, v1) = (t.expect("t="), v1.expect("v1="));
    let ts: u64 = t.parse().unwrap();
    assert!(
        ts.abs_diff(unix_secs()) <= 300,
        "signature time {ts} is not now"
    );
    let mut mac = <Hmac<Sha256>>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", g.body).as_bytes());
    let want = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    assert_eq!(v1, want, "signature of {:?}", g.body);
}
