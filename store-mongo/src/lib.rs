//! # herald-store-mongo
//!
//! A [`MessageStore`] over MongoDB, for clusters: every node reads and writes the same queues.
//! Only standard MongoDB commands are used (`update` with many statements, `insert`,
//! `find`, `count`, `delete`, `createIndexes`, `ping`), so it runs on a replica set, a
//! sharded cluster, or any server that speaks the wire protocol.
//!
//! Data model (DESIGN.md):
//! - `messages`: `{c: client, i: id (i64), f: from, ch: [topics], d: data, t: Date, a: acked
//!   bitmask (i32, bit = slot), x: expiry Date}`; unique index `{c:1, i:1}`, TTL index on `x`,
//!   and `{c:1, t:1}` for history. `d` holds the payload's JSON text, so it is delivered byte for
//!   byte as it was pushed (a BSON round trip would reorder keys and change number types).
//!   Shard key: `{c: "hashed"}` or `{c: 1, i: 1}`. `a` holds only acknowledgements made out
//!   of order (above the slot's mark) and those written by earlier versions.
//! - `counters`: `{_id: client, n: last id, m: {<slot>: mark}}`: ids (see below), and per
//!   slot the mark up to which every message of the client is acknowledged by that slot.
//!   Shard key `{_id: "hashed"}`.
//!
//! ## Round trips
//!
//! Writes are coalesced per node (group commit, without a task of its own: one caller of a
//! batch writes it for all, see `batch.rs`): every push that arrives while the node's
//! previous append batch is being written goes into the next one, and the same for
//! acknowledgements, each kind with at most one batch under way.
//! - **A batch of pushes costs two round trips** whatever its number of pushes and
//!   recipients, once the node knows its recipients' counters: one `update` command that
//!   takes the ids of every recipient (one conditional upsert per distinct client) and one
//!   `insert` of every copy. Counters the node does not remember cost one `find` first;
//!   counters another node moved since cost one `find` and one `update` more (for those
//!   clients only). A batch of more than 10,000 distinct clients takes ids in 10,000-client
//!   commands; the driver splits the insert at the server's 48 MB message size.
//! - **A batch of acknowledgements costs one `update` command**: one `$max` of the slot's
//!   mark in the client's counter per `(client, slot)` (the Hub says up to where everything
//!   is acknowledged, see [`MessageStore::ack_through`]); ids acknowledged out of order above
//!   the mark cost a second command (`$bit` on their copies). 1,000 statements per command.
//!   Each caller is answered when the commands carrying its acknowledgements have answered:
//!   an acknowledgement is durable before the session's cursor moves.
//! - **A read costs one query when there is nothing to read** (the client's counter: its last
//!   id is not beyond the cursor and the slot's mark), two otherwise (the messages after them).
//!   Counter reads are coalesced like writes: a connect storm reads its counters with one
//!   `find` per batch.
//!
//! ## Ids: strictly increasing per client, never reused, holes allowed
//!
//! A client's ids come from its counter alone. A batch takes each recipient's ids with an
//! upsert conditional on the counter's `n` as this node last saw it, adding the number of
//! copies it holds for that client; where another node moved the counter, the statement
//! collides with the existing document (a duplicate key, per statement) and takes nothing,
//! and the batch reads the counter and tries again (up to 5 times). Every take is therefore
//! a range no other take of any node shares, known without reading it back, and a batch hands
//! its range out in push order. A counter written by an earlier version (with or without its
//! log of takes `r`) keeps counting from its `n`: an upgrade never makes an id go back. On
//! one node, ids follow the order of the pushes; across nodes, each node's take is ordered by
//! the database. A take never loses a range: the only holes are ids of copies whose insert
//! failed.
//!
//! ## Holes and what a reader pays for them
//!
//! Ids are taken before the insert, so two pushes to one client racing (two nodes, or two
//! batches of one node) can become visible out of id order for a moment: id 7 stored while
//! id 6 is still on its way. A read of unacknowledged messages never hands out a message
//! beyond such a gap: when an id is missing between stored ones, and the message after it was
//! stored less than [`MongoConfig::settle`] ago, the read waits (re-reading every 20 ms)
//! until the missing id appears or that time has passed, after which the id counts as gone
//! for good (a push whose insert failed). Ids below the
//! retention cap and ids that were acknowledged are never gaps. So sessions receive every
//! client's messages in id order, as the engine requires. A hole costs a reader of that
//! client, once, a wait until the message after the hole is `settle` old (default 5 s) and
//! about four queries per look (the read, the counter, a count, the ids of the range); a read
//! with no hole costs one query.
//!
//! - `outbox`: webhook events waiting to be sent, `{_id: event id, e, t, n, a, l}` with
//!   indexes on `n` (next attempt) and `t` (age); see `outbox.rs`.
//!
//! Reads filter out expired messages (`x > now`), whether or not the TTL monitor removed
//! them yet; the per-client cap is enforced by [`MessageStore::purge`].

mod ack;
mod append;
mod batch;
mod clients;
mod config;
mod connect;
mod memo;
mod outbox;
mod read;
mod receipts;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use herald_core::{
    AppendResult, ClientId, Event, EventId, Message, MessageId, MessageStore, NewMessage, NodeId,
    OutboxAdded, OutboxEntry, OutboxStats, PushId, Retention, RetentionReport, Runtime, Slot,
    SlotBacklog, StoreError,
};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::{Collection, Database};
use tokio::sync::Semaphore;

use crate::ack::AckReq;
use crate::append::{AppendAnswer, AppendReq, Counters};
use crate::batch::{Abandoned, Batcher};
use crate::memo::PassedHoles;
use crate::read::{GAP_POLL, Gap};

pub use config::{MongoConfig, MongoError};
pub use connect::message_indexes;

/// Queues in MongoDB. Cheap to clone (the driver's client and the batch queues are shared:
/// clones coalesce their writes together).
#[derive(Clone)]
pub struct MongoStore {
    /// The database, for commands (`update` with many statements, `ping`).
    db: Database,
    /// One document per copy of a message.
    messages: Collection<Document>,
    /// One document per client: its last id (see [`append`]).
    counters: Collection<Document>,
    /// What this node knows of the counters, shared by its clones.
    counters_seen: Arc<Counters>,
    /// The cap and default time to live.
    retention: Retention,
    /// How long a missing id may still be an insert under way.
    settle: Duration,
    /// Pushes waiting for the next append batch of this node.
    appends: Arc<Batcher<AppendReq, AppendAnswer>>,
    /// Acknowledgements waiting for the next ack batch of this node.
    acks: Arc<Batcher<AckReq, Result<(), StoreError>>>,
    /// Sessions' reads of counters waiting for the next `find` of this node: a connect storm
    /// reads its counters a batch at a time, not one query per session.
    counter_reads: Arc<Batcher<ClientId, Result<Option<Document>, StoreError>>>,
    /// Reads handed to the driver at once (as many as its connection pool holds): the others
    /// wait here as a few hundred bytes each, instead of as the driver's operation futures
    /// (tens of KiB each) queued for a pooled connection. A burst of connecting sessions
    /// otherwise leaves the node's heap sized for all their first reads at once.
    reads: Arc<Semaphore>,
    /// Per client, the lowest id a read of this node passed while it might still be on its way:
    /// acknowledgements of that client never move a mark over it (see [`PassedHoles`]).
    passed_holes: Arc<PassedHoles>,
    /// The application's timer (the wait for a missing id); the store spawns nothing.
    runtime: Arc<dyn Runtime>,
    /// One push record per push (see [`receipts`]).
    pushes: Collection<Document>,
    /// Idempotency claims of `POST /push`.
    idempotency: Collection<Document>,
    /// Receipts waiting for the next receipts batch of this node.
    receipts: Arc<Batcher<Vec<herald_core::Receipt>, Result<(), StoreError>>>,
    /// The webhook outbox (see `outbox.rs`).
    outbox: Collection<Document>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .field("retention", &self.retention)
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reads a numeric field whatever its BSON width (some servers keep `$bit` results as Int32).
fn int(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key)? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

/// What a caller whose batch's leader went away is told.
fn abandoned(_: Abandoned) -> StoreError {
    StoreError::Unavailable("the write batch was abandoned; its outcome is unknown".into())
}

impl MessageStore for MongoStore {
    async fn append(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> Result<AppendResult, StoreError> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let req = AppendReq {
            msg: msg.clone(),
            recipients: recipients.to_vec(),
            now_ms,
        };
        self.appends
            .submit(req, |batch| self.commit_appends(batch))
            .await
            .map_err(abandoned)?
    }

    async fn unacked(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Message>, StoreError> {
        let started = std::time::Instant::now();
        // The counter: the client's last id, and the slot's mark (everything up to it is
        // acknowledged). Nothing beyond both: nothing to read, one query.
        let (last_id, mark, unmarked) = Box::pin(self.counter(client, slot)).await?;
        if unmarked {
            // The slot's first read of a queue: its mark (0) says so to the client view. Once
            // per client and slot, with the node's acknowledgements.
            let req = AckReq {
                client: client.clone(),
                slot,
                ids: Vec::new(),
                through: 0,
            };
            let marked = self.acks.submit(req, |batch| self.commit_acks(batch)).await;
            if let Err(e) = marked.map_err(abandoned).and_then(|r| r) {
                // Only the client view misses the slot until its next read or ack: the read
                // goes on.
                log::warn!("{client} slot {slot}: the slot's first read was not recorded: {e}");
            }
        }
        let after = i64::try_from(after.0).unwrap_or(i64::MAX).max(mark);
        if last_id <= after {
            return Ok(Vec::new());
        }
        loop {
            // The filter is built once this read has its turn: a read still waiting is only
            // its arguments.
            let turn = self.reading().await?;
            let now = DateTime::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX));
            let filter = doc! {
                "c": client.as_str(),
                "i": {"$gt": after},
                "a": {"$bitsAllClear": [i32::from(slot.get())]},
                "x": {"$gt": now},
                // Recalled copies stay stored (no hole for readers to wait on), unread.
                "r": {"$exists": false},
            };
            // The driver's futures are boxed, so that a read waiting for its turn above is
            // not as large as the largest step after it.
            let messages = Box::pin(self.find(filter.clone(), limit)).await?;
            // Time goes on while we wait: the caller's clock plus what we waited.
            let waited = started.elapsed();
            let now_ms = now_ms.saturating_add(u64::try_from(waited.as_millis()).unwrap_or(0));
            let gap = self.young_gap(client, after, last_id, &messages, now_ms);
            let hi = match Box::pin(gap).await? {
                Gap::Contiguous => return Ok(messages),
                Gap::Young { missing, .. } if waited < self.settle => {
                    log::debug!("{client}: id {missing} is not stored yet; waiting for it");
                    // Other reads go on meanwhile.
                    drop(turn);
                    self.runtime.sleep(GAP_POLL).await;
                    continue;
                }
                Gap::Young { missing, hi } => {
                    log::warn!(
                        "{client}: id {missing} never appeared within {:?}: delivering past it",
                        self.settle
                    );
                    self.passed_holes.pass(client, missing);
                    hi
                }
                Gap::Settled { hi } => hi,
            };
            // The list was read before the check: an insert that landed in between is in the
            // range now but not in the list. Read the range again, as far as the check went.
            let mut upto = filter;
            upto.insert("i", doc! {"$gt": after, "$lte": hi});
            return Box::pin(self.find(upto, limit)).await;
        }
    }

    async fn ack(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
    ) -> Result<(), StoreError> {
        self.ack_through(client, slot, ids, MessageId::ZERO).await
    }

    async fn ack_through(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
        through: MessageId,
    ) -> Result<(), StoreError> {
        if ids.is_empty() && through == MessageId::ZERO {
            return Ok(());
        }
        let id = |i: MessageId| i64::try_from(i.0).unwrap_or(i64::MAX);
        let req = AckReq {
            client: client.clone(),
            slot,
            ids: ids.iter().copied().map(id).collect(),
            through: self.passed_holes.cap(client, id(through)),
        };
        self.acks
            .submit(req, |batch| self.commit_acks(batch))
            .await
            .map_err(abandoned)?
    }

    async fn history(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Message>, StoreError> {
        let _turn = self.reading().await?;
        let since = DateTime::from_millis(i64::try_from(since_ms).unwrap_or(i64::MAX));
        let now = DateTime::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX));
        self.find(
            doc! {"c": client.as_str(), "t": {"$gte": since}, "x": {"$gt": now}},
            limit,
        )
        .await
    }

    async fn purge(&self, now_ms: u64) -> Result<RetentionReport, StoreError> {
        let now = DateTime::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX));
        let expired = self
            .messages
            .delete_many(doc! {"x": {"$lte": now}})
            .await
            .map_err(unavailable)?
            .deleted_count;
        let cap = i64::try_from(self.retention.cap).unwrap_or(i64::MAX);
        let mut over = self
            .counters
            .find(doc! {"n": {"$gt": cap}})
            .await
            .map_err(unavailable)?;
        let mut capped = 0;
        while let Some(counter) = over.try_next().await.map_err(unavailable)? {
            let (Ok(client), Some(n)) = (counter.get_str("_id"), int(&counter, "n")) else {
                continue;
            };
            capped += self
                .messages
                .delete_many(doc! {"c": client, "i": {"$lte": n - cap}})
                .await
                .map_err(unavailable)?
                .deleted_count;
        }
        Ok(RetentionReport { expired, capped })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn slots(
        &self,
        client: &ClientId,
        also: &[Slot],
        now_ms: u64,
    ) -> Result<Vec<SlotBacklog>, StoreError> {
        Box::pin(self.client_slots(client, also, now_ms)).await
    }

    // ---- Push receipts, status, recall and idempotency (receipts.rs) ----

    async fn record_receipts(&self, receipts: &[herald_core::Receipt]) -> Result<(), StoreError> {
        self.record_receipts_now(receipts).await
    }

    async fn push_status(
        &self,
        push: PushId,
        slot: Slot,
        now_ms: u64,
    ) -> Result<Option<herald_core::PushStatus>, StoreError> {
        let _turn = self.reading().await?;
        self.push_status_now(push, slot, now_ms).await
    }

    async fn recall(
        &self,
        push: PushId,
        now_ms: u64,
    ) -> Result<Option<(herald_core::RecallReport, Vec<ClientId>)>, StoreError> {
        self.recall_now(push, now_ms).await
    }

    async fn expired_pushes(&self, now_ms: u64, limit: usize) -> Result<Vec<PushId>, StoreError> {
        let _turn = self.reading().await?;
        self.expired_pushes_now(now_ms, limit).await
    }

    async fn expiry_reported(&self, pushes: &[PushId]) -> Result<(), StoreError> {
        self.expiry_reported_now(pushes).await
    }

    async fn claim_idempotency(
        &self,
        key: &str,
        body_sha256: [u8; 32],
        now_ms: u64,
        times: herald_core::IdempotencyTimes,
    ) -> Result<herald_core::IdempotencyClaim, StoreError> {
        self.claim_now(key, body_sha256, now_ms, times).await
    }

    async fn finish_idempotency(&self, key: &str, answer: &str) -> Result<(), StoreError> {
        self.finish_now(key, answer).await
    }

    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError> {
        self.release_now(key).await
    }

    async fn outbox_add(&self, events: &[Event], max: u64) -> Result<OutboxAdded, StoreError> {
        self.outbox_add_impl(events, max).await
    }

    async fn outbox_lease(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        node: &NodeId,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_lease_impl(now_ms, limit, lease, node).await
    }

    async fn outbox_done(&self, ids: &[EventId]) -> Result<(), StoreError> {
        self.outbox_done_impl(ids).await
    }

    async fn outbox_retry(&self, ids: &[EventId], next_ms: u64) -> Result<(), StoreError> {
        self.outbox_retry_impl(ids, next_ms).await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.outbox_stats_impl().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_never_moves_over_an_id_a_read_passed() {
        let holes = PassedHoles::default();
        let a = ClientId::new("a").unwrap();
        let b = ClientId::new("b").unwrap();
        assert_eq!(holes.cap(&a, 9), 9);
        holes.pass(&a, 7);
        holes.pass(&a, 12);
        assert_eq!(holes.cap(&a, 9), 6, "the lowest passed id holds");
        assert_eq!(holes.cap(&a, 3), 3);
        assert_eq!(holes.cap(&b, 9), 9, "other clients are free");
    }
}
