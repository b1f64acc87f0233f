//! `POST /push`: the body read within `api.max_body`, the `Idempotency-Key` claim and replay,
//! and the publish with its answer.

use std::sync::atomic::Ordering::Relaxed;

use async_std::io::ReadExt;
use herald_core::{Broker, ClientId, IdempotencyClaim, MessageStore, Published};
use serde_json::json;
use sha2::Digest;
use tide::{Request, Response, StatusCode};

use super::{ApiState, State, errors, ok_text, unix_ms};
use crate::metrics::Metrics;

/// Reads the body up to `max` bytes; `Err` is the answer to give instead.
async fn read_body<S, B>(req: &mut Request<State<S, B>>, max: usize) -> Result<Vec<u8>, Response> {
    let too_large = || {
        errors(
            StatusCode::PayloadTooLarge,
            vec![format!("request body is larger than {max} bytes")],
        )
    };
    if req.len().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let body = req.take_body();
    let mut buf = Vec::new();
    let mut limited = body.take(max as u64 + 1);
    limited.read_to_end(&mut buf).await.map_err(|e| {
        errors(
            StatusCode::BadRequest,
            vec![format!("could not read the body: {e}")],
        )
    })?;
    if buf.len() > max {
        return Err(too_large());
    }
    Ok(buf)
}

pub(super) async fn push<S: MessageStore, B: Broker>(
    mut req: Request<State<S, B>>,
) -> tide::Result {
    let state = req.state().clone();
    let json_type = req
        .content_type()
        .is_some_and(|m| m.essence() == "application/json");
    if !json_type {
        Metrics::inc(&state.metrics.push_rejected);
        return Ok(errors(
            StatusCode::UnsupportedMediaType,
            vec!["Content-Type must be application/json".into()],
        ));
    }
    let body = match read_body(&mut req, state.max_body).await {
        Ok(b) => b,
        Err(res) => {
            Metrics::inc(&state.metrics.push_rejected);
            return Ok(res);
        }
    };
    let key = match idempotency_key(&req) {
        Ok(key) => key,
        Err(e) => {
            Metrics::inc(&state.metrics.push_rejected);
            log::info!("push refused: {e}");
            return Ok(errors(StatusCode::BadRequest, vec![e]));
        }
    };
    if let Some(key) = &key {
        let sha: [u8; 32] = sha2::Sha256::digest(&body).into();
        let claim = state
            .store
            .claim_idempotency(key, sha, unix_ms(), state.idempotency)
            .await;
        match claim {
            Ok(IdempotencyClaim::Claimed) => {}
            Ok(IdempotencyClaim::Replay(answer)) => {
                log::info!("push with Idempotency-Key {key:?} repeated: first answer replayed");
                let mut res = ok_text(answer);
                res.insert_header("Idempotent-Replayed", "true");
                return Ok(res);
            }
            Ok(IdempotencyClaim::InProgress) => {
                log::info!("push with Idempotency-Key {key:?} refused: the first is in progress");
                return Ok(errors(
                    StatusCode::Conflict,
                    vec![
                        "Idempotency-Key: a push with this key is still being stored; retry later"
                            .into(),
                    ],
                ));
            }
            Ok(IdempotencyClaim::Mismatch) => {
                Metrics::inc(&state.metrics.push_rejected);
                log::info!("push with Idempotency-Key {key:?} refused: another body");
                return Ok(errors(
                    StatusCode::UnprocessableEntity,
                    vec!["Idempotency-Key: this key was used with another request body".into()],
                ));
            }
            Err(e) => {
                return Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()]));
            }
        }
    }
    let answer = publish_answer(&state, &body).await;
    if let Some(key) = &key {
        let done = match &answer {
            Ok(text) => state.store.finish_idempotency(key, text).await,
            Err(_) => state.store.release_idempotency(key).await,
        };
        if let Err(e) = done {
            log::warn!(
                "Idempotency-Key {key:?}: the claim could not be settled ({e}); it holds until its lease runs out"
            );
        }
    }
    Ok(answer.map_or_else(|res| res, ok_text))
}

/// The `Idempotency-Key` header, if given: one, of 1 to 255 visible ASCII characters.
fn idempotency_key<S, B>(req: &Request<State<S, B>>) -> Result<Option<String>, String> {
    let Some(values) = req.header("idempotency-key") else {
        return Ok(None);
    };
    let mut values = values.iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err("Idempotency-Key: give it once".into());
    };
    let key = value.as_str();
    if !herald_core::receipts::valid_idempotency_key(key) {
        return Err(format!(
            "Idempotency-Key: expected 1 to 255 visible ASCII characters, found {} bytes: {:?}",
            key.len(),
            key.chars().take(40).collect::<String>()
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Publishes `body` under a new push id: `Ok` with the 200 answer's JSON text once something
/// was stored, `Err` with the answer to give when nothing was.
async fn publish_answer<S: MessageStore, B: Broker>(
    state: &ApiState<S, B>,
    body: &[u8],
) -> Result<String, Response> {
    let now = unix_ms();
    let push_id = state
        .push_ids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .next(now);
    let published = {
        let _writing = state.inflight.enter();
        herald_core::publish(&*state.store, &*state.broker, body, now, push_id).await
    };
    let (stored, failed) = match published {
        Published::Refused(errs) => {
            Metrics::inc(&state.metrics.push_rejected);
            let errs: Vec<String> = herald_core::push::cap_errors(errs, state.max_listed_errors)
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(errors(StatusCode::BadRequest, errs));
        }
        Published::NotStored { error, failed } => {
            if !failed.is_empty() {
                // The store answered, but kept no copy: a failure the metered store cannot see.
                Metrics::inc(&state.metrics.store_errors);
                state
                    .metrics
                    .push_failed_recipients
                    .fetch_add(failed.len() as u64, Relaxed);
            }
            return Err(errors(
                StatusCode::ServiceUnavailable,
                vec![error.to_string()],
            ));
        }
        // Stored: the answer is 200 whatever the broker did.
        Published::Stored { stored, failed, .. } => (stored.len() as u64, failed),
    };
    Metrics::inc(&state.metrics.push_requests);
    state.metrics.pushed_messages.fetch_add(stored, Relaxed);
    state
        .metrics
        .push_failed_recipients
        .fetch_add(failed.len() as u64, Relaxed);
    let mut body = json!({ "ok": 1, "send": stored, "push_id": push_id.as_str() });
    if !failed.is_empty() {
        let failed: Vec<&str> = failed.iter().map(ClientId::as_str).collect();
        body["failed"] = json!(failed);
    }
    Ok(body.to_string())
}
