//! The [`MemoryStore`]'s push records, receipts, recalls and idempotency claims.

use crate::books::{CopyFacts, IdempotencyTable, PushBook};
use crate::ids::{ClientId, MessageId, Slot};
use crate::ports::StoreError;
use crate::push_id::PushId;
use crate::receipts::{IdempotencyClaim, IdempotencyTimes, PushStatus, RecallReport, Receipt};

use super::lock;
use super::store::{MemoryStore, Queue};

/// Push records and idempotency claims.
#[derive(Debug, Default)]
pub(super) struct Books {
    pushes: PushBook,
    idempotency: IdempotencyTable,
}

impl Books {
    pub(super) fn stored(
        &mut self,
        push: PushId,
        ts: u64,
        expires_ms: u64,
        copies: Vec<(ClientId, MessageId)>,
    ) {
        self.pushes.stored(push, ts, expires_ms, copies);
    }

    pub(super) fn purge(&mut self, now_ms: u64) {
        self.pushes.purge(now_ms);
        self.idempotency.purge(now_ms);
    }

    pub(super) fn claim(
        &mut self,
        key: &str,
        sha: [u8; 32],
        now_ms: u64,
        times: IdempotencyTimes,
    ) -> IdempotencyClaim {
        self.idempotency.claim(key, sha, now_ms, times).0
    }

    pub(super) fn finish(&mut self, key: &str, answer: &str) {
        self.idempotency.finish(key, answer);
    }

    pub(super) fn release(&mut self, key: &str) {
        self.idempotency.release(key);
    }
}

/// What the queues know of one copy at `now_ms`.
fn facts(
    queues: &std::collections::HashMap<ClientId, Queue>,
    client: &ClientId,
    id: MessageId,
    now_ms: u64,
) -> CopyFacts {
    match queues.get(client).and_then(|q| q.messages.get(&id.0)) {
        Some(s) => CopyFacts {
            kept: s.expires_ms > now_ms,
            acked: s.acked,
        },
        None => CopyFacts::default(),
    }
}

impl MemoryStore {
    pub(super) fn record_receipts_now(&self, receipts: &[Receipt]) -> Result<(), StoreError> {
        self.check_up()?;
        let mut books = lock(&self.inner.books);
        for r in receipts {
            books.pushes.receipt(r);
        }
        Ok(())
    }

    pub(super) fn push_status_now(
        &self,
        push: PushId,
        slot: Slot,
        now_ms: u64,
    ) -> Result<Option<PushStatus>, StoreError> {
        self.check_up()?;
        let queues = lock(&self.inner.queues);
        let books = lock(&self.inner.books);
        Ok(books
            .pushes
            .status(push, slot, |c, id| facts(&queues, c, id, now_ms)))
    }

    pub(super) fn expired_pushes_now(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<PushId>, StoreError> {
        self.check_up()?;
        Ok(lock(&self.inner.books)
            .pushes
            .expired_unreported(now_ms, limit))
    }

    pub(super) fn expiry_reported_now(&self, pushes: &[PushId]) -> Result<(), StoreError> {
        self.check_up()?;
        let mut books = lock(&self.inner.books);
        for p in pushes {
            books.pushes.expiry_reported(*p);
        }
        Ok(())
    }

    pub(super) fn recall_now(
        &self,
        push: PushId,
        now_ms: u64,
    ) -> Result<Option<(RecallReport, Vec<ClientId>)>, StoreError> {
        self.check_up()?;
        let mut queues = lock(&self.inner.queues);
        let mut books = lock(&self.inner.books);
        let answer = books
            .pushes
            .recall(push, |c, id| facts(&queues, c, id, now_ms));
        if let Some(rec) = books.pushes.records.get(&push) {
            for (client, id) in &rec.copies {
                if let Some(s) = queues
                    .get_mut(client)
                    .and_then(|q| q.messages.get_mut(&id.0))
                {
                    s.recalled = true;
                }
            }
        }
        Ok(answer)
    }
}
