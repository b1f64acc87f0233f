//! The store thread: batches of requests, group commit, lazy acknowledgements, purges and
//! compaction.

use super::*;

/// A purge in progress: its reference time, what it dropped so far, who waits for it.
pub(super) struct PurgeJob {
    /// Expiry reference of the first purge request (later ones join it).
    pub(super) now_ms: u64,
    /// Expired entries dropped so far.
    pub(super) expired: u64,
    /// The first queue the next step looks at.
    pub(super) next: usize,
    /// The callers waiting for the report.
    pub(super) replies: Vec<Reply<RetentionReport>>,
}

/// The store thread's state.
pub(super) struct Worker {
    /// Acknowledgements queued by the handles.
    pub(super) acks: Arc<AckQueue>,
    /// The data directory.
    pub(super) dir: PathBuf,
    /// The log's path.
    pub(super) log_path: PathBuf,
    /// The high-water mark file's path.
    pub(super) ids_path: PathBuf,
    /// The high-water mark: no id above it was handed out; raised (and synced) before a
    /// batch that goes above it is written.
    pub(super) mark: u64,
    /// The log.
    pub(super) file: File,
    /// The log's length: where the next batch is written.
    pub(super) end: u64,
    /// The log's length after the last compaction (at opening: what the index needs).
    pub(super) compacted: u64,
    /// The smallest log that is compacted.
    pub(super) compact_at: u64,
    /// The index.
    pub(super) queues: Queues,
    /// Time of the last finished purge.
    pub(super) last_purge: u64,
    /// Cap and default TTL.
    pub(super) retention: Retention,
    /// The index's bounds (push records, idempotency claims).
    pub(super) bounds: crate::config::Bounds,
    /// Entries dropped by the cap, not yet reported by a purge.
    pub(super) capped_pending: u64,
    /// The purge in progress, if any.
    pub(super) purge: Option<PurgeJob>,
    /// Acknowledgements were written without an fsync since the last sync.
    pub(super) lazy_acks: bool,
    /// Why the store cannot serve any more (a failed write it could not undo).
    pub(super) broken: Option<String>,
    /// The records of the batch being written.
    pub(super) buf: Vec<u8>,
    /// The data directory's lock, held as long as the thread runs.
    pub(super) _lock: File,
}

impl Drop for Worker {
    /// However the thread ends (a panic included), acknowledgements are refused from then on
    /// instead of piling up in a queue nobody takes.
    fn drop(&mut self) {
        self.acks.close();
    }
}

impl Worker {
    /// Serves requests until every handle is dropped.
    pub(super) fn run(mut self, rx: &mpsc::Receiver<Request>) {
        loop {
            let first = if self.purge.is_some() {
                match rx.try_recv() {
                    Ok(req) => Some(req),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                // Woken at least every LAZY_ACKS_FOR, for the queued acknowledgements.
                match rx.recv_timeout(LAZY_ACKS_FOR) {
                    Ok(req) => Some(req),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.serve(Vec::new());
                        self.make_durable();
                        None
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(req) => batch.push(req),
                        Err(_) => break,
                    }
                }
                self.serve(batch);
            }
            if self.purge.is_some() {
                self.purge_step();
            }
        }
        self.acks.close();
        self.serve(Vec::new());
        self.make_durable();
        log::debug!("embedded store thread stopping");
    }

    /// Syncs acknowledgements written without an fsync.
    pub(super) fn make_durable(&mut self) {
        if !self.lazy_acks {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => self.lazy_acks = false,
            // Still lazy: the next write or timeout tries again; a crash meanwhile only
            // causes redeliveries.
            Err(e) => log::warn!("embedded store could not make acknowledgements durable: {e}"),
        }
    }

    /// Serves one batch, with the acknowledgements queued until now: the writes with one
    /// write and at most one sync, then the reads.
    pub(super) fn serve(&mut self, batch: Vec<Request>) {
        let acks = self.acks.take();
        if let Some(why) = &self.broken {
            let err = StoreError::Unavailable(why.clone());
            for req in batch {
                req.fail(err.clone());
            }
            return;
        }
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        for req in batch {
            match req {
                Request::Append { .. } => writes.push(req),
                Request::Books(ref b) if b.is_write() => writes.push(req),
                Request::Purge { now_ms, reply } => match &mut self.purge {
                    Some(job) => job.replies.push(reply),
                    None => {
                        self.purge = Some(PurgeJob {
                            now_ms,
                            expired: 0,
                            next: 0,
                            replies: vec![reply],
                        });
                    }
                },
                other => reads.push(other),
            }
        }
        if !writes.is_empty() || !acks.is_empty() {
            self.write_batch(&acks, writes);
        }
        for req in reads {
            self.read(req);
        }
    }

    /// Applies `acks`, then `writes` (appends), to the index, writes their records, syncs if
    /// there is an append, and answers the appends.
    pub(super) fn write_batch(&mut self, acks: &[QueuedAck], writes: Vec<Request>) {
        let start = self.end;
        let capped_before = self.capped_pending;
        self.buf.clear();
        for QueuedAck { client, slot, ids } in acks {
            let changed = self.queues.ack(client, *slot, ids);
            if !changed.is_empty() {
                record::put_ack(&mut self.buf, client, *slot, &changed);
            }
        }
        let mut outcomes = Vec::with_capacity(writes.len());
        // Appends, recalls and claims are synced; receipts alone are not (like acks).
        let mut appended = false;
        for req in &writes {
            match req {
                Request::Append {
                    body,
                    push,
                    ttl,
                    recipients,
                    now_ms,
                    ..
                } => {
                    appended = true;
                    let ids = self.append(start, body, *ttl, recipients, *now_ms);
                    if let Some(push) = push {
                        self.name_push(*push, *now_ms, *ttl, recipients, &ids);
                    }
                    outcomes.push(receipts::Outcome::Appended(ids));
                }
                Request::Books(b) => {
                    let (outcome, durable) = self.book_write(b);
                    appended |= durable;
                    outcomes.push(outcome);
                }
                _ => {}
            }
        }
        let written = self
            .cover_ids()
            .and_then(|()| self.write_and_sync(start, appended));
        match written {
            Ok(()) => {
                // A sync also makes every earlier unsynced write durable.
                self.lazy_acks = !appended && (self.lazy_acks || self.end > start);
                for (req, outcome) in writes.into_iter().zip(outcomes) {
                    outcome.answer(req);
                }
                self.maybe_compact();
            }
            Err(e) => {
                log::error!(
                    "embedded store write of {} appends and {} acknowledgements failed: {e}",
                    writes.len(),
                    acks.len()
                );
                // The acknowledgements are lost with the index rebuilt from the log: their
                // messages are delivered again (at-least-once).
                self.undo(start);
                self.capped_pending = capped_before;
                let err = StoreError::from(e);
                for req in writes {
                    req.fail(err.clone());
                }
            }
        }
    }

    /// Raises the high-water mark, before the batch is written, when the batch hands out ids
    /// above it.
    pub(super) fn cover_ids(&mut self) -> Result<(), EmbeddedError> {
        if self.queues.high > self.mark {
            let mark = self.queues.high.saturating_add(ID_RESERVE);
            write_ids(&self.ids_path, mark)?;
            self.mark = mark;
        }
        Ok(())
    }

    /// Writes the batch's records at `start` and syncs them when `sync`.
    pub(super) fn write_and_sync(&mut self, start: u64, sync: bool) -> Result<(), EmbeddedError> {
        let err = |e| io_error(&self.log_path, e);
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, start).map_err(err)?;
            self.end = start + self.buf.len() as u64;
        }
        if sync {
            self.file.sync_data().map_err(err)?;
        }
        Ok(())
    }

    /// After a failed write: cuts the log back to `start` and rebuilds the index from it, so
    /// that nothing of the failed batch stays visible; if that fails too, stops serving.
    pub(super) fn undo(&mut self, start: u64) {
        let rebuilt = self
            .file
            .set_len(start)
            .map_err(|e| io_error(&self.log_path, e))
            .and_then(|()| {
                let cap = self.retention.cap;
                load(&self.log_path, &self.ids_path, cap, false, self.bounds)
            });
        match rebuilt {
            Ok(loaded) => {
                self.mark = self.mark.max(loaded.mark);
                self.file = loaded.file;
                self.end = loaded.end;
                self.queues = loaded.queues;
                self.last_purge = loaded.last_purge;
            }
            Err(e) => {
                log::error!("embedded store cannot undo a failed write, it stops serving: {e}");
                self.broken = Some(format!(
                    "the embedded store failed a write and could not undo it ({e}); restart Herald"
                ));
                self.acks.close();
            }
        }
    }

    /// Appends one message to every recipient's queue, enforcing the cap, and puts its
    /// record in the batch written at `start`.
    pub(super) fn append(
        &mut self,
        start: u64,
        body: &[u8],
        ttl: Option<std::time::Duration>,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> AppendResult {
        let expires = now_ms.saturating_add(millis(ttl.unwrap_or(self.retention.ttl)));
        let body_at = start + self.buf.len() as u64 + record::PUSH_BODY_AT;
        let push = self.queues.new_push(body_at, body.len() as u32);
        let mut copies = Vec::with_capacity(recipients.len());
        for client in recipients {
            let (id, ts, capped) =
                self.queues
                    .append(client, push, expires, now_ms, self.retention.cap);
            self.capped_pending += capped;
            copies.push((client, id, ts, 0));
        }
        self.queues.forget_if_unused(push);
        record::put_push(&mut self.buf, expires, body, copies.iter().copied());
        copies.into_iter().map(|(_, id, _, _)| Ok(id)).collect()
    }

    /// Answers one read.
    pub(super) fn read(&mut self, req: Request) {
        match req {
            Request::Unacked {
                client,
                slot,
                after,
                limit,
                now_ms,
                reply,
            } => {
                self.queues.seen(&client, slot);
                let entries = self.queues.unacked(&client, slot, after, limit, now_ms);
                let _ = reply.send(self.messages(&entries).map_err(StoreError::from));
            }
            Request::History {
                client,
                since_ms,
                limit,
                now_ms,
                reply,
            } => {
                let entries = self.queues.history(&client, since_ms, limit, now_ms);
                let _ = reply.send(self.messages(&entries).map_err(StoreError::from));
            }
            Request::Ping { reply } => {
                let _ = reply.send(Ok(()));
            }
            Request::Slots {
                client,
                also,
                now_ms,
                reply,
            } => {
                let _ = reply.send(Ok(self.queues.slots(&client, &also, now_ms)));
            }
            Request::Books(b) if !b.is_write() => self.book_read(b),
            other => other.fail(StoreError::Unavailable("not a read".into())),
        }
    }

    /// The messages of `entries`, their bodies read from the log.
    pub(super) fn messages(&self, entries: &[Entry]) -> Result<Vec<Message>, EmbeddedError> {
        let mut out = Vec::with_capacity(entries.len());
        let mut bytes = Vec::new();
        for e in entries {
            self.body(e.push, &mut bytes)?;
            let body: Body = serde_json::from_slice(&bytes).map_err(|err| EmbeddedError::Log {
                path: self.log_path.clone(),
                offset: self.queues.pushes.get(&e.push).map_or(0, |p| p.body_at),
                reason: format!("message body: {err}"),
            })?;
            out.push(Message {
                id: MessageId(e.id),
                from: body.f,
                channel: body.ch,
                data: body.d,
                ts: e.ts,
                push: body.p.and_then(|p| herald_core::PushId::parse(&p).ok()),
            });
        }
        Ok(out)
    }

    /// Reads the body of `push` into `out`.
    pub(super) fn body(&self, push: u64, out: &mut Vec<u8>) -> Result<(), EmbeddedError> {
        let Some(p) = self.queues.pushes.get(&push) else {
            return Err(EmbeddedError::Log {
                path: self.log_path.clone(),
                offset: 0,
                reason: format!("push {push} of a kept entry is not in the index"),
            });
        };
        out.resize(p.body_len as usize, 0);
        self.file
            .read_exact_at(out, p.body_at)
            .map_err(|e| io_error(&self.log_path, e))
    }

    /// One step of the purge in progress: removes expired entries from up to [`PURGE_BATCH`]
    /// queues; after the last, records the purge and answers its callers.
    pub(super) fn purge_step(&mut self) {
        let Some(mut job) = self.purge.take() else {
            return;
        };
        let n = self.queues.queues.len();
        let to = (job.next + PURGE_BATCH).min(n);
        job.expired += self.queues.expire(job.next..to, job.now_ms);
        job.next = to;
        if to < n {
            self.purge = Some(job);
            return;
        }
        // Replay drops what this purge dropped (lazily synced: losing the record only
        // means the next purge drops the same entries again).
        self.buf.clear();
        record::put_purged(&mut self.buf, job.now_ms);
        let start = self.end;
        if let Err(e) = self.write_and_sync(start, false) {
            log::error!("embedded store could not record a purge: {e}");
            self.undo(start);
            let err = StoreError::from(e);
            for reply in job.replies {
                let _ = reply.send(Err(err.clone()));
            }
            return;
        }
        self.lazy_acks = true;
        self.last_purge = self.last_purge.max(job.now_ms);
        self.queues.books.purge(job.now_ms);
        self.queues.claims.purge(job.now_ms);
        let report = RetentionReport {
            expired: job.expired,
            capped: std::mem::take(&mut self.capped_pending),
        };
        if report.expired + report.capped > 0 {
            log::debug!(
                "embedded store purge dropped {} expired, {} capped",
                report.expired,
                report.capped
            );
        }
        for reply in job.replies {
            let _ = reply.send(Ok(report));
        }
        self.maybe_compact();
    }

    /// Compacts the log when it is big enough and mostly garbage (see the module's docs).
    pub(super) fn maybe_compact(&mut self) {
        if self.end < self.compact_at
            || self.end < 2 * self.compacted
            || self.end < 2 * self.queues.live_bytes()
        {
            return;
        }
        let before = self.end;
        let started = std::time::Instant::now();
        match self.compact() {
            Ok(()) => log::info!(
                "embedded store compacted its log from {before} to {} bytes in {:?}",
                self.end,
                started.elapsed()
            ),
            Err(e) => {
                log::error!("embedded store compaction failed, the log stays as it is: {e}");
                let tmp = self.dir.join(EmbeddedConfig::COMPACT_FILE);
                if tmp.exists()
                    && let Err(e) = std::fs::remove_file(&tmp)
                {
                    log::warn!("embedded store cannot remove {}: {e}", tmp.display());
                }
                // Not again before the log doubles once more.
                self.compacted = self.end;
            }
        }
    }

    /// Writes the live state to a new log and renames it over the old one.
    pub(super) fn compact(&mut self) -> Result<(), EmbeddedError> {
        let tmp = self.dir.join(EmbeddedConfig::COMPACT_FILE);
        let mut log = NewLog::create(&tmp)?;
        if self.queues.floor > 0 {
            // First, so that the queues below start above it, as live.
            record::put_floor(&mut log.chunk, self.queues.floor);
        }
        record::put_cap(&mut log.chunk, self.retention.cap);
        record::put_purged(&mut log.chunk, self.last_purge);
        for q in &self.queues.queues {
            record::put_last(&mut log.chunk, &q.client, MessageId(q.last));
        }
        // Before the pushes: replay trims each queue as its entries come back.
        for q in &self.queues.queues {
            for &(from, to) in &q.skipped {
                record::put_skipped(&mut log.chunk, &q.client, from, to);
            }
        }
        // Every kept entry by push, in push order (which is id order in every queue).
        let mut by_push: std::collections::BTreeMap<u64, Vec<(usize, usize)>> =
            std::collections::BTreeMap::new();
        for (qi, q) in self.queues.queues.iter().enumerate() {
            for (ei, e) in q.entries.iter().enumerate() {
                by_push.entry(e.push).or_default().push((qi, ei));
            }
        }
        let mut moved = Vec::with_capacity(by_push.len());
        let mut body = Vec::new();
        for (push, refs) in by_push {
            self.body(push, &mut body)?;
            let queues = &self.queues.queues;
            let expires = queues[refs[0].0].entries[refs[0].1].expires;
            let at = record::put_push(
                &mut log.chunk,
                expires,
                &body,
                refs.iter().map(|&(qi, ei)| {
                    let (q, e) = (&queues[qi], &queues[qi].entries[ei]);
                    (&q.client, MessageId(e.id), e.ts, e.acked)
                }),
            );
            moved.push((push, log.written + at as u64));
            log.spill()?;
        }
        // After the pushes: recalls mark the entries they restored.
        self.compact_books(&mut log)?;
        let written = log.finish(&self.log_path)?;
        // From here the new log is the store: switch to it whatever happens next.
        let reopened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.log_path);
        let file = match reopened {
            Ok(file) => file,
            Err(e) => {
                self.broken = Some(format!(
                    "the compacted log cannot be opened ({e}); restart Herald"
                ));
                self.acks.close();
                return Err(io_error(&self.log_path, e));
            }
        };
        self.file = file;
        for (push, at) in moved {
            if let Some(p) = self.queues.pushes.get_mut(&push) {
                p.body_at = at;
            }
        }
        self.end = written;
        self.compacted = written;
        self.lazy_acks = false;
        Ok(())
    }
}
