//! Push records, receipts, recalls and idempotency claims in the log (issue 14): the requests,
//! what the thread does with them, and what compaction keeps of them.
//!
//! The index keeps them in [`Queues::books`] and [`Queues::claims`]; every change is a record
//! ([`crate::record`]: `Named`, `Receipts`, `Recall`, `Claim`, `Release`, `Reported`), so
//! replay rebuilds them. Recalls and claims are synced before they are answered; receipts and
//! expiry reports are written with the next batch without a sync of their own, like
//! acknowledgements (a crash may lose the last few delivery times, never a delivery, and may
//! list a push's expiry again).

use herald_core::{IdempotencyClaim, IdempotencyTimes, PushId, PushStatus, RecallReport, Receipt};

use super::*;

/// A request about push records and idempotency claims.
pub(crate) enum BookRequest {
    /// Record receipts.
    Receipts {
        receipts: Vec<Receipt>,
        reply: Reply<()>,
    },
    /// The status of a push (a read).
    Status {
        push: PushId,
        slot: Slot,
        now_ms: u64,
        reply: Reply<Option<PushStatus>>,
    },
    /// Recall a push.
    Recall {
        push: PushId,
        now_ms: u64,
        reply: Reply<Option<(RecallReport, Vec<ClientId>)>>,
    },
    /// Claim an idempotency key.
    Claim {
        key: String,
        sha: [u8; 32],
        now_ms: u64,
        times: IdempotencyTimes,
        reply: Reply<IdempotencyClaim>,
    },
    /// Finish a claim with its answer.
    Finish {
        key: String,
        answer: String,
        reply: Reply<()>,
    },
    /// Give a claim up.
    Release { key: String, reply: Reply<()> },
    /// Pushes expired and not reported yet (a read).
    Expired {
        now_ms: u64,
        limit: usize,
        reply: Reply<Vec<PushId>>,
    },
    /// Mark the expiry of pushes reported.
    Reported {
        pushes: Vec<PushId>,
        reply: Reply<()>,
    },
}

impl BookRequest {
    /// Whether it changes the store (served with the batch's writes).
    pub(super) fn is_write(&self) -> bool {
        !matches!(
            self,
            BookRequest::Status { .. } | BookRequest::Expired { .. }
        )
    }

    /// Answers with `err`.
    pub(super) fn fail(self, err: StoreError) {
        match self {
            BookRequest::Receipts { reply, .. }
            | BookRequest::Finish { reply, .. }
            | BookRequest::Release { reply, .. }
            | BookRequest::Reported { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            BookRequest::Expired { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            BookRequest::Status { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            BookRequest::Recall { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            BookRequest::Claim { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

/// What a write of a batch answers once the batch is written.
pub(super) enum Outcome {
    Appended(AppendResult),
    Done,
    Recalled(Option<(RecallReport, Vec<ClientId>)>),
    Claimed(IdempotencyClaim),
}

impl Outcome {
    /// Sends the outcome to the request's caller.
    pub(super) fn answer(self, req: Request) {
        match (self, req) {
            (Outcome::Appended(ids), Request::Append { reply, .. }) => {
                let _ = reply.send(Ok(ids));
            }
            (Outcome::Recalled(r), Request::Books(BookRequest::Recall { reply, .. })) => {
                let _ = reply.send(Ok(r));
            }
            (Outcome::Claimed(c), Request::Books(BookRequest::Claim { reply, .. })) => {
                let _ = reply.send(Ok(c));
            }
            (
                Outcome::Done,
                Request::Books(
                    BookRequest::Receipts { reply, .. }
                    | BookRequest::Finish { reply, .. }
                    | BookRequest::Release { reply, .. }
                    | BookRequest::Reported { reply, .. },
                ),
            ) => {
                let _ = reply.send(Ok(()));
            }
            (_, req) => req.fail(StoreError::Unavailable(
                "embedded store: an answer went to the wrong request".into(),
            )),
        }
    }
}

impl Worker {
    /// After an append of push `push`: its push record, in the index and in the batch.
    pub(super) fn name_push(
        &mut self,
        push: PushId,
        now_ms: u64,
        ttl: Option<std::time::Duration>,
        recipients: &[ClientId],
        ids: &AppendResult,
    ) {
        let expires = now_ms.saturating_add(millis(ttl.unwrap_or(self.retention.ttl)));
        let copies: Vec<(ClientId, MessageId)> = recipients
            .iter()
            .zip(ids)
            .filter_map(|(c, r)| r.as_ref().ok().map(|id| (c.clone(), *id)))
            .collect();
        record::put_named(&mut self.buf, push, now_ms, expires, &copies);
        self.queues.books.stored(push, now_ms, expires, copies);
    }

    /// Applies one write to the index and puts its record in the batch; the outcome, and
    /// whether the batch must be synced for it.
    pub(super) fn book_write(&mut self, req: &BookRequest) -> (Outcome, bool) {
        match req {
            BookRequest::Receipts { receipts, .. } => {
                let books = &mut self.queues.books;
                record::put_receipts(&mut self.buf, receipts.iter().filter(|r| books.receipt(r)));
                (Outcome::Done, false)
            }
            BookRequest::Recall { push, now_ms, .. } => {
                let first = !self.queues.books.is_recalled(push);
                let queues = &self.queues;
                let facts: Vec<_> = queues
                    .books
                    .records
                    .get(push)
                    .map(|r| {
                        r.copies
                            .iter()
                            .map(|(c, id)| queues.facts(c, *id, *now_ms))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut facts = facts.into_iter();
                let answer = self
                    .queues
                    .books
                    .recall(*push, |_, _| facts.next().unwrap_or_default());
                if let (Some((report, _)), true) = (&answer, first) {
                    self.queues.mark_recalled(*push);
                    record::put_recall(&mut self.buf, *push, *report);
                }
                (Outcome::Recalled(answer), first)
            }
            BookRequest::Claim {
                key,
                sha,
                now_ms,
                times,
                ..
            } => {
                let (answer, claim) = self.queues.claims.claim(key, *sha, *now_ms, *times);
                if let Some(claim) = &claim {
                    record::put_claim(&mut self.buf, key, claim);
                }
                (Outcome::Claimed(answer), claim.is_some())
            }
            BookRequest::Finish { key, answer, .. } => {
                if self.queues.claims.finish(key, answer)
                    && let Some(claim) = self.queues.claims.claims.get(key)
                {
                    record::put_claim(&mut self.buf, key, claim);
                    return (Outcome::Done, true);
                }
                (Outcome::Done, false)
            }
            BookRequest::Release { key, .. } => {
                let released = self.queues.claims.release(key);
                if released {
                    record::put_release(&mut self.buf, key);
                }
                (Outcome::Done, released)
            }
            BookRequest::Reported { pushes, .. } => {
                let books = &mut self.queues.books;
                let marked: Vec<PushId> = pushes
                    .iter()
                    .copied()
                    .filter(|p| books.expiry_reported(*p))
                    .collect();
                record::put_reported(&mut self.buf, &marked);
                (Outcome::Done, false)
            }
            // Reads: served after the batch (never routed here).
            BookRequest::Status { .. } | BookRequest::Expired { .. } => (Outcome::Done, false),
        }
    }

    /// Answers a read.
    pub(super) fn book_read(&self, req: BookRequest) {
        match req {
            BookRequest::Status {
                push,
                slot,
                now_ms,
                reply,
            } => {
                let queues = &self.queues;
                let status = queues
                    .books
                    .status(push, slot, |c, id| queues.facts(c, id, now_ms));
                let _ = reply.send(Ok(status));
            }
            BookRequest::Expired {
                now_ms,
                limit,
                reply,
            } => {
                let _ = reply.send(Ok(self.queues.books.expired_unreported(now_ms, limit)));
            }
            other => other.fail(StoreError::Unavailable("not a read".into())),
        }
    }

    /// Compaction: every push record with its receipts and recall, every claim.
    pub(super) fn compact_books(&self, log: &mut NewLog<'_>) -> Result<(), EmbeddedError> {
        for (push, rec) in &self.queues.books.records {
            record::put_named(&mut log.chunk, *push, rec.ts, rec.expires_ms, &rec.copies);
            let receipts: Vec<Receipt> = rec.receipts(*push).collect();
            if !receipts.is_empty() {
                record::put_receipts(&mut log.chunk, &receipts);
            }
            if let Some(report) = rec.recall {
                record::put_recall(&mut log.chunk, *push, report);
            }
            if self.queues.books.is_expiry_reported(push) {
                record::put_reported(&mut log.chunk, &[*push]);
            }
            log.spill()?;
        }
        for (key, claim) in &self.queues.claims.claims {
            record::put_claim(&mut log.chunk, key, claim);
        }
        log.spill()
    }
}

impl EmbeddedStore {
    /// Sends a book request and awaits its answer.
    pub(super) fn book<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> BookRequest,
    ) -> impl Future<Output = Result<T, StoreError>> + Send {
        let (reply, answer) = oneshot::channel();
        self.call(Request::Books(make(reply)), answer)
    }
}
