//! `GET /queues/:id` (a client's history, paged from the store within `api.max_answer`) and
//! `GET /watch/:id` (a long poll for the first unacknowledged message).

use std::time::{Duration, Instant};

use herald_core::{Broker, ClientId, Message, MessageId, MessageStore, Payload, Slot, StoreError};
use serde_json::json;
use tide::{Request, StatusCode};

use super::{ApiState, State, client_param, errors, ok, ok_text, query_int, query_pairs, unix_ms};

/// Messages read from the store per round trip while a `/queues` answer is built: what is
/// held in memory at once beyond the answer itself.
const HISTORY_PAGE: usize = 32;

/// One message as a REST answer writes it: keys in alphabetical order, like every answer, and
/// `data` exactly as pushed.
fn message_json(m: &Message) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        channel: &'a [String],
        data: &'a Payload,
        from: &'a str,
        id: u64,
        ts: u64,
    }
    serde_json::to_string(&Out {
        channel: &m.channel,
        data: &m.data,
        from: &m.from,
        id: m.id.0,
        ts: m.ts,
    })
    .expect("strings, numbers and a raw JSON value serialize")
}

pub(super) async fn queues<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let q = query_pairs(&req);
    let client = client_param(&req, &mut errs);
    let now = unix_ms();
    let since = query_int(
        &q,
        "since",
        (now / 1000) as i64 - 300,
        0,
        i64::from(u32::MAX) * 1000,
        &mut errs,
    );
    let limit = query_int(&q, "limit", 10, 1, 1000, &mut errs);
    let after = query_int(&q, "after", 0, 0, i64::MAX, &mut errs);
    let (Some(client), true) = (client, errs.is_empty()) else {
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let read = Read {
        since_ms: since as u64 * 1000,
        after: after as u64,
        limit: limit as usize,
        max_answer: state.max_answer,
        now_ms: now,
    };
    match read_history(&state, &client, &read).await {
        Ok(answer) => Ok(ok_text(answer)),
        Err(e) => Ok(errors(StatusCode::ServiceUnavailable, vec![e.to_string()])),
    }
}

/// What a `/queues` request asks for.
struct Read {
    /// Messages stored at or after this time, Unix milliseconds.
    since_ms: u64,
    /// Only messages with a greater id (the caller's continuation).
    after: u64,
    /// At most this many messages.
    limit: usize,
    /// The answer's size bound, bytes.
    max_answer: usize,
    /// Now, Unix milliseconds (expired messages are left out).
    now_ms: u64,
}

/// The `/queues` answer: `{"messages":[...],"more":true,"ok":1}`, `more` only when the size
/// bound left messages out. Reads the store a page at a time, so neither the answer nor what
/// is held while building it grows past about `max_answer` plus one page.
///
/// The store reads by time (`since_ms`) and gives messages oldest first; each next page starts
/// at the newest time read so far and skips the messages of that millisecond already read.
async fn read_history<S: MessageStore, B: Broker>(
    state: &ApiState<S, B>,
    client: &ClientId,
    read: &Read,
) -> Result<String, StoreError> {
    const OPEN: &str = r#"{"messages":["#;
    const CLOSE_MORE: &str = r#"],"more":true,"ok":1}"#;
    let mut out = String::from(OPEN);
    let (mut count, mut more) = (0usize, false);
    // The next page starts at `cursor_ms`; the first `same_ms` messages it gives were read.
    let (mut cursor_ms, mut same_ms, mut read_upto) = (read.since_ms, 0usize, 0u64);
    'pages: while count < read.limit {
        let want = (read.limit - count).min(HISTORY_PAGE) + same_ms;
        let page = state
            .store
            .history(client, cursor_ms, want, read.now_ms)
            .await?;
        let exhausted = page.len() < want;
        for m in page {
            if m.id.0 <= read_upto {
                continue;
            }
            read_upto = m.id.0;
            if m.ts > cursor_ms {
                (cursor_ms, same_ms) = (m.ts, 1);
            } else if m.ts == cursor_ms {
                same_ms += 1;
            }
            if m.id.0 <= read.after {
                continue;
            }
            let text = message_json(&m);
            if count > 0 && out.len() + 1 + text.len() + CLOSE_MORE.len() > read.max_answer {
                more = true;
                break 'pages;
            }
            if count > 0 {
                out.push(',');
            }
            out.push_str(&text);
            count += 1;
            if count == read.limit {
                break 'pages;
            }
        }
        if exhausted {
            break;
        }
    }
    out.push_str(if more { CLOSE_MORE } else { r#"],"ok":1}"# });
    Ok(out)
}

pub(super) async fn watch<S: MessageStore, B: Broker>(req: Request<State<S, B>>) -> tide::Result {
    let state = req.state().clone();
    let mut errs = Vec::new();
    let q = query_pairs(&req);
    let client = client_param(&req, &mut errs);
    let slot = query_int(&q, "channel", 0, 0, 15, &mut errs);
    let timeout = query_int(&q, "timeout", 30_000, 0, 300_000, &mut errs);
    let (Some(client), true) = (client, errs.is_empty()) else {
        return Ok(errors(StatusCode::BadRequest, errs));
    };
    let slot = Slot::new(slot).expect("checked range");
    let deadline = Instant::now() + Duration::from_millis(timeout as u64);

    // Watch before the first read: a push landing after it wakes us, and so does the start
    // of the client's subscription, after which no push is missed.
    let watch = (state.watch)(&client);
    let answer = loop {
        let r = state
            .store
            .unacked(&client, slot, MessageId::ZERO, 1, unix_ms())
            .await;
        match r {
            Ok(found) if !found.is_empty() => {
                break ok_text(format!(
                    r#"{{"message":{},"ok":1}}"#,
                    message_json(&found[0])
                ));
            }
            Ok(_) => {}
            Err(e) => break errors(StatusCode::ServiceUnavailable, vec![e.to_string()]),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break ok(json!({ "ok": 1, "message": null }));
        }
        log::debug!("watch of {client} slot {slot}: waiting");
        // Woken by a notification, or time's up (then one last read above decides).
        let _ = async_std::future::timeout(left, watch.woken.recv()).await;
    };
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use herald_core::{MemoryBroker, MemoryBrokerNode, MemoryStore, NewMessage, Retention};

    use super::*;

    fn state(store: &MemoryStore) -> ApiState<MemoryStore, MemoryBrokerNode> {
        ApiState::new(
            Arc::new(store.clone()),
            Arc::new(MemoryBroker::new().node()),
            "test",
        )
    }

    /// Reads every page, following `more` with `after`; the ids, and the pages' sizes.
    fn read_all(
        state: &ApiState<MemoryStore, MemoryBrokerNode>,
        client: &ClientId,
        read: Read,
    ) -> (Vec<u64>, Vec<usize>) {
        let (mut ids, mut sizes, mut read) = (Vec::new(), Vec::new(), read);
        loop {
            let text = async_std::task::block_on(read_history(state, client, &read)).unwrap();
            sizes.push(text.len());
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let got: Vec<u64> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_u64().unwrap())
                .collect();
            ids.extend(&got);
            if v.get("more").is_none() {
                return (ids, sizes);
            }
            read.after = *got.last().unwrap();
        }
    }

    #[test]
    fn history_pages_through_messages_of_one_millisecond() {
        // 100 messages stored in the same millisecond, then 50 later: more than three store
        // pages share one `ts`, the case where a time cursor alone would repeat or stall.
        let store = MemoryStore::new(Retention::default());
        let client = ClientId::new("c").unwrap();
        let message = |n: usize| NewMessage {
            from: "s".into(),
            channel: Vec::new(),
            data: Payload::from_json(&format!("\"{n:0>500}\"")).unwrap(),
            ttl: None,
            push: None,
        };
        for n in 0..150 {
            let ts = if n < 100 { 5_000 } else { 6_000 + n as u64 };
            let appended = async_std::task::block_on(store.append(
                &message(n),
                std::slice::from_ref(&client),
                ts,
            ));
            appended.unwrap()[0].as_ref().unwrap();
        }
        let st = state(&store);
        let all: Vec<u64> = (1..=150).collect();
        let read = |after, limit, max_answer| Read {
            since_ms: 0,
            after,
            limit,
            max_answer,
            now_ms: 10_000,
        };
        let (ids, sizes) = read_all(&st, &client, read(0, 1000, 4 << 20));
        assert_eq!((ids, sizes.len()), (all.clone(), 1));
        let (ids, _) = read_all(&st, &client, read(70, 1000, 4 << 20));
        assert_eq!(ids, all[70..].to_vec());
        let (ids, _) = read_all(&st, &client, read(0, 5, 4 << 20));
        assert_eq!(ids, all[..5].to_vec(), "limit counts messages given");
        // A 4 KiB bound: about 7 messages an answer, each answer within it.
        let (ids, sizes) = read_all(&st, &client, read(0, 1000, 4096));
        assert_eq!(ids, all);
        assert!(sizes.len() > 15, "{sizes:?}");
        assert!(sizes.iter().all(|&s| s <= 4096), "{sizes:?}");
        // A bound smaller than one message: one message an answer, never none.
        let (ids, sizes) = read_all(&st, &client, read(95, 1000, 100));
        assert_eq!((ids, sizes.len()), (all[95..].to_vec(), 55));
    }
}
