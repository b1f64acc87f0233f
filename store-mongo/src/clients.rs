//! The client view's per-slot backlog ([`herald_core::MessageStore::slots`]): an admin call,
//! a few queries per slot.
//!
//! The slots a client's counter knows are the keys of its marks `m`: an acknowledgement sets
//! the slot's mark (to 0 when it knew of no acknowledged prefix), and so does a slot's first
//! read of the queue (see `unacked`).

use herald_core::{ClientId, MessageId, Slot, SlotBacklog, StoreError};
use mongodb::bson::{DateTime, Document, doc};

use crate::{MongoStore, int, unavailable};

impl MongoStore {
    /// The backlog of every slot `client`'s counter has a mark of, and of the slots in `also`:
    /// per slot a `count` of the unacknowledged copies (above the mark, bit clear, not
    /// expired), the oldest of them, and the highest copy acknowledged out of order.
    pub(crate) async fn client_slots(
        &self,
        client: &ClientId,
        also: &[Slot],
        now_ms: u64,
    ) -> Result<Vec<SlotBacklog>, StoreError> {
        let counter = self
            .counters
            .find_one(doc! {"_id": client.as_str()})
            .projection(doc! {"m": 1})
            .await
            .map_err(unavailable)?;
        let marks = counter.as_ref().and_then(|c| c.get_document("m").ok());
        let mut slots: Vec<(Slot, i64)> = Vec::new();
        for n in 0..Slot::COUNT {
            let slot = Slot::new(i64::from(n)).expect("in range");
            let mark = marks.and_then(|m| int(m, &n.to_string()));
            if mark.is_some() || also.contains(&slot) {
                slots.push((slot, mark.unwrap_or(0)));
            }
        }
        let now = DateTime::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX));
        let mut out = Vec::with_capacity(slots.len());
        for (slot, mark) in slots {
            out.push(Box::pin(self.slot_backlog(client, slot, mark, now)).await?);
        }
        Ok(out)
    }

    async fn slot_backlog(
        &self,
        client: &ClientId,
        slot: Slot,
        mark: i64,
        now: DateTime,
    ) -> Result<SlotBacklog, StoreError> {
        let bit = i32::from(slot.get());
        let unacked_filter = doc! {
            "c": client.as_str(),
            "i": {"$gt": mark},
            "a": {"$bitsAllClear": [bit]},
            "x": {"$gt": now},
            // A recalled copy is not left to read (see receipts.rs).
            "r": {"$exists": false},
        };
        let unacked = self
            .messages
            .count_documents(unacked_filter.clone())
            .await
            .map_err(unavailable)?;
        let oldest = if unacked == 0 {
            None
        } else {
            self.first(unacked_filter, doc! {"i": 1}, doc! {"t": 1, "_id": 0})
                .await?
                .and_then(|d| d.get_datetime("t").ok().map(|t| t.timestamp_millis()))
                .and_then(|t| u64::try_from(t).ok())
        };
        let above_mark = self
            .first(
                doc! {"c": client.as_str(), "i": {"$gt": mark}, "a": {"$bitsAnySet": [bit]}},
                doc! {"i": -1},
                doc! {"i": 1, "_id": 0},
            )
            .await?
            .and_then(|d| int(&d, "i"));
        let last = above_mark.unwrap_or(0).max(mark);
        Ok(SlotBacklog {
            slot,
            unacked,
            oldest_unacked_ts: oldest,
            last_acked: u64::try_from(last).ok().filter(|l| *l > 0).map(MessageId),
        })
    }

    /// The first copy matching `filter` in `sort` order, with `projection`.
    async fn first(
        &self,
        filter: Document,
        sort: Document,
        projection: Document,
    ) -> Result<Option<Document>, StoreError> {
        self.messages
            .find_one(filter)
            .sort(sort)
            .projection(projection)
            .await
            .map_err(unavailable)
    }
}
