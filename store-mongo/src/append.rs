//! Appends: a batch of pushes (everything one node has queued while the previous batch was
//! written) costs two round trips whatever its number of recipients once the node knows its
//! recipients' counters: one `update` command taking every client's ids and one `insert` of
//! every copy. Counters the node does not know yet cost one `find` more, and clients whose
//! counter another node moved meanwhile one `find` and one `update` more. Batches of more
//! than [`CHUNK`] distinct clients take ids in [`CHUNK`]-sized commands; the driver splits
//! the insert at the server's message size.
//!
//! ## How ids are taken
//!
//! Each client's counter document is `{_id: client, n: last id}`. The node remembers the `n`
//! it last saw of each client it pushed to ([`Counters`], bounded). A batch takes `k` ids of
//! a client with one statement of an `update` command: an upsert conditional on the `n` the
//! node expects, `{q: {_id: client, n: expected}, u: {$inc: {n: k}}, upsert: true}`. Each
//! statement is atomic on its document, so:
//! - when `n` was as expected, the batch owns `[expected + 1, expected + k]`, and no other take
//!   of any node shares it (an absent counter is expected as 0, and the upsert creates it);
//! - when another node moved `n`, the statement matches nothing, its upsert collides with the
//!   existing `_id` and the command reports a duplicate key for that statement alone: nothing
//!   was taken. The batch reads those counters (`find`) and tries again, up to
//!   [`TAKE_ATTEMPTS`] times.
//!
//! So a take never leaves a hole: it succeeds with a known range or changes nothing. Holes
//! come only from copies whose insert failed.
//!
//! Counters are the only source of ids, as before this scheme: data written by an earlier
//! version (`{_id, n}`, with or without a log `r` of its takes, which is left alone) keeps
//! counting from its `n`, so ids never go back.

use std::collections::HashMap;

use herald_core::{AppendResult, ClientId, MessageId, NewMessage, StoreError};
use mongodb::bson::{Bson, DateTime, Document, doc};

use crate::memo::Memo;
use crate::{MongoStore, int, millis, unavailable};

/// Most distinct clients whose ids one `update` (or `find`) takes: a push to the
/// 10,000-recipient limit is one command (about 1 MB, far below the 16 MB command limit).
pub(crate) const CHUNK: usize = 10_000;

/// How often a batch tries to take the ids of a client whose counter other nodes keep moving.
const TAKE_ATTEMPTS: usize = 5;

/// What one node knows of its recipients' counters: the last `n` it saw of each, for at most
/// `store.mongo_known_counters` clients (a forgotten one costs that client one `find` on its
/// next push). A wrong value costs a retry, never a wrong id: takes are conditional on it.
pub(crate) type Counters = Memo<i64>;

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

/// The statement of the `update` command that takes `k` ids of `client` when its counter is at
/// `expected` (see the module docs).
fn take_statement(client: &str, expected: i64, k: i64) -> Document {
    doc! {
        "q": {"_id": client, "n": expected},
        "u": {"$inc": {"n": k}},
        "upsert": true,
    }
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

/// A duplicate key: the counter was not at the expected `n` (see the module docs).
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
                    let mut copy = doc! {
                        "c": client.as_str(), "i": *id, "f": &req.msg.from, "ch": &req.msg.channel,
                        "d": req.msg.data.json(), "t": t, "a": 0_i32, "x": x,
                    };
                    if let Some(push) = req.msg.push {
                        copy.insert("p", push.as_str());
                    }
                    docs.push(copy);
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
        let inserted = if docs.is_empty() {
            Ok(())
        } else {
            self.messages
                .insert_many(docs)
                .ordered(false)
                .await
                .map(|_| ())
        };
        if let Err(e) = inserted {
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
        self.record_pushes(&reqs, &results).await;
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

    /// The push records of the batch's pushes that have a push id and stored a copy: one
    /// `insert` for the batch. A failure is logged, not answered: the copies are stored, only
    /// their status will be unknown.
    async fn record_pushes(
        &self,
        reqs: &[AppendReq],
        results: &[Vec<Result<MessageId, StoreError>>],
    ) {
        let ttl_default = self.retention.ttl;
        let records: Vec<Document> = reqs
            .iter()
            .zip(results)
            .filter_map(|(req, ids)| {
                let push = req.msg.push?;
                let copies: Vec<(&ClientId, i64)> = req
                    .recipients
                    .iter()
                    .zip(ids)
                    .filter_map(|(c, id)| {
                        id.as_ref()
                            .ok()
                            .map(|id| (c, i64::try_from(id.0).unwrap_or(i64::MAX)))
                    })
                    .collect();
                if copies.is_empty() {
                    return None;
                }
                let ttl = req.msg.ttl.unwrap_or(ttl_default);
                let expires = req
                    .now_ms
                    .saturating_add(u64::try_from(millis(ttl)).unwrap_or(0));
                Some(crate::receipts::push_record(
                    push, req.now_ms, expires, &copies,
                ))
            })
            .collect();
        if records.is_empty() {
            return;
        }
        let n = records.len();
        if let Err(e) = self.pushes.insert_many(records).ordered(false).await {
            log::warn!("{n} push records could not be written (their status stays unknown): {e}");
        }
    }

    /// Takes `k` ids of each client: per client, the last id of its range.
    async fn take_ids<'a>(
        &self,
        demand: &[(&'a str, i64)],
    ) -> HashMap<&'a str, Result<i64, StoreError>> {
        let mut lasts = HashMap::with_capacity(demand.len());
        let mut pending: Vec<(&'a str, i64)> = demand.to_vec();
        for _ in 0..TAKE_ATTEMPTS {
            let unknown: Vec<&str> = pending
                .iter()
                .map(|(client, _)| *client)
                .filter(|client| self.counters_seen.get(client).is_none())
                .collect();
            for chunk in unknown.chunks(CHUNK) {
                if let Err(e) = self.read_counters(chunk).await {
                    for (client, _) in pending {
                        lasts.insert(client, Err(e.clone()));
                    }
                    return lasts;
                }
            }
            let mut again = Vec::new();
            for chunk in pending.chunks(CHUNK) {
                match self.take_chunk(chunk).await {
                    Ok(taken) => {
                        for ((client, _), outcome) in chunk.iter().zip(taken) {
                            match outcome {
                                Taken::Last(last) => {
                                    lasts.insert(*client, Ok(last));
                                }
                                Taken::Moved => again.push((*client, 0)),
                                Taken::Failed(e) => {
                                    lasts.insert(*client, Err(e));
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
                return lasts;
            }
            log::debug!(
                "{} clients' counters moved by other nodes: taking again",
                again.len()
            );
            let k: HashMap<&str, i64> = pending.iter().copied().collect();
            pending = again
                .into_iter()
                .map(|(client, _)| (client, k[client]))
                .collect();
        }
        for (client, _) in pending {
            lasts.insert(
                client,
                Err(StoreError::Unavailable(format!(
                    "ids of {client} could not be taken: {TAKE_ATTEMPTS} attempts lost to \
                     concurrent pushes of other nodes"
                ))),
            );
        }
        lasts
    }

    /// Reads the counters of `clients` (absent: 0) into what this node knows.
    async fn read_counters(&self, clients: &[&str]) -> Result<(), StoreError> {
        let found = self.read_counters_by_id(clients).await?;
        for client in clients {
            let n = found.get(*client).and_then(|c| int(c, "n")).unwrap_or(0);
            self.counters_seen.update(client, |_| n);
        }
        Ok(())
    }

    /// One `update` taking the ids of `chunk`, each conditional on the counter this node
    /// knows.
    ///
    /// # Errors
    /// When the `update` command failed as a whole (nothing can be said of any client; what
    /// this node knows of them is forgotten).
    async fn take_chunk(&self, chunk: &[(&str, i64)]) -> Result<Vec<Taken>, StoreError> {
        let expected: Vec<i64> = chunk
            .iter()
            .map(|(client, _)| self.counters_seen.get(client).unwrap_or(0))
            .collect();
        let statements: Vec<Document> = chunk
            .iter()
            .zip(&expected)
            .map(|((client, k), n)| take_statement(client, *n, *k))
            .collect();
        let forget_all = || {
            for (client, _) in chunk {
                self.counters_seen.forget(client);
            }
        };
        let reply = match self
            .db
            .run_command(doc! {
                "update": self.counters.name(),
                "updates": statements,
                "ordered": false,
            })
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                forget_all();
                return Err(unavailable(e));
            }
        };
        if let Ok(wce) = reply.get_document("writeConcernError") {
            forget_all();
            return Err(StoreError::Unavailable(format!("counters: {wce}")));
        }
        let mut out: Vec<Option<Taken>> = (0..chunk.len()).map(|_| None).collect();
        for (index, code, message) in write_errors(&reply) {
            let Some(slot) = out.get_mut(index) else {
                continue;
            };
            let client = chunk[index].0;
            self.counters_seen.forget(client);
            *slot = Some(if code == DUPLICATE_KEY {
                Taken::Moved
            } else {
                Taken::Failed(StoreError::Unavailable(format!(
                    "counter of {client}: {message}"
                )))
            });
        }
        Ok(chunk
            .iter()
            .zip(expected)
            .zip(out)
            .map(|(((client, k), n), o)| {
                o.unwrap_or_else(|| {
                    self.counters_seen.update(client, |_| n + k);
                    Taken::Last(n + k)
                })
            })
            .collect())
    }
}

/// What one take did for one client.
enum Taken {
    /// The client's range ends at this id.
    Last(i64),
    /// Another node moved the counter: nothing was taken; read it and take again.
    Moved,
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
                push: None,
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
