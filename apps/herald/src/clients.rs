//! `GET /clients/:id`, the client view (issue 14): the client's sessions online on any node
//! (the broker's registry) and, per slot that read or acknowledged its queue or is online now,
//! its backlog (the store):
//!
//! ```json
//! {"ok":1,"client":"u42",
//!  "sessions":[{"slot":0,"node":"n1","since":1764000000000}],
//!  "slots":[{"slot":0,"unacked":3,"oldest_unacked_ts":1764000000000,"last_acked":17}]}
//! ```
//!
//! An admin call: the store may count every kept message of the client. A malformed id is a
//! 400, a broker or store that cannot answer a 503, both with the usual errors body.

use herald_core::{Broker, MessageStore, Slot};
use serde_json::json;
use tide::{Request, StatusCode};

use crate::api::{State, client_param, errors, ok, unix_ms};

/// The handler of `GET /clients/:id`.
pub async fn client<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let Some(client) = client_param(&req, &mut errs) else {
        log::info!("client view refused: {}", errs.join("; "));
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let sessions = match state.broker.sessions(&client).await {
        Ok(s) => s,
        Err(e) => return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()])),
    };
    let online: Vec<Slot> = sessions.iter().map(|s| s.slot).collect();
    let slots = match state.store.slots(&client, &online, unix_ms()).await {
        Ok(s) => s,
        Err(e) => return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()])),
    };
    let sessions: Vec<_> = sessions
        .iter()
        .map(|s| json!({"slot": s.slot.get(), "node": s.node.as_str(), "since": s.since_ms}))
        .collect();
    let slots: Vec<_> = slots
        .iter()
        .map(|b| {
            json!({
                "slot": b.slot.get(),
                "unacked": b.unacked,
                "oldest_unacked_ts": b.oldest_unacked_ts,
                "last_acked": b.last_acked.map(|id| id.0),
            })
        })
        .collect();
    Ok(ok(json!({
        "ok": 1,
        "client": client.as_str(),
        "sessions": sessions,
        "slots": slots,
    })))
}
