//! The read path's helpers: counters (batched), the wait for an id still on its way, the
//! turn to read, and the query that turns message documents into messages.

use std::time::Duration;

use futures::TryStreamExt;
use herald_core::{ClientId, Message, MessageId, Payload, PushId, Slot, StoreError};
use mongodb::bson::{Document, doc};
use tokio::sync::SemaphorePermit;

use crate::{MongoStore, abandoned, append, int, unavailable};

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
        push: doc.get_str("p").ok().and_then(|p| PushId::parse(p).ok()),
    })
}

/// How often a read waiting for a missing id looks again.
pub(crate) const GAP_POLL: Duration = Duration::from_millis(20);

/// What [`MongoStore::young_gap`] found among the ids of a read.
pub(crate) enum Gap {
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
    pub(crate) async fn young_gap(
        &self,
        client: &ClientId,
        after: i64,
        last_id: i64,
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
        // Ids at or below the cap's floor are gone by retention, never on their way (`last_id`
        // was read before the messages: the floor can only have risen since, by pushes after
        // the read, whose ids are above it anyway).
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

    /// `client`'s last id, `slot`'s mark (0 when absent), and whether the counter exists
    /// without a mark of `slot`. Concurrent reads of one node share one `find` (see
    /// `counter_reads`).
    pub(crate) async fn counter(
        &self,
        client: &ClientId,
        slot: Slot,
    ) -> Result<(i64, i64, bool), StoreError> {
        let counter = self
            .counter_reads
            .submit(client.clone(), |batch| self.read_counter_batch(batch))
            .await
            .map_err(abandoned)??;
        let Some(counter) = counter else {
            return Ok((0, 0, false));
        };
        let mark = counter
            .get_document("m")
            .ok()
            .and_then(|m| int(m, &slot.get().to_string()));
        Ok((
            int(&counter, "n").unwrap_or(0),
            mark.unwrap_or(0),
            mark.is_none(),
        ))
    }

    /// The counters of a batch of reads (each client's document, or `None`), one `find` per
    /// [`append::CHUNK`] clients.
    async fn read_counter_batch(
        &self,
        clients: Vec<ClientId>,
    ) -> Vec<Result<Option<Document>, StoreError>> {
        let mut answers = Vec::with_capacity(clients.len());
        for chunk in clients.chunks(append::CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(ClientId::as_str).collect();
            match self.read_counters_by_id(&ids).await {
                // A client may be asked for more than once (its sessions on several slots).
                Ok(found) => answers.extend(ids.iter().map(|c| Ok(found.get(*c).cloned()))),
                Err(e) => answers.extend(ids.iter().map(|_| Err(e.clone()))),
            }
        }
        answers
    }

    /// The counter documents (`n` and the marks) of `ids`, by client.
    pub(crate) async fn read_counters_by_id(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Document>, StoreError> {
        let n = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let mut cursor = self
            .counters
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {"n": 1, "m": 1})
            // One reply: a batch exactly as large as the result would leave a cursor open.
            .limit(n)
            .batch_size(u32::try_from(ids.len() + 1).unwrap_or(u32::MAX))
            .await
            .map_err(unavailable)?;
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        while let Some(doc) = cursor.try_next().await.map_err(unavailable)? {
            if let Ok(id) = doc.get_str("_id") {
                out.insert(id.to_owned(), doc);
            }
        }
        Ok(out)
    }

    /// A turn to read: waits while as many reads as the pool holds are under way. Every
    /// query of a read ([`MongoStore::find`], [`MongoStore::young_gap`]) runs within one.
    pub(crate) async fn reading(&self) -> Result<SemaphorePermit<'_>, StoreError> {
        self.reads
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))
    }

    pub(crate) async fn find(
        &self,
        filter: Document,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
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
