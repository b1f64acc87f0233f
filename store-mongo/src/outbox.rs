//! The webhook outbox in the collection `outbox`, shared by every node of the cluster.
//!
//! One document per event: `{_id: event id, e: the event's JSON text, t: its ts (i64 ms),
//! n: next attempt or end of lease (i64 ms), a: failed attempts (i32), l: lease token}`, with
//! indexes `{n: 1}` (due order) and `{t: 1}` (oldest). The JSON text is kept as it is, so an
//! event goes out byte for byte as it was recorded.
//!
//! A lease costs three commands whatever its size: a `find` of the due ids (`n <= now`, by
//! `n`), one `update` of those ids still due (`{_id: {$in}, n: {$lte: now}}` → `n` = end of
//! lease, `l` = a token unique to this call), and a `find` of the token. The update is atomic
//! per document: of two nodes racing for an event, only the one whose update matched it while
//! it was due finds it under its token.
//!
//! The stats cost a `count` and a `find` of the oldest. An add costs one `count` (for the bound) and one unordered `insert`
//! (duplicate ids are the events already there); near the bound, a `find` of the ids already
//! there first, so that duplicates do not take room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use herald_core::{Event, EventId, NodeId, OutboxAdded, OutboxEntry, OutboxStats, StoreError};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use crate::{MongoStore, int, unavailable};

/// The duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Lease tokens of this process: with the node id, unique cluster-wide.
static LEASES: AtomicU64 = AtomicU64::new(0);

/// The indexes of `outbox`.
pub(crate) fn outbox_indexes() -> Vec<IndexModel> {
    vec![
        IndexModel::builder()
            .keys(doc! {"n": 1})
            .options(IndexOptions::builder().name("due".to_owned()).build())
            .build(),
        IndexModel::builder()
            .keys(doc! {"t": 1})
            .options(IndexOptions::builder().name("age".to_owned()).build())
            .build(),
    ]
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_doc(ev: &Event) -> Document {
    doc! {"_id": ev.id.as_str(), "e": ev.to_json(), "t": ms(ev.ts), "n": 0_i64, "a": 0_i32}
}

fn to_entry(d: &Document) -> Result<OutboxEntry, StoreError> {
    let bad = |what: &str| StoreError::Rejected(format!("malformed outbox document: {what}"));
    let event =
        Event::from_json(d.get_str("e").map_err(|_| bad("e"))?).map_err(|e| bad(&e.to_string()))?;
    let attempts = int(d, "a").and_then(|a| u32::try_from(a).ok()).unwrap_or(0);
    Ok(OutboxEntry { event, attempts })
}

fn id_list(ids: &[EventId]) -> Vec<Bson> {
    ids.iter()
        .map(|i| Bson::String(i.as_str().to_owned()))
        .collect()
}

impl MongoStore {
    fn outbox(&self) -> &Collection<Document> {
        &self.outbox
    }

    /// The documents of `outbox` matching `filter` (with `projection`, up to `limit`, by `n`
    /// when `by_due`).
    async fn outbox_find(
        &self,
        filter: Document,
        projection: Option<Document>,
        limit: Option<usize>,
        by_due: bool,
    ) -> Result<Vec<Document>, StoreError> {
        let mut find = self.outbox().find(filter);
        if let Some(p) = projection {
            find = find.projection(p);
        }
        if let Some(l) = limit {
            find = find.limit(i64::try_from(l).unwrap_or(i64::MAX));
        }
        if by_due {
            find = find.sort(doc! {"n": 1});
        }
        find.await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)
    }

    pub(crate) async fn outbox_add_impl(
        &self,
        events: &[Event],
        max: u64,
    ) -> Result<OutboxAdded, StoreError> {
        let mut out = OutboxAdded::default();
        if events.is_empty() {
            return Ok(out);
        }
        // One event per id within the call, as the other stores keep them.
        let mut seen = std::collections::HashSet::new();
        let mut fresh: Vec<&Event> = Vec::with_capacity(events.len());
        for ev in events {
            if seen.insert(ev.id.as_str()) {
                fresh.push(ev);
            } else {
                out.duplicates += 1;
            }
        }
        let depth = self
            .outbox()
            .estimated_document_count()
            .await
            .map_err(unavailable)?;
        let room = max.saturating_sub(depth);
        if (fresh.len() as u64) > room {
            // Near the bound: duplicates must not take room, so find them first.
            let ids: Vec<Bson> = fresh
                .iter()
                .map(|e| Bson::String(e.id.as_str().to_owned()))
                .collect();
            let there: std::collections::HashSet<String> = self
                .outbox_find(
                    doc! {"_id": {"$in": ids}},
                    Some(doc! {"_id": 1}),
                    None,
                    false,
                )
                .await?
                .iter()
                .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
                .collect();
            let before = fresh.len();
            fresh.retain(|e| !there.contains(e.id.as_str()));
            out.duplicates += (before - fresh.len()) as u64;
            let keep = usize::try_from(room).unwrap_or(usize::MAX).min(fresh.len());
            out.dropped += (fresh.len() - keep) as u64;
            fresh.truncate(keep);
        }
        if fresh.is_empty() {
            return Ok(out);
        }
        let docs: Vec<Document> = fresh.iter().map(|e| to_doc(e)).collect();
        let n = docs.len() as u64;
        match self.outbox().insert_many(docs).ordered(false).await {
            Ok(_) => out.added += n,
            Err(e) => match *e.kind {
                mongodb::error::ErrorKind::InsertMany(ref ime)
                    if ime.write_concern_error.is_none()
                        && ime
                            .write_errors
                            .iter()
                            .flatten()
                            .all(|we| we.code == DUPLICATE_KEY) =>
                {
                    let dups = ime.write_errors.iter().flatten().count() as u64;
                    out.duplicates += dups;
                    out.added += n - dups;
                }
                _ => return Err(unavailable(e)),
            },
        }
        Ok(out)
    }

    pub(crate) async fn outbox_lease_impl(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        node: &NodeId,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = ms(now_ms);
        let due: Vec<Bson> = self
            .outbox_find(
                doc! {"n": {"$lte": now}},
                Some(doc! {"_id": 1}),
                Some(limit),
                true,
            )
            .await?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let token = format!("{node}:{now_ms}:{}", LEASES.fetch_add(1, Ordering::Relaxed));
        let until = now.saturating_add(crate::millis(lease));
        self.outbox()
            .update_many(
                doc! {"_id": {"$in": due}, "n": {"$lte": now}},
                doc! {"$set": {"n": until, "l": &token}},
            )
            .await
            .map_err(unavailable)?;
        let mut got = self
            .outbox_find(doc! {"l": &token}, None, None, false)
            .await?;
        got.truncate(limit);
        got.iter().map(to_entry).collect()
    }

    pub(crate) async fn outbox_done_impl(&self, ids: &[EventId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.outbox()
            .delete_many(doc! {"_id": {"$in": id_list(ids)}})
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(crate) async fn outbox_retry_impl(
        &self,
        ids: &[EventId],
        next_ms: u64,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.outbox()
            .update_many(
                doc! {"_id": {"$in": id_list(ids)}},
                doc! {"$set": {"n": ms(next_ms)}, "$inc": {"a": 1_i32}, "$unset": {"l": ""}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(crate) async fn outbox_stats_impl(&self) -> Result<OutboxStats, StoreError> {
        let depth = self
            .outbox()
            .estimated_document_count()
            .await
            .map_err(unavailable)?;
        let oldest = self
            .outbox()
            .find_one(doc! {})
            .sort(doc! {"t": 1})
            .projection(doc! {"t": 1})
            .await
            .map_err(unavailable)?;
        Ok(OutboxStats {
            depth,
            oldest_ts: oldest
                .and_then(|d| int(&d, "t"))
                .and_then(|t| u64::try_from(t).ok()),
        })
    }
}
