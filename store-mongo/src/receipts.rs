//! Push records, delivery receipts, status, recall and idempotency claims (issue 14).
//!
//! - `pushes`: one document per push, written with the append batch that stored it (one
//!   `insert` for the batch's pushes): `{_id: <push id>, t: <ms>, e: <expiry ms>, c: [clients],
//!   i: [ids], x: <date>, q: <expiry ms>}`, `x` = expiry + [`PUSH_RECORD_GRACE`] under a TTL
//!   index; a recall adds `rr: {n, m}` (its counts). `q` (sparse index) is unset once the
//!   push's expiry was reported (its `expired` webhook events recorded).
//! - Copies (`messages`) carry `p` (indexed); receipts set `dt.<slot>` (delivered) and
//!   `kt.<slot>` (acked), Unix ms, with `$min`; a recall sets `r`. Receipts are grouped per
//!   (push, slot, kind): one `updateMany({p, c: {$in: [...]}}, {$min: ...})` statement per
//!   group, all groups of a batch window in one `update` command.
//! - `idempotency`: `{_id: <key>, s: <sha-256>, t: <taken ms>, l: <lease end ms>, x: <date>,
//!   a: <answer>}` with a TTL index on `x`: an insert takes a free key (a duplicate key says
//!   it is held), a conditional update takes over an expired or abandoned one.
//! - Status: the push record, one `find({p})` of the copies' state fields, and the recipients'
//!   counter documents (a copy at or below a slot's mark is acknowledged by it). A copy gone
//!   from `messages` unacknowledged is `expired`.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use herald_core::receipts::{PUSH_RECORD_GRACE, copy_state};
use herald_core::{
    ClientId, CopyStatus, IdempotencyClaim, IdempotencyTimes, MessageId, PushId, PushStatus,
    RecallReport, Receipt, ReceiptKind, Slot, StoreError,
};
use mongodb::IndexModel;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc, spec::BinarySubtype};
use mongodb::options::IndexOptions;

use crate::append::write_errors;
use crate::{MongoStore, abandoned, int, millis, unavailable};

/// A duplicate key on insert: the idempotency key is held.
const DUPLICATE_KEY: i32 = 11000;

/// How often a claim races another caller's before it gives up with an error.
const CLAIM_ATTEMPTS: usize = 5;

/// The indexes of `pushes` and `idempotency`: their TTL indexes.
pub(crate) fn receipt_indexes() -> IndexModel {
    IndexModel::builder()
        .keys(doc! {"x": 1})
        .options(
            IndexOptions::builder()
                .expire_after(std::time::Duration::ZERO)
                .build(),
        )
        .build()
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn date(v: u64) -> DateTime {
    DateTime::from_millis(ms(v))
}

fn field(kind: ReceiptKind, slot: Slot) -> String {
    match kind {
        ReceiptKind::Delivered => format!("dt.{}", slot.get()),
        ReceiptKind::Acked => format!("kt.{}", slot.get()),
    }
}

/// The push record of a push stored at `ts` with `copies` (only the stored ones).
pub(crate) fn push_record(
    push: PushId,
    ts: u64,
    expires: u64,
    copies: &[(&ClientId, i64)],
) -> Document {
    let clients: Vec<&str> = copies.iter().map(|(c, _)| c.as_str()).collect();
    let ids: Vec<i64> = copies.iter().map(|(_, i)| *i).collect();
    doc! {
        "_id": push.as_str(), "t": ms(ts), "e": ms(expires), "c": clients, "i": ids,
        "x": date(expires.saturating_add(millis(PUSH_RECORD_GRACE) as u64)),
        "q": ms(expires),
    }
}

/// The index of `pushes` on `q` (the expiry of pushes not reported yet): sparse, so that it
/// holds only those.
pub(crate) fn unreported_index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! {"q": 1})
        .options(IndexOptions::builder().sparse(true).build())
        .build()
}

/// A push record as read back.
struct Record {
    ts: u64,
    expires: u64,
    copies: Vec<(ClientId, i64)>,
    recall: Option<RecallReport>,
}

fn read_record(doc: &Document) -> Result<Record, StoreError> {
    let bad = |what: &str| StoreError::Rejected(format!("malformed push record: {what}"));
    let clients = doc.get_array("c").map_err(|_| bad("c"))?;
    let ids = doc.get_array("i").map_err(|_| bad("i"))?;
    let mut copies = Vec::with_capacity(clients.len());
    for (c, i) in clients.iter().zip(ids) {
        let client = c
            .as_str()
            .and_then(|c| ClientId::new(c).ok())
            .ok_or_else(|| bad("c"))?;
        let id = match i {
            Bson::Int32(n) => i64::from(*n),
            Bson::Int64(n) => *n,
            _ => return Err(bad("i")),
        };
        copies.push((client, id));
    }
    let recall = doc.get_document("rr").ok().map(|rr| RecallReport {
        recalled: int(rr, "n").map_or(0, |n| n.max(0) as u64),
        already_acked: int(rr, "m").map_or(0, |n| n.max(0) as u64),
    });
    Ok(Record {
        ts: int(doc, "t").map_or(0, |t| t.max(0) as u64),
        expires: int(doc, "e").map_or(0, |t| t.max(0) as u64),
        copies,
        recall,
    })
}

/// What `messages` and the counters say of one copy.
#[derive(Default)]
struct CopyDoc {
    /// The copy is still stored and not expired.
    kept: bool,
    /// Slots that acknowledged it: its bits, and the slots whose mark is at or above it; for a
    /// recalled copy its bits and those it had when recalled (`ra`): a mark moved over a
    /// recalled copy by a session that skipped it acknowledges nothing.
    acked: u16,
    /// The slots acknowledged when it was recalled, if it was.
    recalled_acked: Option<u16>,
    /// Its receipt times for the slot asked, if any.
    delivered_at: Option<u64>,
    acked_at: Option<u64>,
}

/// The receipt time `<kind>.<slot>` (`dt.0`) of a copy document.
fn time_at(doc: &Document, kind: &str, slot: Slot) -> Option<u64> {
    let times = doc.get_document(kind).ok()?;
    int(times, &slot.get().to_string()).map(|t| t.max(0) as u64)
}

impl MongoStore {
    /// The push record of `push`, if any.
    async fn record(&self, push: PushId) -> Result<Option<Record>, StoreError> {
        let found = self
            .pushes
            .find_one(doc! {"_id": push.as_str()})
            .await
            .map_err(unavailable)?;
        found.as_ref().map(read_record).transpose()
    }

    /// What the store knows of each copy of `record` (by client), for `slot`.
    async fn copies(
        &self,
        push: PushId,
        record: &Record,
        slot: Slot,
        now_ms: u64,
    ) -> Result<HashMap<ClientId, CopyDoc>, StoreError> {
        let mut projection = doc! {"c": 1, "i": 1, "a": 1, "x": 1, "ra": 1, "_id": 0};
        projection.insert(field(ReceiptKind::Delivered, slot), 1);
        projection.insert(field(ReceiptKind::Acked, slot), 1);
        let mut cursor = self
            .messages
            .find(doc! {"p": push.as_str()})
            .projection(projection)
            .await
            .map_err(unavailable)?;
        let mut out: HashMap<ClientId, CopyDoc> = HashMap::with_capacity(record.copies.len());
        while let Some(doc) = cursor.try_next().await.map_err(unavailable)? {
            let Some(client) = doc.get_str("c").ok().and_then(|c| ClientId::new(c).ok()) else {
                continue;
            };
            let kept = doc
                .get_datetime("x")
                .is_ok_and(|x| x.timestamp_millis() > ms(now_ms));
            let bits = |f: &str| int(&doc, f).map(|a| (a & 0xFFFF) as u16);
            let recalled_acked = bits("ra");
            out.insert(
                client,
                CopyDoc {
                    kept,
                    acked: bits("a").unwrap_or(0) | recalled_acked.unwrap_or(0),
                    recalled_acked,
                    delivered_at: time_at(&doc, "dt", slot),
                    acked_at: time_at(&doc, "kt", slot),
                },
            );
        }
        // The slots' marks: a copy at or below one is acknowledged by that slot, whether or
        // not its document is still there.
        let ids: Vec<&str> = record.copies.iter().map(|(c, _)| c.as_str()).collect();
        let mut counters = HashMap::new();
        for chunk in ids.chunks(crate::append::CHUNK) {
            counters.extend(self.read_counters_by_id(chunk).await?);
        }
        for (client, id) in &record.copies {
            let Some(marks) = counters
                .get(client.as_str())
                .and_then(|c| c.get_document("m").ok())
            else {
                continue;
            };
            let mut bits = 0u16;
            for s in 0..16u8 {
                if int(marks, &s.to_string()).is_some_and(|m| m >= *id) {
                    bits |= 1 << s;
                }
            }
            let copy = out.entry(client.clone()).or_default();
            if copy.recalled_acked.is_none() {
                copy.acked |= bits;
            }
        }
        Ok(out)
    }

    pub(crate) async fn push_status_now(
        &self,
        push: PushId,
        slot: Slot,
        now_ms: u64,
    ) -> Result<Option<PushStatus>, StoreError> {
        let Some(record) = self.record(push).await? else {
            return Ok(None);
        };
        let copies = self.copies(push, &record, slot, now_ms).await?;
        let statuses = record
            .copies
            .iter()
            .map(|(client, id)| {
                let c = copies.get(client);
                let delivered_at = c.and_then(|c| c.delivered_at);
                let acked_at = c.and_then(|c| c.acked_at);
                // An acked receipt: a copy in flight when recalled, acknowledged after.
                let acked = c.is_some_and(|c| c.acked & slot.bit() != 0) || acked_at.is_some();
                let kept = c.is_some_and(|c| c.kept);
                CopyStatus {
                    client: client.clone(),
                    id: MessageId(u64::try_from(*id).unwrap_or(0)),
                    state: copy_state(kept, acked, record.recall.is_some(), delivered_at),
                    delivered_at,
                    acked_at,
                }
            })
            .collect();
        Ok(Some(PushStatus {
            ts: record.ts,
            expires_ms: record.expires,
            copies: statuses,
        }))
    }

    pub(crate) async fn recall_now(
        &self,
        push: PushId,
        now_ms: u64,
    ) -> Result<Option<(RecallReport, Vec<ClientId>)>, StoreError> {
        let Some(record) = self.record(push).await? else {
            return Ok(None);
        };
        let clients: Vec<ClientId> = record.copies.iter().map(|(c, _)| c.clone()).collect();
        if let Some(report) = record.recall {
            return Ok(Some((report, clients)));
        }
        let copies = self.copies(push, &record, Slot::default(), now_ms).await?;
        let mut report = RecallReport::default();
        // The copies by the slots that had acknowledged them (few distinct sets, as a rule).
        let mut by_acked: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for (client, _) in &record.copies {
            let acked = copies.get(client).map_or(0, |c| c.acked);
            if acked != 0 {
                report.already_acked += 1;
            } else {
                report.recalled += 1;
            }
            by_acked.entry(acked).or_default().push(client.as_str());
        }
        // Marked, never deleted: a deleted id would be a hole that readers wait for. Each copy
        // keeps the slots that had acknowledged it (`ra`), so a mark moved over it later by a
        // session that skipped it does not count as an acknowledgement.
        let updates: Vec<Document> = by_acked
            .into_iter()
            .map(|(acked, clients)| {
                doc! {
                    "q": {"p": push.as_str(), "c": {"$in": clients}},
                    "u": {"$set": {"r": ms(now_ms), "ra": i32::from(acked)}},
                    "multi": true,
                }
            })
            .collect();
        let reply = self
            .db
            .run_command(doc! {"update": "messages", "updates": updates, "ordered": false})
            .await
            .map_err(unavailable)?;
        if let Some((_, code, message)) = write_errors(&reply).first() {
            return Err(StoreError::Unavailable(format!(
                "recall of {push}: error {code}: {message}"
            )));
        }
        let counts = doc! {"n": ms(report.recalled), "m": ms(report.already_acked)};
        let set = self
            .pushes
            .update_one(
                doc! {"_id": push.as_str(), "rr": {"$exists": false}},
                doc! {"$set": {"rr": counts}},
            )
            .await
            .map_err(unavailable)?;
        if set.modified_count == 0 {
            // Another recall counted first: its counts are the answer.
            if let Some(report) = self.record(push).await?.and_then(|r| r.recall) {
                return Ok(Some((report, clients)));
            }
        }
        Ok(Some((report, clients)))
    }

    pub(crate) async fn record_receipts_now(&self, receipts: &[Receipt]) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        self.receipts
            .submit(receipts.to_vec(), |batch| self.commit_receipts(batch))
            .await
            .map_err(abandoned)?
    }

    /// Writes a batch window of receipts: one statement per (push, slot, kind), all in one
    /// `update` command. Every caller gets the command's outcome.
    async fn commit_receipts(&self, batch: Vec<Vec<Receipt>>) -> Vec<Result<(), StoreError>> {
        let callers = batch.len();
        let mut groups: BTreeMap<(PushId, Slot, ReceiptKind), (u64, Vec<String>)> = BTreeMap::new();
        for r in batch.into_iter().flatten() {
            let g = groups
                .entry((r.push, r.slot, r.kind))
                .or_insert((r.at_ms, Vec::new()));
            g.0 = g.0.min(r.at_ms);
            g.1.push(r.client.as_str().to_owned());
        }
        let updates: Vec<Document> = groups
            .into_iter()
            .map(|((push, slot, kind), (at, mut clients))| {
                clients.sort_unstable();
                clients.dedup();
                let mut earliest = Document::new();
                earliest.insert(field(kind, slot), ms(at));
                doc! {
                    "q": {"p": push.as_str(), "c": {"$in": clients}},
                    "u": {"$min": earliest},
                    "multi": true,
                }
            })
            .collect();
        let n = updates.len();
        let outcome = self
            .db
            .run_command(doc! {"update": "messages", "updates": updates, "ordered": false})
            .await
            .map_err(unavailable)
            .and_then(|reply| match write_errors(&reply).first() {
                Some((_, code, message)) => Err(StoreError::Rejected(format!(
                    "{n} receipt statements: error {code}: {message}"
                ))),
                None => Ok(()),
            });
        vec![outcome; callers]
    }

    pub(crate) async fn claim_now(
        &self,
        key: &str,
        sha: [u8; 32],
        now_ms: u64,
        times: IdempotencyTimes,
    ) -> Result<IdempotencyClaim, StoreError> {
        let sha = Binary {
            subtype: BinarySubtype::Generic,
            bytes: sha.to_vec(),
        };
        let claim = doc! {
            "s": sha.clone(),
            "t": ms(now_ms),
            "l": ms(now_ms.saturating_add(millis(times.lease) as u64)),
            "x": date(now_ms.saturating_add(millis(times.ttl) as u64)),
        };
        for _ in 0..CLAIM_ATTEMPTS {
            let mut fresh = claim.clone();
            fresh.insert("_id", key);
            match self.idempotency.insert_one(fresh).await {
                Ok(_) => return Ok(IdempotencyClaim::Claimed),
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(unavailable(e)),
            }
            let Some(held) = self
                .idempotency
                .find_one(doc! {"_id": key})
                .await
                .map_err(unavailable)?
            else {
                continue; // released (or expired) meanwhile: insert again
            };
            let expired = held
                .get_datetime("x")
                .is_ok_and(|x| x.timestamp_millis() <= ms(now_ms));
            if !expired {
                let same = matches!(held.get("s"), Some(Bson::Binary(b)) if b.bytes == sha.bytes);
                if !same {
                    return Ok(IdempotencyClaim::Mismatch);
                }
                if let Ok(answer) = held.get_str("a") {
                    return Ok(IdempotencyClaim::Replay(answer.to_owned()));
                }
                if int(&held, "l").is_some_and(|l| l > ms(now_ms)) {
                    return Ok(IdempotencyClaim::InProgress);
                }
            }
            // Expired, or abandoned past its lease: take it over, unless another caller did
            // first (the condition on the taken time it had).
            let taken = held.get("t").cloned().unwrap_or(Bson::Null);
            let took = self
                .idempotency
                .update_one(
                    doc! {"_id": key, "t": taken},
                    doc! {"$set": claim.clone(), "$unset": {"a": ""}},
                )
                .await
                .map_err(unavailable)?;
            if took.modified_count == 1 {
                return Ok(IdempotencyClaim::Claimed);
            }
        }
        Err(StoreError::Unavailable(format!(
            "Idempotency-Key {key:?}: other callers kept racing for it"
        )))
    }

    pub(crate) async fn expired_pushes_now(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<PushId>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut cursor = self
            .pushes
            .find(doc! {"q": {"$lte": ms(now_ms)}})
            .sort(doc! {"q": 1})
            .limit(limit)
            .projection(doc! {"_id": 1})
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(unavailable)? {
            match doc.get_str("_id").ok().and_then(|p| PushId::parse(p).ok()) {
                Some(p) => out.push(p),
                None => log::warn!("pushes: a record with a malformed _id: {doc}"),
            }
        }
        Ok(out)
    }

    pub(crate) async fn expiry_reported_now(&self, pushes: &[PushId]) -> Result<(), StoreError> {
        if pushes.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = pushes.iter().map(PushId::as_str).collect();
        self.pushes
            .update_many(doc! {"_id": {"$in": ids}}, doc! {"$unset": {"q": ""}})
            .await
            .map_err(unavailable)
            .map(|_| ())
    }

    pub(crate) async fn finish_now(&self, key: &str, answer: &str) -> Result<(), StoreError> {
        self.idempotency
            .update_one(doc! {"_id": key}, doc! {"$set": {"a": answer}})
            .await
            .map_err(unavailable)
            .map(|_| ())
    }

    pub(crate) async fn release_now(&self, key: &str) -> Result<(), StoreError> {
        self.idempotency
            .delete_one(doc! {"_id": key})
            .await
            .map_err(unavailable)
            .map(|_| ())
    }
}

/// Whether `e` is a duplicate key error of an insert.
fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
            w.code == DUPLICATE_KEY
        }
        _ => e.to_string().contains("E11000"),
    }
}
