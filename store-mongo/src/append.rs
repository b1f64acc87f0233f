//! Appends: a batch of pushes (everything one node has queued while the previous batch was
//! written) costs three round trips whatever its number of recipients: one `update` command
//! taking every client's ids, one `find` reading them back, one `insert` of every copy.
//! Batches of more than [`CHUNK`] distinct clients take ids in [`CHUNK`]-sized commands; the
//! driver splits the insert at the server's message size.
//!
//! ## How ids are taken
//!
//! Each client's counter document is `{_id: client, n: last id, r: [{p: token, k: count},
//! ...]}`. A batch draws a random token (an ObjectId) and, in one `update` command of upserts
//! (one statement per client: `$inc` and `$push` with `$slice`), adds to each `n` the number
//! `k` of copies the batch holds for that client and appends `{p: token, k}` to `r`, which
//! keeps the last [`LOG_LEN`] takes in the order they were applied. Each statement is atomic
//! on its document, so a take is a range `[n - k + 1, n]` that no other take of any node
//! shares. An `update` cannot answer with the values it wrote, so a `find` reads `n` and `r`
//! back: the batch's range ends at `n` minus the counts of the takes logged after its own.
//! When more than [`LOG_LEN`] - 1 other takes of one client landed between the two (many API
//! nodes pushing to one client at that instant), or a take logged after ours has no count
//! (written by a version before this scheme, which logged `{p, n}`), that client's ids are
//! taken again with a new token (the range is a hole), up to [`TAKE_ATTEMPTS`] times.
//!
//! Counters are the only source of ids, as before this scheme: data written by an earlier
//! version (`{_id, n}` alone, or `r` entries of the form `{p, n}`) keeps counting from its
//! `n`, so ids never go back.

use std::collections::HashMap;

use futures::TryStreamExt;
use herald_core::{AppendResult, ClientId, MessageId, NewMessage, StoreError};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};

use crate::{MongoStore, int, millis, unavailable};

/// Most distinct clients whose ids one `update` (and its `find`) takes: a push to the
/// 10,000-recipient limit is one command (about 2 MB, far below the 16 MB command limit).
pub(crate) const CHUNK: usize = 10_000;

/// Takes remembered per counter: the most takes of one client that may land between a
/// batch's `update` and its `find`, plus one, before that batch takes again. Each node has
/// one batch under way, so this is about the number of API nodes pushing to one client at
/// one instant. Every entry is read back by the `find`, so it is kept short.
pub(crate) const LOG_LEN: i32 = 8;

/// How often a batch takes ids for a client whose take was pushed out of the log.
const TAKE_ATTEMPTS: usize = 3;

/// One push waiting to be written.
pub(crate) struct AppendReq {
    /// The message.
    pub(crate) msg: NewMessage,
    /// Its recipients, in the caller's order.
    pub(crate) recipients: Vec<ClientId>,
    /// Its store time, Unix milliseconds.
    pub(crate) now_ms: u64,
}

/// The answer to one push.
pub(crate) type AppendAnswer = Result<AppendResult, StoreError>;

/// How many ids each client of a batch needs, in order of first appearance.
fn demand(reqs: &[AppendReq]) -> Vec<(&str, i64)> {
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<(&str, i64)> = Vec::new();
    for client in reqs.iter().flat_map(|r| &r.recipients) {
        let client = client.as_str();
        match at.get(client) {
            Some(&i) => out[i].1 += 1,
            None => {
                at.insert(client, out.len());
                out.push((client, 1));
            }
        }
    }
    out
}

/// Hands each client's range `[last - k + 1, last]` to its copies in batch order: per push,
/// per recipient, the id or why there is none.
fn assign(
    reqs: &[AppendReq],
    demand: &[(&str, i64)],
    lasts: &HashMap<&str, Result<i64, StoreError>>,
) -> Vec<Vec<Result<i64, StoreError>>> {
    let mut next: HashMap<&str, Result<i64, StoreError>> = demand
        .iter()
        .map(|(client, k)| {
            let first = match lasts.get(client) {
                Some(Ok(last)) => Ok(last - k + 1),
                Some(Err(e)) => Err(e.clone()),
                None => Err(StoreError::Unavailable("no id was taken".into())),
            };
            (*client, first)
        })
        .collect();
    reqs.iter()
        .map(|r| {
            r.recipients
                .iter()
                .map(|c| match next.get_mut(c.as_str()) {
                    Some(Ok(id)) => {
                        *id += 1;
                        Ok(*id - 1)
                    }
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(StoreError::Unavailable("no id was taken".into())),
                })
                .collect()
        })
        .collect()
}

/// The statement of the `update` command that takes `k` ids of `client` under `token`.
fn take_statement(client: &str, k: i64, token: ObjectId) -> Document {
    doc! {
        "q": {"_id": client},
        "u": {
            "$inc": {"n": k},
            "$push": {"r": {"$each": [{"p": token, "k": k}], "$slice": -LOG_LEN}},
        },
        "upsert": true,
    }
}

/// The last id of the take logged under `token` in `counter` (`{n, r}` as read back): `n`
/// minus the counts of the takes logged after it. `None` when the take is no longer in the
/// log, or a take after it carries no count (then its range cannot be known).
fn range_end(counter: &Document, token: ObjectId) -> Option<i64> {
    let n = int(counter, "n")?;
    let log = counter.get_array("r").ok()?;
    let at = log
        .iter()
        .position(|e| e.as_document().and_then(|e| e.get_object_id("p").ok()) == Some(token))?;
    let mut after = 0_i64;
    for entry in &log[at + 1..] {
        after = after.checked_add(int(entry.as_document()?, "k")?)?;
    }
    n.checked_sub(after)
}

/// The statement indexes of a write command's `writeErrors`, with their codes.
pub(crate) fn write_errors(reply: &Document) -> Vec<(usize, i32, String)> {
    let Ok(errors) = reply.get_array("writeErrors") else {
        return Vec::new();
    };
    errors
        .iter()
        .filter_map(Bson::as_document)
        .filter_map(|e| {
            let index = usize::try_from(int(e, "index")?).ok()?;
            let code = i32::try_from(int(e, "code").unwrap_or(0)).unwrap_or(0);
            let message = e.get_str("errmsg").unwrap_or("").to_owned();
            Some((index, code, message))
        })
        .collect()
}

/// A duplicate key: two first takes of one client raced to create its counter.
const DUPLICATE_KEY: i32 = 11000;

impl MongoStore {
    /// Writes a batch of pushes; one answer per push, in order.
    pub(crate) async fn commit_appends(&self, reqs: Vec<AppendReq>) -> Vec<AppendAnswer> {
        let demand = demand(&reqs);
        let lasts = self.take_ids(&demand).await;
        let ids = assign(&reqs, &demand, &lasts);
        let ttl_default = self.retention.ttl;
        let mut docs = Vec::new();
        // Per document inserted: (push, recipient).
        let mut owners = Vec::new();
        for (p, (req, ids)) in reqs.iter().zip(&ids).enumerate() {
            let now = i64::try_from(req.now_ms).unwrap_or(i64::MAX);
            let t = DateTime::from_millis(now);
            let ttl = req.msg.ttl.unwrap_or(ttl_default);
            let x = DateTime::from_millis(now.saturating_add(millis(ttl)));
            for (r, (client, id)) in req.recipients.iter().zip(ids).enumerate() {
                if let Ok(id) = id {
                    owners.push((p, r));
                    docs.push(doc! {
                        "c": client.as_str(), "i": *id, "f": &req.msg.from, "ch": &req.msg.channel,
                        "d": req.msg.data.json(), "t": t, "a": 0_i32, "x": x,
                    });
                }
            }
        }
        let mut results: Vec<Vec<Result<MessageId, StoreError>>> = ids
            .into_iter()
            .map(|ids| {
                ids.into_iter()
                    .map(|id| id.map(|id| MessageId(u64::try_from(id).unwrap_or(0))))
                    .collect()
            })
            .collect();
        if !docs.is_empty()
            && let Err(e) = self.messages.insert_many(docs).ordered(false).await
        {
            let (failed, why): (Vec<usize>, StoreError) = match *e.kind {
                mongodb::error::ErrorKind::InsertMany(ref ime)
                    if ime.write_concern_error.is_none() =>
                {
                    let failed = ime.write_errors.iter().flatten().map(|we| we.index);
                    let why = StoreError::Rejected("the message could not be written".into());
                    (failed.collect(), why)
                }
                _ => ((0..owners.len()).collect(), unavailable(e)),
            };
            for i in failed {
                if let Some(&(p, r)) = owners.get(i) {
                    results[p][r] = Err(why.clone());
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                // Nothing stored for this push: the store is down (or refused every copy).
                match r.iter().find_map(|x| x.as_ref().err()) {
                    Some(e) if !r.is_empty() && r.iter().all(Result::is_err) => Err(e.clone()),
                    _ => Ok(r),
                }
            })
            .collect()
    }

    /// Takes `k` ids of each client: per client, the last id of its range.
    async fn take_ids<'a>(
        &self,
        demand: &[(&'a str, i64)],
    ) -> HashMap<&'a str, Result<i64, StoreError>> {
        let mut lasts = HashMap::with_capacity(demand.len());
        let mut pending: Vec<(&'a str, i64)> = demand.to_vec();
        for attempt in 1..=TAKE_ATTEMPTS {
            let mut again = Vec::new();
            for chunk in pending.chunks(CHUNK) {
                let token = ObjectId::new();
                match self.take_chunk(chunk, token).await {
                    Ok(taken) => {
                        for (i, outcome) in taken.into_iter().enumerate() {
                            match outcome {
                                Taken::Last(last) => {
                                    lasts.insert(chunk[i].0, Ok(last));
                                }
                                Taken::Retry if attempt < TAKE_ATTEMPTS => again.push(chunk[i]),
                                Taken::Retry => {
                                    lasts.insert(
                                        chunk[i].0,
                                        Err(StoreError::Unavailable(format!(
                                            "ids of {} could not be taken: {TAKE_ATTEMPTS} \
                                             attempts lost to concurrent pushes",
                                            chunk[i].0
                                        ))),
                                    );
                                }
                                Taken::Failed(e) => {
                                    lasts.insert(chunk[i].0, Err(e));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        for (client, _) in chunk {
                            lasts.insert(*client, Err(e.clone()));
                        }
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            log::debug!("{} clients' ids taken again", again.len());
            pending = again;
        }
        lasts
    }

    /// One `update` taking the ids of `chunk` under `token`, one `find` reading them back.
    ///
    /// # Errors
    /// When the `update` command failed as a whole (nothing can be said of any client).
    async fn take_chunk(
        &self,
        chunk: &[(&str, i64)],
        token: ObjectId,
    ) -> Result<Vec<Taken>, StoreError> {
        let statements: Vec<Document> = chunk
            .iter()
            .map(|(client, k)| take_statement(client, *k, token))
            .collect();
        let reply = self
            .db
            .run_command(doc! {
                "update": self.counters.name(),
                "updates": statements,
                "ordered": false,
            })
            .await
            .map_err(unavailable)?;
        if let Ok(wce) = reply.get_document("writeConcernError") {
            return Err(StoreError::Unavailable(format!("counters: {wce}")));
        }
        let mut out: Vec<Option<Taken>> = (0..chunk.len()).map(|_| None).collect();
        for (index, code, message) in write_errors(&reply) {
            if let Some(slot) = out.get_mut(index) {
                *slot = Some(if code == DUPLICATE_KEY {
                    Taken::Retry
                } else {
                    Taken::Failed(StoreError::Unavailable(format!(
                        "counter of {}: {message}",
                        chunk[index].0
                    )))
                });
            }
        }
        let written: Vec<&str> = chunk
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.is_none())
            .map(|((c, _), _)| *c)
            .collect();
        let mut found: HashMap<String, i64> = HashMap::with_capacity(written.len());
        if !written.is_empty() {
            let n = i64::try_from(written.len()).unwrap_or(i64::MAX);
            let mut cursor = self
                .counters
                .find(doc! {"_id": {"$in": &written}})
                .projection(doc! {"n": 1, "r": 1})
                // One reply: a batch exactly as large as the result would leave a cursor open.
                .limit(n)
                .batch_size(u32::try_from(written.len() + 1).unwrap_or(u32::MAX))
                .await
                .map_err(unavailable)?;
            while let Some(counter) = cursor.try_next().await.map_err(unavailable)? {
                if let (Ok(client), Some(last)) =
                    (counter.get_str("_id"), range_end(&counter, token))
                {
                    found.insert(client.to_owned(), last);
                }
            }
        }
        Ok(chunk
            .iter()
            .zip(out)
            .map(|((client, _), o)| {
                o.unwrap_or_else(|| match found.get(*client) {
                    Some(&last) => Taken::Last(last),
                    // Pushed out of the log by other takes: take again.
                    None => Taken::Retry,
                })
            })
            .collect())
    }
}

/// What one take did for one client.
enum Taken {
    /// The client's range ends at this id.
    Last(i64),
    /// Unknown range (a lost race): take again; whatever was taken is a hole.
    Retry,
    /// The server refused this client's statement.
    Failed(StoreError),
}

#[cfg(test)]
mod tests {
    use herald_core::Payload;

    use super::*;

    fn req(recipients: &[&str]) -> AppendReq {
        AppendReq {
            msg: NewMessage {
                from: "t".into(),
                channel: vec![],
                data: Payload::from_json("1").unwrap(),
                ttl: None,
            },
            recipients: recipients
                .iter()
                .map(|c| ClientId::new(c).unwrap())
                .collect(),
            now_ms: 0,
        }
    }

    #[test]
    fn a_batch_takes_one_range_per_client_and_hands_it_out_in_push_order() {
        let reqs = [req(&["a", "b"]), req(&["b", "c"]), req(&["b", "a"])];
        let d = demand(&reqs);
        assert_eq!(d, vec![("a", 2), ("b", 3), ("c", 1)]);
        let lasts: HashMap<&str, Result<i64, StoreError>> = [
            ("a", Ok(12)),
            ("b", Ok(3)),
            ("c", Err(StoreError::Unavailable("down".into()))),
        ]
        .into_iter()
        .collect();
        let ids = assign(&reqs, &d, &lasts);
        assert_eq!(ids[0], vec![Ok(11), Ok(1)]);
        assert_eq!(
            ids[1],
            vec![Ok(2), Err(StoreError::Unavailable("down".into()))]
        );
        assert_eq!(ids[2], vec![Ok(3), Ok(12)]);
    }

    #[test]
    fn a_take_ends_at_n_less_the_takes_logged_after_it() {
        let (mine, theirs, old) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
        let counter = doc! {"_id": "a", "n": 20_i64, "r": [
            {"p": old, "n": 7_i64},
            {"p": mine, "k": 3_i64},
            {"p": theirs, "k": 5_i32},
        ]};
        assert_eq!(range_end(&counter, mine), Some(15));
        assert_eq!(range_end(&counter, theirs), Some(20));
        // Gone from the log: unknown.
        assert_eq!(range_end(&counter, ObjectId::new()), None);
        // A take logged after ours by an earlier version has no count: unknown.
        let counter = doc! {"_id": "a", "n": 20_i64, "r": [
            {"p": mine, "k": 3_i64},
            {"p": old, "n": 20_i64},
        ]};
        assert_eq!(range_end(&counter, mine), None);
        assert_eq!(range_end(&doc! {"_id": "a", "n": 4_i64}, mine), None);
    }

    #[test]
    fn write_errors_name_their_statements() {
        let reply = doc! {"n": 1, "writeErrors": [
            {"index": 2, "code": 11000_i32, "errmsg": "dup"},
            {"index": 0_i64, "code": 2, "errmsg": "bad"},
        ]};
        assert_eq!(
            write_errors(&reply),
            vec![(2, 11000, "dup".into()), (0, 2, "bad".into())]
        );
        assert!(write_errors(&doc! {"n": 3}).is_empty());
    }
}
