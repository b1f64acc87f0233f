//! # herald-store-mongo
//!
//! A [`MessageStore`] over MongoDB, for clusters: every node reads and writes the same queues.
//! Only standard MongoDB commands are used (`findAndModify`, `insert`, `find`, `update`,
//! `delete`, `createIndexes`, `ping`), so it runs on a replica set, a sharded cluster, or any
//! server that speaks the wire protocol.
//!
//! Data model (DESIGN.md):
//! - `messages`: `{c: client, i: id (i64), f: from, ch: [topics], d: data, t: Date, a: acked
//!   bitmask (i32, bit = slot), x: expiry Date}`; unique index `{c:1, i:1}`, TTL index on `x`,
//!   and `{c:1, t:1}` for history. `d` holds the payload's JSON text, so it is delivered byte for
//!   byte as it was pushed (a BSON round trip would reorder keys and change number types).
//!   Shard key: `{c: "hashed"}` or `{c: 1, i: 1}`.
//! - `counters`: `{_id: client, n: last id}`, advanced by one atomic `findAndModify` per
//!   recipient; the copies of one push are then written with one unordered `insert`.
//!
//! Reads filter out expired messages (`x > now`), whether or not the TTL monitor removed
//! them yet; the per-client cap is enforced by [`MessageStore::purge`].
//!
//! Ids are taken before the insert, so two pushes to one client racing (on one API node or on
//! several) can become visible out of id order for a moment: id 7 stored while id 6 is still
//! on its way. A read of unacknowledged messages never hands out a message beyond such a gap:
//! when an id is missing between stored ones, and the message after it was stored less than
//! [`MongoConfig::settle`] ago, the read waits (re-reading every few milliseconds) until the
//! missing id appears or that time has passed, after which the id counts as gone for good (a
//! push whose insert failed). Ids below the retention cap and ids that were acknowledged are
//! never gaps. So sessions receive every client's messages in id order, as the engine
//! requires; the price is a wait of at most `settle` after a failed push, once.

use std::time::Duration;

use futures::TryStreamExt;
use herald_core::{
    AppendResult, ClientId, Message, MessageId, MessageStore, NewMessage, Payload, Retention,
    RetentionReport, Slot, StoreError,
};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

/// Where the queues live and how long messages are kept.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    /// The connection string (`mongodb://...`).
    pub url: String,
    /// The database holding `messages` and `counters`.
    pub database: String,
    /// The per-client cap and default time to live.
    pub retention: Retention,
    /// How long an id missing between stored messages may still be an insert under way (see
    /// the crate docs). Longer than an insert can take; default 5 s.
    pub settle: Duration,
}

impl MongoConfig {
    /// Database `herald`, default retention.
    pub fn new(url: impl Into<String>) -> MongoConfig {
        MongoConfig {
            url: url.into(),
            database: "herald".into(),
            retention: Retention::default(),
            settle: Duration::from_secs(5),
        }
    }

    /// Waits at most `settle` for an id missing between stored messages (see the crate docs).
    pub fn settle(mut self, settle: Duration) -> MongoConfig {
        self.settle = settle;
        self
    }

    /// Uses database `name`.
    pub fn database(mut self, name: impl Into<String>) -> MongoConfig {
        self.database = name.into();
        self
    }

    /// Keeps messages per `retention`.
    pub fn retention(mut self, retention: Retention) -> MongoConfig {
        self.retention = retention;
        self
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    /// The driver failed (bad URL, unreachable server, refused command).
    #[error("mongodb: {0}")]
    Driver(#[from] mongodb::error::Error),
}

/// Queues in MongoDB. Cheap to clone (the driver's client is shared).
#[derive(Debug, Clone)]
pub struct MongoStore {
    db: Database,
    messages: Collection<Document>,
    counters: Collection<Document>,
    retention: Retention,
    settle: Duration,
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

fn to_message(doc: &Document) -> Result<Message, StoreError> {
    let bad = |what: &str| StoreError::Rejected(format!("malformed message document: {what}"));
    let id = int(doc, "i").filter(|i| *i > 0).ok_or_else(|| bad("i"))?;
    let from = doc.get_str("f").map_err(|_| bad("f"))?.to_owned();
    let channel = doc
        .get_array("ch")
        .map_err(|_| bad("ch"))?
        .iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad("ch")))
        .collect::<Result<Vec<_>, _>>()?;
    let data = Payload::from_json(doc.get_str("d").map_err(|_| bad("d"))?).map_err(|_| bad("d"))?;
    let ts = doc
        .get_datetime("t")
        .map_err(|_| bad("t"))?
        .timestamp_millis();
    Ok(Message {
        id: MessageId(id as u64),
        from,
        channel,
        data,
        ts: u64::try_from(ts).unwrap_or(0),
    })
}

impl MongoStore {
    /// Connects and creates the indexes (idempotent).
    ///
    /// # Errors
    /// [`MongoError`] when the URL is invalid or the server refuses the indexes.
    pub async fn connect(config: MongoConfig) -> Result<MongoStore, MongoError> {
        let mut options = ClientOptions::parse(&config.url).await?;
        options.app_name = Some("herald".into());
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(Duration::from_secs(5));
        }
        let client = Client::with_options(options)?;
        let db = client.database(&config.database);
        let messages = db.collection::<Document>("messages");
        let counters = db.collection::<Document>("counters");
        messages
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"c": 1, "i": 1})
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await?;
        messages
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"x": 1})
                    .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
                    .build(),
            )
            .await?;
        messages
            .create_index(IndexModel::builder().keys(doc! {"c": 1, "t": 1}).build())
            .await?;
        log::info!(
            "mongodb store ready: database {} (cap {}, ttl {}s)",
            config.database,
            config.retention.cap,
            config.retention.ttl.as_secs()
        );
        Ok(MongoStore {
            db,
            messages,
            counters,
            retention: config.retention,
            settle: config.settle,
        })
    }

    /// Takes the next id of `client`.
    async fn next_id(&self, client: &ClientId) -> Result<i64, StoreError> {
        let doc = self
            .counters
            .find_one_and_update(doc! {"_id": client.as_str()}, doc! {"$inc": {"n": 1_i64}})
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| StoreError::Unavailable("counter upsert returned nothing".into()))?;
        int(&doc, "n").ok_or_else(|| StoreError::Rejected("malformed counter".into()))
    }
}

impl MessageStore for MongoStore {
    async fn append(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> Result<AppendResult, StoreError> {
        let ttl = msg.ttl.unwrap_or(self.retention.ttl);
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let t = DateTime::from_millis(now);
        let x = DateTime::from_millis(now.saturating_add(millis(ttl)));
        let ids = futures::future::join_all(recipients.iter().map(|c| self.next_id(c))).await;
        if ids.iter().all(Result::is_err) {
            if let Some(Err(e)) = ids.into_iter().next() {
                return Err(e);
            }
            return Ok(Vec::new());
        }
        let mut docs = Vec::with_capacity(recipients.len());
        let mut slots = Vec::with_capacity(recipients.len());
        for (client, id) in recipients.iter().zip(&ids) {
            if let Ok(id) = id {
                slots.push(docs.len());
                docs.push(doc! {
                    "c": client.as_str(), "i": *id, "f": &msg.from, "ch": &msg.channel,
                    "d": msg.data.json(), "t": t, "a": 0_i32, "x": x,
                });
            } else {
                slots.push(usize::MAX);
            }
        }
        let mut failed_docs = std::collections::HashSet::new();
        if let Err(e) = self.messages.insert_many(docs).ordered(false).await {
            match *e.kind {
                mongodb::error::ErrorKind::InsertMany(ref ime)
                    if ime.write_concern_error.is_none() =>
                {
                    for we in ime.write_errors.iter().flatten() {
                        failed_docs.insert(we.index);
                    }
                }
                _ => return Err(unavailable(e)),
            }
        }
        Ok(ids
            .into_iter()
            .zip(slots)
            .map(|(id, slot)| match id {
                Ok(_) if failed_docs.contains(&slot) => Err(StoreError::Rejected(
                    "the message could not be written".into(),
                )),
                Ok(id) => Ok(MessageId(id as u64)),
                Err(e) => Err(e),
            })
            .collect())
    }

    async fn unacked(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Message>, StoreError> {
        let now = DateTime::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX));
        let after = i64::try_from(after.0).unwrap_or(i64::MAX);
        let filter = doc! {
            "c": client.as_str(),
            "i": {"$gt": after},
            "a": {"$bitsAllClear": [i32::from(slot.get())]},
            "x": {"$gt": now},
        };
        let started = std::time::Instant::now();
        loop {
            let messages = self.find(filter.clone(), limit).await?;
            // Time goes on while we wait: the caller's clock plus what we waited.
            let waited = started.elapsed();
            let now_ms = now_ms.saturating_add(u64::try_from(waited.as_millis()).unwrap_or(0));
            let hi = match self.young_gap(client, after, &messages, now_ms).await? {
                Gap::Contiguous => return Ok(messages),
                Gap::Young { missing, .. } if waited < self.settle => {
                    log::debug!("{client}: id {missing} is not stored yet; waiting for it");
                    tokio::time::sleep(GAP_POLL).await;
                    continue;
                }
                Gap::Young { missing, hi } => {
                    log::warn!(
                        "{client}: id {missing} never appeared within {:?}: delivering past it",
                        self.settle
                    );
                    hi
                }
                Gap::Settled { hi } => hi,
            };
            // The list was read before the check: an insert that landed in between is in the
            // range now but not in the list. Read the range again, as far as the check went.
            let mut upto = filter.clone();
            upto.insert("i", doc! {"$gt": after, "$lte": hi});
            return self.find(upto, limit).await;
        }
    }

    async fn ack(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids
            .iter()
            .map(|i| i64::try_from(i.0).unwrap_or(i64::MAX))
            .collect();
        self.messages
            .update_many(
                doc! {"c": client.as_str(), "i": {"$in": ids}},
                doc! {"$bit": {"a": {"or": i32::from(slot.bit())}}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn history(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Message>, StoreError> {
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
}

/// How often a read waiting for a missing id looks again.
const GAP_POLL: Duration = Duration::from_millis(20);

/// What [`MongoStore::young_gap`] found among the ids of a read.
enum Gap {
    /// The ids follow the cursor without a hole: the read stands as it is.
    Contiguous,
    /// Every id up to `hi` is stored (acknowledged ones fill the holes of the read).
    Settled { hi: i64 },
    /// `missing` (below `hi`) is not stored, and what follows it is young: it may be an insert
    /// still under way.
    Young { missing: i64, hi: i64 },
}

impl MongoStore {
    /// Whether `messages` (unacknowledged ones after `after`, in id order) may skip an id
    /// that is still on its way: one not below the retention cap, not stored at all
    /// (acknowledged or not), and followed by a message stored less than `settle` before
    /// `now_ms`.
    async fn young_gap(
        &self,
        client: &ClientId,
        after: i64,
        messages: &[Message],
        now_ms: u64,
    ) -> Result<Gap, StoreError> {
        let Some(last) = messages.last() else {
            return Ok(Gap::Contiguous);
        };
        let hi = i64::try_from(last.id.0).unwrap_or(i64::MAX);
        let span = |lo: i64| u64::try_from(hi.saturating_sub(lo)).unwrap_or(0);
        // The common case: contiguous ids right after the cursor.
        if messages.len() as u64 == span(after) {
            return Ok(Gap::Contiguous);
        }
        // Ids at or below the cap's floor are gone by retention, never on their way.
        let counter = self
            .counters
            .find_one(doc! {"_id": client.as_str()})
            .await
            .map_err(unavailable)?;
        let last_id = counter.as_ref().and_then(|c| int(c, "n")).unwrap_or(hi);
        let cap = i64::try_from(self.retention.cap).unwrap_or(i64::MAX);
        let lo = after.max(last_id.saturating_sub(cap));
        let range = doc! {"c": client.as_str(), "i": {"$gt": lo, "$lte": hi}};
        // Acknowledged (or expired, not yet removed) messages fill the rest of the range?
        let stored = self
            .messages
            .count_documents(range.clone())
            .await
            .map_err(unavailable)?;
        if stored >= span(lo) {
            return Ok(Gap::Settled { hi });
        }
        // Some id is missing: find the first whose successor is young.
        let mut cursor = self
            .messages
            .find(range)
            .projection(doc! {"i": 1, "t": 1, "_id": 0})
            .sort(doc! {"i": 1})
            .await
            .map_err(unavailable)?;
        let settle_ms = u64::try_from(self.settle.as_millis()).unwrap_or(u64::MAX);
        let mut expected = lo + 1;
        while let Some(doc) = cursor.try_next().await.map_err(unavailable)? {
            let Some(id) = int(&doc, "i") else { continue };
            if id > expected {
                let stored_at = doc
                    .get_datetime("t")
                    .map_or(0, |t| u64::try_from(t.timestamp_millis()).unwrap_or(0));
                if now_ms.saturating_sub(stored_at) < settle_ms {
                    return Ok(Gap::Young {
                        missing: expected,
                        hi,
                    });
                }
            }
            expected = id + 1;
        }
        Ok(Gap::Settled { hi })
    }

    async fn find(&self, filter: Document, limit: usize) -> Result<Vec<Message>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new()); // MongoDB would read a limit of 0 as "no limit"
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut cursor = self
            .messages
            .find(filter)
            .sort(doc! {"i": 1})
            .limit(limit)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(unavailable)? {
            out.push(to_message(&doc)?);
        }
        Ok(out)
    }
}
