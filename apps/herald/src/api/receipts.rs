//! Issue 14 (receipts): `GET /push/:push_id` (where each copy of a push stands) and
//! `DELETE /push/:push_id` (its recall, with the `recalled` webhook events).

use herald_core::webhook::EventKind;
use herald_core::{Broker, CopyState, MessageStore, PushId, Slot};
use serde_json::json;
use tide::{Request, Response, StatusCode};

use super::{ApiState, State, errors, ok, query_int, query_pairs, unix_ms};

/// Largest `limit` of a status page.
const MAX_STATUS_PAGE: i64 = 1000;

/// The `:push_id` path parameter as a push id.
fn push_param<S, B>(req: &Request<State<S, B>>, errs: &mut Vec<String>) -> Option<PushId> {
    match PushId::parse(req.param("push_id").unwrap_or("")) {
        Ok(p) => Some(p),
        Err(e) => {
            errs.push(format!("push_id: {e}"));
            None
        }
    }
}

/// The 404 of an unknown push.
fn no_such_push(push: PushId) -> Response {
    errors(
        StatusCode::NotFound,
        vec![format!(
            "push_id: no push {push} is known (never stored here, expired more than a day ago, \
             or forgotten beyond store.receipts_max_copies)"
        )],
    )
}

/// `GET /push/:push_id?slot=&limit=&after=`: where each copy of the push stands for one slot.
pub(super) async fn push_status<S: MessageStore, B: Broker>(
    req: Request<State<S, B>>,
) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let q = query_pairs(&req);
    let push = push_param(&req, &mut errs);
    let slot = query_int(&q, "slot", 0, 0, 15, &mut errs);
    let limit = query_int(&q, "limit", 100, 1, MAX_STATUS_PAGE, &mut errs) as usize;
    let after = query_int(&q, "after", 0, 0, i64::MAX, &mut errs) as usize;
    let (Some(push), true) = (push, errs.is_empty()) else {
        log::info!("status refused: {}", errs.join("; "));
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let slot = Slot::new(slot).expect("checked range");
    let status = match state.store.push_status(push, slot, unix_ms()).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(no_such_push(push)),
        Err(e) => return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()])),
    };
    if after > status.copies.len() {
        return Ok(errors(
            StatusCode::BadRequest,
            vec![format!(
                "after: {after} is beyond the push's {} recipients (give back a `next` this route answered)",
                status.copies.len()
            )],
        ));
    }
    let mut summary = serde_json::Map::new();
    for state in [
        CopyState::Stored,
        CopyState::Delivered,
        CopyState::Acked,
        CopyState::Expired,
        CopyState::Recalled,
    ] {
        let n = status.copies.iter().filter(|c| c.state == state).count();
        summary.insert(state.as_str().to_owned(), json!(n));
    }
    let page: Vec<serde_json::Value> = status
        .copies
        .iter()
        .skip(after)
        .take(limit)
        .map(|c| {
            json!({
                "client": c.client.as_str(),
                "id": c.id.0,
                "state": c.state.as_str(),
                "delivered_at": c.delivered_at,
                "acked_at": c.acked_at,
            })
        })
        .collect();
    let end = after + page.len();
    let mut body = json!({
        "ok": 1,
        "push_id": push.as_str(),
        "slot": slot.get(),
        "ts": status.ts,
        "expires_at": status.expires_ms,
        "recipients": status.copies.len(),
        "summary": summary,
        "entries": page,
    });
    if end < status.copies.len() {
        body["next"] = json!(end.to_string());
    }
    Ok(ok(body))
}

/// `DELETE /push/:push_id`: hides every copy not yet acknowledged from every slot that has
/// not acknowledged it, and tells the sessions holding one.
pub(super) async fn recall<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let Some(push) = push_param(&req, &mut errs) else {
        log::info!("recall refused: {}", errs.join("; "));
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let (report, clients) = match state.store.recall(push, unix_ms()).await {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(no_such_push(push)),
        Err(e) => return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()])),
    };
    // The store hides the copies from every read from now on; sessions that hold one in
    // memory drop it when told. A failed notice leaves them to deliver what they hold.
    if let Err(e) = state.broker.notify_recall(push, &clients).await {
        log::warn!(
            "recall of {push}: sessions could not all be told ({e}); copies they hold may still be delivered"
        );
    }
    log::info!(
        "recall of {push}: {} copies recalled, {} already acknowledged",
        report.recalled,
        report.already_acked
    );
    recalled_events(&state, push).await;
    Ok(ok(json!({
        "ok": 1,
        "recalled": report.recalled,
        "already_acked": report.already_acked,
    })))
}

/// With webhooks on, a `recalled` event per copy that slot 0 had not acknowledged (`slot` 0:
/// a recall is about the copy in every slot). A repeated recall makes the same events (same
/// ids), so receivers keep them once. A failure is logged: the recall itself stands.
async fn recalled_events<S: MessageStore, B: Broker>(state: &ApiState<S, B>, push: PushId) {
    if !state.webhooks.enabled() {
        return;
    }
    let now = unix_ms();
    let status = match state.store.push_status(push, Slot::default(), now).await {
        Ok(Some(status)) => status,
        Ok(None) => return,
        Err(e) => {
            log::warn!("recall of {push}: no recalled events ({e})");
            return;
        }
    };
    let (recalled, kind) = (CopyState::Recalled, EventKind::Recalled);
    let events = crate::webhook::copy_events(push, &status, recalled, kind, now);
    if let Err(e) = state.webhooks.record(&*state.store, &events).await {
        log::warn!(
            "recall of {push}: {} recalled events not recorded: {e}",
            events.len()
        );
    }
}
