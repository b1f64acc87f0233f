//! [`EmbeddedStore`]: the handle, the database thread and the key layout.
//!
//! # Key layout
//!
//! | table | key | value | serves |
//! | --- | --- | --- | --- |
//! | `messages` | `(client, id)` | record: header (`ts`, `expires`, `acked`) + JSON body | `unacked` (range from `(client, after + 1)`), `ack` (point updates), `history` (a binary search on `ts`) |
//! | `expiry` | `(expires, client, id)` | `()` | TTL purge (range up to `now`, in bounded batches) |
//! | `counters` | `client` | last id | the per-client sequence; never deleted, so ids never restart |
//! | `floors` | `(client, slot)` | id | every id up to it is acknowledged by the slot |
//!
//! A record is `ts: u64 LE`, `expires: u64 LE`, `acked: u16 LE`, then the JSON text
//! `{"f":from,"ch":[topics],"d":data}` (`data` kept as its raw text). The body is encoded once
//! per push, whatever the number of recipients.
//!
//! Store times never go down within a client's queue: a message gets `now` or, if the clock
//! went back, its predecessor's time. So `ts` grows with the id, and `history` finds where
//! `since` starts by a binary search over the client's records instead of keeping a time
//! index: that index was a third of the cost of an append (a key per recipient in another
//! tree, on another page each). A database written by an earlier version has its `times`
//! table dropped when it is opened.
//!
//! # The thread
//!
//! redb is blocking and the [`MessageStore`] trait is runtime-free, so one std thread owns the
//! database and serves requests from a channel; every reply travels on a futures-channel
//! oneshot, so callers await it on any runtime. The thread takes every request waiting in the
//! channel (up to [`MAX_BATCH`]) and applies all the writes among them (appends and acks) in one
//! write transaction, one commit and one fsync: group commit. Then it answers the reads of the
//! batch from one read transaction, which sees those writes.
//!
//! An acknowledgement moves the slot's floor when it continues it (the common case: batches
//! are acknowledged in order), a write to one small table instead of a rewrite of each
//! message's record; an id acknowledged out of order gets its bit in its record, and the floor
//! passes over such ids (and over ids retention removed) when it next moves. A message is
//! acknowledged by a slot when its id is at or below the slot's floor or its bit is set.
//!
//! A batch of acknowledgements alone is committed without its own fsync
//! ([`Durability::None`]): the next append's commit makes it durable with it, and an idle
//! store makes it durable after at most [`LAZY_ACKS_FOR`]. A crash in between forgets those
//! acknowledgements, so their messages are delivered again: at-least-once allows that, and a
//! stream of acks (every delivered batch has one) no longer costs an fsync each.
//!
//! Retention never holds up delivery: the cap is enforced on append (deleting the ids that fall
//! below `last - cap`, usually one), and a purge removes expired messages in transactions of at
//! most [`PURGE_BATCH`] messages, serving any waiting requests between two of them. The first
//! purge after opening also sweeps every client once for messages beyond the cap, in the same
//! bounded steps, so that a cap lowered between two runs also applies to clients that receive
//! nothing new (the trait's rule: the cap is enforced by `purge` at the latest).

use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use futures_channel::oneshot;
use herald_core::{
    AppendResult, ClientId, Message, MessageId, MessageStore, NewMessage, Payload, Retention,
    RetentionReport, Slot, StoreError,
};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::config::EmbeddedConfig;
use crate::error::EmbeddedError;

/// `(client, id)` → record.
const MESSAGES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("messages");
/// `(client, ts, id)` → nothing: the time index earlier versions kept (dropped on open).
const LEGACY_TIMES: TableDefinition<'_, (&str, u64, u64), ()> = TableDefinition::new("times");
/// `(expires, client, id)` → nothing: the expiry index for purges.
const EXPIRY: TableDefinition<'_, (u64, &str, u64), ()> = TableDefinition::new("expiry");
/// `client` → the last id handed out.
const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");
/// `(client, slot)` → every id up to this one is acknowledged by the slot.
const FLOORS: TableDefinition<'_, (&str, u8), u64> = TableDefinition::new("floors");

/// Most records an acknowledgement looks at beyond its own ids to carry the floor over ids
/// acknowledged earlier out of order.
const FLOOR_LOOKAHEAD: usize = 256;

/// Most requests served by one turn of the thread (one write transaction).
pub const MAX_BATCH: usize = 512;
/// Longest time acknowledgements committed without an fsync wait for one, when nothing else
/// is written.
pub const LAZY_ACKS_FOR: std::time::Duration = std::time::Duration::from_millis(200);

/// Most expired messages one purge transaction removes.
pub const PURGE_BATCH: usize = 1000;

/// Length of a record's fixed header: `ts`, `expires`, `acked`.
const HEADER: usize = 18;

/// A durable [`MessageStore`] in one redb file, served by a dedicated thread.
///
/// Clones share the database. The thread stops, and the file is closed, when the last clone
/// is dropped (after the requests already sent are answered).
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    /// The channel to the thread, shared by clones.
    inner: Arc<Inner>,
}

/// What the clones share; dropping it stops the thread and waits for it.
#[derive(Debug)]
struct Inner {
    /// Requests to the database thread; `None` once dropping.
    tx: Option<mpsc::Sender<Request>>,
    /// The thread, joined on drop so that the file is closed when the store is gone.
    thread: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("the embedded store thread panicked");
        }
    }
}

/// A reply channel.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One request to the database thread.
enum Request {
    /// Append a message to many queues.
    Append {
        /// The encoded body, shared by all recipients.
        body: Vec<u8>,
        /// Its time to live, if the push gave one.
        ttl: Option<std::time::Duration>,
        /// The queues.
        recipients: Vec<ClientId>,
        /// The store time.
        now_ms: u64,
        /// Where the ids go.
        reply: Reply<AppendResult>,
    },
    /// Mark ids acknowledged by a slot.
    Ack {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// The ids.
        ids: Vec<MessageId>,
        /// Done.
        reply: Reply<()>,
    },
    /// Read unacknowledged messages.
    Unacked {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// The cursor.
        after: MessageId,
        /// At most this many.
        limit: usize,
        /// Expiry reference.
        now_ms: u64,
        /// The messages.
        reply: Reply<Vec<Message>>,
    },
    /// Read messages by store time.
    History {
        /// The client.
        client: ClientId,
        /// Oldest store time.
        since_ms: u64,
        /// At most this many.
        limit: usize,
        /// Expiry reference.
        now_ms: u64,
        /// The messages.
        reply: Reply<Vec<Message>>,
    },
    /// Drop expired messages and report retention drops.
    Purge {
        /// Expiry reference.
        now_ms: u64,
        /// The report.
        reply: Reply<RetentionReport>,
    },
    /// Round trip.
    Ping {
        /// Done.
        reply: Reply<()>,
    },
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `config.path` and starts its thread.
    ///
    /// # Errors
    /// When the directory cannot be created, the file cannot be opened (another process holds
    /// it, it is corrupt), or the thread cannot start.
    pub fn open(config: EmbeddedConfig) -> Result<EmbeddedStore, EmbeddedError> {
        std::fs::create_dir_all(&config.path).map_err(|source| EmbeddedError::CreateDir {
            path: config.path.clone(),
            source,
        })?;
        let db = Database::create(config.db_file())?;
        let txn = db.begin_write()?;
        {
            txn.open_table(MESSAGES)?;
            if txn.delete_table(LEGACY_TIMES)? {
                log::info!("embedded store: dropped the time index of an earlier version");
            }
            txn.open_table(EXPIRY)?;
            txn.open_table(COUNTERS)?;
            txn.open_table(FLOORS)?;
        }
        txn.commit()?;
        log::info!(
            "embedded store open at {} (cap {}, ttl {:?})",
            config.db_file().display(),
            config.retention.cap,
            config.retention.ttl
        );
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            db,
            retention: config.retention,
            capped_pending: 0,
            expired_pending: 0,
            purge: None,
            cap_sweep_due: true,
            lazy_acks: false,
        };
        let thread = std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || worker.run(&rx))
            .map_err(EmbeddedError::Thread)?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                tx: Some(tx),
                thread: Some(thread),
            }),
        })
    }

    /// Sends `req` to the thread and awaits its answer on `answer`.
    fn call<T: Send + 'static>(
        &self,
        req: Request,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static + use<T> {
        let sent = match &self.inner.tx {
            Some(tx) => tx.send(req).is_ok(),
            None => false,
        };
        await_answer(sent, answer)
    }
}

/// Awaits the thread's answer to a request (`sent` says whether it could be sent at all).
async fn await_answer<T>(
    sent: bool,
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    if !sent {
        return Err(stopped());
    }
    answer.await.unwrap_or_else(|_| Err(stopped()))
}

/// The error when the thread is gone (it panicked, or the store is being dropped).
fn stopped() -> StoreError {
    StoreError::Unavailable("the embedded store thread has stopped".into())
}

/// Milliseconds in a duration, saturating.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A message body as stored: borrowed for encoding.
#[derive(serde::Serialize)]
struct BodyRef<'a> {
    /// From.
    f: &'a str,
    /// Topics.
    ch: &'a [String],
    /// Data, raw.
    d: &'a Payload,
}

/// A message body as stored: owned for decoding.
#[derive(serde::Deserialize)]
struct Body {
    /// From.
    f: String,
    /// Topics.
    ch: Vec<String>,
    /// Data, raw.
    d: Payload,
}

/// A record's fixed header.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// Store time.
    ts: u64,
    /// Expiry time: expired when `now >= expires`.
    expires: u64,
    /// Ack bitmask.
    acked: u16,
}

impl Header {
    /// Reads the header of `record`.
    fn read(client: &str, id: u64, record: &[u8]) -> Result<Header, EmbeddedError> {
        let corrupt = || EmbeddedError::Corrupt {
            client: client.to_owned(),
            id,
            reason: format!(
                "record of {} bytes is shorter than its header",
                record.len()
            ),
        };
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(record.get(at..at + 8)?.try_into().ok()?))
        };
        let ts = u64_at(0).ok_or_else(corrupt)?;
        let expires = u64_at(8).ok_or_else(corrupt)?;
        let acked = record
            .get(16..18)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(corrupt)?;
        Ok(Header { ts, expires, acked })
    }

    /// Writes the header in front of `body`.
    fn record(self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.expires.to_le_bytes());
        out.extend_from_slice(&self.acked.to_le_bytes());
        out.extend_from_slice(body);
        out
    }
}

/// Decodes a whole record into a message.
fn decode(client: &str, id: u64, record: &[u8]) -> Result<(Header, Message), EmbeddedError> {
    let header = Header::read(client, id, record)?;
    let body: Body =
        serde_json::from_slice(&record[HEADER..]).map_err(|e| EmbeddedError::Corrupt {
            client: client.to_owned(),
            id,
            reason: e.to_string(),
        })?;
    let msg = Message {
        id: MessageId(id),
        from: body.f,
        channel: body.ch,
        data: body.d,
        ts: header.ts,
    };
    Ok((header, msg))
}

/// A purge in progress: its reference time, what it dropped so far, who waits for it.
struct PurgeJob {
    /// Expiry reference of the first purge request (later ones join it).
    now_ms: u64,
    /// Expired messages dropped so far.
    expired: u64,
    /// What the next step does.
    phase: PurgePhase,
    /// The callers waiting for the report.
    replies: Vec<Reply<RetentionReport>>,
}

/// The steps of a purge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PurgePhase {
    /// Removing expired messages, soonest expiry first.
    Expiry,
    /// The once-per-open sweep of every client for messages beyond the cap (the cap may have
    /// been lowered since the messages were stored), resuming after this client (`None`: from
    /// the first).
    Cap {
        /// The last client fully swept.
        after: Option<String>,
    },
}

/// The database thread's state.
struct Worker {
    /// The database.
    db: Database,
    /// Cap and default TTL.
    retention: Retention,
    /// Messages dropped by the cap on append, not yet reported by a purge.
    capped_pending: u64,
    /// Expired messages removed by a purge that then failed, not yet reported.
    expired_pending: u64,
    /// The purge in progress, if any.
    purge: Option<PurgeJob>,
    /// Whether the cap sweep is still to be done (once after opening).
    cap_sweep_due: bool,
    /// Acknowledgements were committed without an fsync since the last durable commit.
    lazy_acks: bool,
}

impl Worker {
    /// Serves requests until every handle is dropped.
    fn run(mut self, rx: &mpsc::Receiver<Request>) {
        loop {
            let first = if self.purge.is_some() {
                match rx.try_recv() {
                    Ok(req) => Some(req),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else if self.lazy_acks {
                match rx.recv_timeout(LAZY_ACKS_FOR) {
                    Ok(req) => Some(req),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.make_durable();
                        None
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(req) => Some(req),
                    Err(mpsc::RecvError) => break,
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
        self.make_durable();
        log::debug!("embedded store thread stopping");
    }

    /// Makes acknowledgements committed without an fsync durable (an empty durable commit).
    fn make_durable(&mut self) {
        if !self.lazy_acks {
            return;
        }
        let done = self
            .db
            .begin_write()
            .map_err(EmbeddedError::from)
            .and_then(|txn| txn.commit().map_err(EmbeddedError::from));
        match done {
            Ok(()) => self.lazy_acks = false,
            // Still lazy: the next write or timeout tries again; a crash meanwhile only
            // causes redeliveries.
            Err(e) => log::warn!("embedded store could not make acknowledgements durable: {e}"),
        }
    }

    /// Serves one batch: writes in one transaction, then reads.
    fn serve(&mut self, batch: Vec<Request>) {
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        for req in batch {
            match req {
                Request::Append { .. } | Request::Ack { .. } => writes.push(req),
                Request::Purge { now_ms, reply } => match &mut self.purge {
                    Some(job) => job.replies.push(reply),
                    None => {
                        self.purge = Some(PurgeJob {
                            now_ms,
                            expired: 0,
                            phase: PurgePhase::Expiry,
                            replies: vec![reply],
                        });
                    }
                },
                other => reads.push(other),
            }
        }
        if !writes.is_empty() {
            self.write_batch(writes);
        }
        if !reads.is_empty() {
            self.read_batch(reads);
        }
    }

    /// Applies `writes` in one transaction and answers them after the commit.
    fn write_batch(&mut self, writes: Vec<Request>) {
        let capped_before = self.capped_pending;
        // Acknowledgements alone are committed without an fsync (see the module's docs).
        let lazy = writes.iter().all(|w| matches!(w, Request::Ack { .. }));
        let result = (|| -> Result<Vec<Option<AppendResult>>, EmbeddedError> {
            let mut txn = self.db.begin_write()?;
            if lazy {
                txn.set_durability(Durability::None)?;
            }
            let mut outcomes = Vec::with_capacity(writes.len());
            for req in &writes {
                outcomes.push(match req {
                    Request::Append {
                        body,
                        ttl,
                        recipients,
                        now_ms,
                        ..
                    } => Some(self.append(&txn, body, *ttl, recipients, *now_ms)?),
                    Request::Ack {
                        client, slot, ids, ..
                    } => {
                        ack(&txn, client, *slot, ids)?;
                        None
                    }
                    _ => None,
                });
            }
            txn.commit()?;
            Ok(outcomes)
        })();
        match result {
            Ok(outcomes) => {
                // A durable commit also makes every earlier lazy one durable.
                self.lazy_acks = lazy;
                for (req, outcome) in writes.into_iter().zip(outcomes) {
                    match (req, outcome) {
                        (Request::Append { reply, .. }, Some(ids)) => {
                            let _ = reply.send(Ok(ids));
                        }
                        (Request::Ack { reply, .. }, _) => {
                            let _ = reply.send(Ok(()));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                // Nothing of the transaction was stored: the cap drops did not happen either.
                self.capped_pending = capped_before;
                log::error!(
                    "embedded store write of {} requests failed: {e}",
                    writes.len()
                );
                let err = StoreError::from(e);
                for req in writes {
                    match req {
                        Request::Append { reply, .. } => {
                            let _ = reply.send(Err(err.clone()));
                        }
                        Request::Ack { reply, .. } => {
                            let _ = reply.send(Err(err.clone()));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Appends one message to every recipient's queue, enforcing the cap.
    fn append(
        &mut self,
        txn: &WriteTransaction,
        body: &[u8],
        ttl: Option<std::time::Duration>,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> Result<AppendResult, EmbeddedError> {
        let expires = now_ms.saturating_add(millis(ttl.unwrap_or(self.retention.ttl)));
        let header = |ts| Header {
            ts,
            expires,
            acked: 0,
        };
        let record = header(now_ms).record(body);
        let mut messages = txn.open_table(MESSAGES)?;
        let mut expiry = txn.open_table(EXPIRY)?;
        let mut counters = txn.open_table(COUNTERS)?;
        // Recipients in key order, one table at a time: consecutive inserts land on the same
        // or neighbouring pages, so a push to thousands touches each page once instead of in
        // random order (a stable sort: a repeated recipient gets its ids in push order).
        let mut order: Vec<usize> = (0..recipients.len()).collect();
        order.sort_by(|a, b| recipients[*a].as_str().cmp(recipients[*b].as_str()));
        let mut ids = vec![MessageId::ZERO; recipients.len()];
        for &i in &order {
            let c = recipients[i].as_str();
            let id = counters.get(c)?.map_or(0, |g| g.value()) + 1;
            counters.insert(c, id)?;
            ids[i] = MessageId(id);
        }
        for &i in &order {
            let c = recipients[i].as_str();
            // The client's newest record, for a clock that went back (see the module's docs).
            let newest = match messages.range((c, 0)..(c, ids[i].0))?.next_back() {
                Some(entry) => {
                    let (key, value) = entry?;
                    Header::read(c, key.value().1, value.value())?.ts
                }
                None => 0,
            };
            if newest > now_ms {
                let late = header(newest).record(body);
                messages.insert((c, ids[i].0), late.as_slice())?;
            } else {
                messages.insert((c, ids[i].0), record.as_slice())?;
            }
        }
        for &i in &order {
            expiry.insert((expires, recipients[i].as_str(), ids[i].0), ())?;
        }
        for &i in &order {
            let (c, id) = (recipients[i].as_str(), ids[i].0);
            if id > self.retention.cap {
                let below = id - self.retention.cap;
                let mut dropped = Vec::new();
                for entry in messages.extract_from_if((c, 0)..=(c, below), |_, _| true)? {
                    let (key, value) = entry?;
                    let old_id = key.value().1;
                    dropped.push((old_id, Header::read(c, old_id, value.value())?));
                }
                for (old_id, h) in dropped {
                    expiry.remove((h.expires, c, old_id))?;
                    self.capped_pending += 1;
                }
            }
        }
        Ok(ids.into_iter().map(Ok).collect())
    }

    /// Answers `reads` from one read transaction.
    fn read_batch(&self, reads: Vec<Request>) {
        let txn = match self.db.begin_read() {
            Ok(txn) => Some(txn),
            Err(e) => {
                log::error!("embedded store read transaction failed: {e}");
                None
            }
        };
        for req in reads {
            let txn = txn.as_ref();
            let fail = || StoreError::Unavailable("read transaction failed".into());
            match req {
                Request::Unacked {
                    client,
                    slot,
                    after,
                    limit,
                    now_ms,
                    reply,
                } => {
                    let r = txn.ok_or_else(fail).and_then(|t| {
                        unacked(t, &client, slot, after, limit, now_ms).map_err(StoreError::from)
                    });
                    let _ = reply.send(r);
                }
                Request::History {
                    client,
                    since_ms,
                    limit,
                    now_ms,
                    reply,
                } => {
                    let r = txn.ok_or_else(fail).and_then(|t| {
                        history(t, &client, since_ms, limit, now_ms).map_err(StoreError::from)
                    });
                    let _ = reply.send(r);
                }
                Request::Ping { reply } => {
                    let r = txn.ok_or_else(fail).and_then(|t| {
                        t.open_table(COUNTERS)
                            .map(|_| ())
                            .map_err(|e| StoreError::from(EmbeddedError::from(e)))
                    });
                    let _ = reply.send(r);
                }
                Request::Append { .. } | Request::Ack { .. } | Request::Purge { .. } => {}
            }
        }
    }

    /// Runs one bounded step of the purge in progress; answers it when it is complete.
    fn purge_step(&mut self) {
        let Some(mut job) = self.purge.take() else {
            return;
        };
        let step = match job.phase.clone() {
            PurgePhase::Expiry => self.expiry_step(job.now_ms).map(|removed| {
                job.expired += removed as u64;
                if removed >= PURGE_BATCH {
                    false
                } else if self.cap_sweep_due {
                    job.phase = PurgePhase::Cap { after: None };
                    false
                } else {
                    true
                }
            }),
            PurgePhase::Cap { after } => self.cap_step(after.as_deref()).map(|(next, capped)| {
                self.capped_pending += capped;
                match next {
                    Some(after) => {
                        job.phase = PurgePhase::Cap { after };
                        false
                    }
                    None => {
                        self.cap_sweep_due = false;
                        true
                    }
                }
            }),
        };
        match step {
            Ok(false) => self.purge = Some(job),
            Ok(true) => {
                let report = RetentionReport {
                    expired: job.expired + std::mem::take(&mut self.expired_pending),
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
            }
            Err(e) => {
                log::error!("embedded store purge failed: {e}");
                // What earlier steps removed stays counted for the next purge's report.
                self.expired_pending += job.expired;
                let err = StoreError::from(e);
                for reply in job.replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Removes up to [`PURGE_BATCH`] messages expired at `now_ms` in one transaction and says
    /// how many it removed.
    fn expiry_step(&self, now_ms: u64) -> Result<usize, EmbeddedError> {
        let txn = self.db.begin_write()?;
        let removed;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut expiry = txn.open_table(EXPIRY)?;
            let mut due = Vec::new();
            for entry in expiry.range(..(now_ms.saturating_add(1), "", 0))? {
                let (key, _) = entry?;
                let (expires, c, id) = key.value();
                due.push((expires, c.to_owned(), id));
                if due.len() >= PURGE_BATCH {
                    break;
                }
            }
            for (expires, c, id) in &due {
                expiry.remove((*expires, c.as_str(), *id))?;
                messages.remove((c.as_str(), *id))?;
            }
            removed = due.len();
        }
        txn.commit()?;
        Ok(removed)
    }

    /// One step of the cap sweep: visits up to [`PURGE_BATCH`] clients after `after` and
    /// removes up to [`PURGE_BATCH`] messages beyond the cap among them, in one transaction.
    ///
    /// Returns where to resume (`None` when every client was swept) and how many messages it
    /// removed.
    fn cap_step(
        &self,
        after: Option<&str>,
    ) -> Result<(Option<Option<String>>, u64), EmbeddedError> {
        use std::ops::Bound;
        let cap = self.retention.cap;
        let txn = self.db.begin_write()?;
        let mut removed = 0usize;
        let mut resume = after.map(str::to_owned);
        let more;
        {
            let counters = txn.open_table(COUNTERS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut expiry = txn.open_table(EXPIRY)?;
            let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut clients = Vec::new();
            for entry in counters.range::<&str>((lower, Bound::Unbounded))? {
                let (key, last) = entry?;
                clients.push((key.value().to_owned(), last.value()));
                if clients.len() >= PURGE_BATCH {
                    break;
                }
            }
            let mut stopped_early = false;
            for (c, last) in &clients {
                if *last > cap {
                    let allowance = PURGE_BATCH - removed;
                    if allowance == 0 {
                        stopped_early = true;
                        break;
                    }
                    let below = last - cap;
                    let mut dropped = Vec::new();
                    // Only the entries read from the iterator are removed.
                    for entry in messages
                        .extract_from_if((c.as_str(), 0)..=(c.as_str(), below), |_, _| true)?
                        .take(allowance)
                    {
                        let (key, value) = entry?;
                        let id = key.value().1;
                        dropped.push((id, Header::read(c, id, value.value())?));
                    }
                    let full = dropped.len() == allowance;
                    for (id, h) in dropped {
                        expiry.remove((h.expires, c.as_str(), id))?;
                        removed += 1;
                    }
                    if full {
                        // This client may have more beyond the cap: visit it again.
                        stopped_early = true;
                        break;
                    }
                }
                resume = Some(c.clone());
            }
            more = stopped_early || clients.len() >= PURGE_BATCH;
        }
        txn.commit()?;
        Ok((more.then_some(resume), removed as u64))
    }
}

/// Acknowledges every existing id of `client` among `ids` for `slot`: the slot's floor moves
/// over those that continue it (and over earlier out-of-order acks and ids no longer stored
/// that follow), the others get their bit in their record.
fn ack(
    txn: &WriteTransaction,
    client: &ClientId,
    slot: Slot,
    ids: &[MessageId],
) -> Result<(), EmbeddedError> {
    let c = client.as_str();
    let mut floors = txn.open_table(FLOORS)?;
    let floor = floors.get((c, slot.get()))?.map_or(0, |g| g.value());
    // Ids above the last one handed out do not exist yet: ignored, never a floor.
    let last = txn.open_table(COUNTERS)?.get(c)?.map_or(0, |g| g.value());
    let mut ids: Vec<u64> = ids
        .iter()
        .map(|i| i.0)
        .filter(|i| *i > floor && *i <= last)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let Some(&top) = ids.last() else {
        return Ok(());
    };
    let mut messages = txn.open_table(MESSAGES)?;
    let mut new_floor = floor;
    let mut contiguous = true;
    let mut bits = Vec::new();
    let mut beyond = 0;
    for entry in messages.range((c, floor + 1)..=(c, u64::MAX))? {
        let (key, value) = entry?;
        let id = key.value().1;
        let acked_now = ids.binary_search(&id).is_ok();
        let acked_before = Header::read(c, id, value.value())?.acked & slot.bit() != 0;
        if id > top {
            // Past this ack's ids: only earlier out-of-order acks extend the floor.
            beyond += 1;
            if !contiguous || !acked_before || beyond > FLOOR_LOOKAHEAD {
                break;
            }
            new_floor = id;
            continue;
        }
        if contiguous && (acked_now || acked_before) {
            new_floor = id;
        } else {
            contiguous = false;
            if acked_now && !acked_before {
                bits.push(id);
            }
        }
    }
    if contiguous && new_floor < top {
        // The ids up to `top` (handed out, so stored once) that are not stored any more
        // (retention) are no gap.
        new_floor = top;
    }
    if new_floor > floor {
        floors.insert((c, slot.get()), new_floor)?;
    }
    for id in bits {
        let updated = match messages.get((c, id))? {
            None => None,
            Some(guard) => {
                let record = guard.value();
                let h = Header::read(c, id, record)?;
                let mut record = record.to_vec();
                record[16..18].copy_from_slice(&(h.acked | slot.bit()).to_le_bytes());
                Some(record)
            }
        };
        if let Some(record) = updated {
            messages.insert((c, id), record.as_slice())?;
        }
    }
    Ok(())
}

/// Up to `limit` messages after `after` not acknowledged by `slot` and not expired.
fn unacked(
    txn: &ReadTransaction,
    client: &ClientId,
    slot: Slot,
    after: MessageId,
    limit: usize,
    now_ms: u64,
) -> Result<Vec<Message>, EmbeddedError> {
    let c = client.as_str();
    let messages = txn.open_table(MESSAGES)?;
    let floor = txn
        .open_table(FLOORS)?
        .get((c, slot.get()))?
        .map_or(0, |g| g.value());
    let mut out = Vec::new();
    let after = after.0.max(floor);
    if limit == 0 || after == u64::MAX {
        return Ok(out);
    }
    for entry in messages.range((c, after + 1)..=(c, u64::MAX))? {
        let (key, value) = entry?;
        let id = key.value().1;
        let record = value.value();
        let h = Header::read(c, id, record)?;
        if h.acked & slot.bit() != 0 || now_ms >= h.expires {
            continue;
        }
        out.push(decode(c, id, record)?.1);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Up to `limit` messages stored at or after `since_ms` and not expired, oldest first.
fn history(
    txn: &ReadTransaction,
    client: &ClientId,
    since_ms: u64,
    limit: usize,
    now_ms: u64,
) -> Result<Vec<Message>, EmbeddedError> {
    let c = client.as_str();
    let messages = txn.open_table(MESSAGES)?;
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // The first record at or after id `m`, and whether it was stored before `since_ms`.
    let before_since = |m: u64| -> Result<bool, EmbeddedError> {
        match messages.range((c, m)..=(c, u64::MAX))?.next() {
            Some(entry) => {
                let (key, value) = entry?;
                Ok(Header::read(c, key.value().1, value.value())?.ts < since_ms)
            }
            None => Ok(false),
        }
    };
    // `ts` grows with the id, so "stored before since" holds for a prefix of the ids: find
    // the first id past it.
    let (mut lo, mut hi) = {
        let mut all = messages.range((c, 0)..=(c, u64::MAX))?;
        let first = match all.next() {
            Some(entry) => entry?.0.value().1,
            None => return Ok(out),
        };
        let last = match all.next_back() {
            Some(entry) => entry?.0.value().1,
            None => first,
        };
        (first, last.saturating_add(1))
    };
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before_since(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for entry in messages.range((c, lo)..=(c, u64::MAX))? {
        let (key, value) = entry?;
        let (h, msg) = decode(c, key.value().1, value.value())?;
        if now_ms >= h.expires {
            continue;
        }
        out.push(msg);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

impl MessageStore for EmbeddedStore {
    fn append(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> impl Future<Output = Result<AppendResult, StoreError>> + Send {
        let body = serde_json::to_vec(&BodyRef {
            f: &msg.from,
            ch: &msg.channel,
            d: &msg.data,
        });
        let call = match body {
            Ok(body) => Ok({
                let (reply, answer) = oneshot::channel();
                self.call(
                    Request::Append {
                        body,
                        ttl: msg.ttl,
                        recipients: recipients.to_vec(),
                        now_ms,
                        reply,
                    },
                    answer,
                )
            }),
            Err(e) => Err(StoreError::Rejected(format!(
                "message cannot be encoded: {e}"
            ))),
        };
        async move {
            match call {
                Ok(call) => call.await,
                Err(e) => Err(e),
            }
        }
    }

    fn unacked(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send {
        {
            let (reply, answer) = oneshot::channel();
            self.call(
                Request::Unacked {
                    client: client.clone(),
                    slot,
                    after,
                    limit,
                    now_ms,
                    reply,
                },
                answer,
            )
        }
    }

    fn ack(
        &self,
        client: &ClientId,
        slot: Slot,
        ids: &[MessageId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        {
            let (reply, answer) = oneshot::channel();
            self.call(
                Request::Ack {
                    client: client.clone(),
                    slot,
                    ids: ids.to_vec(),
                    reply,
                },
                answer,
            )
        }
    }

    fn history(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send {
        {
            let (reply, answer) = oneshot::channel();
            self.call(
                Request::History {
                    client: client.clone(),
                    since_ms,
                    limit,
                    now_ms,
                    reply,
                },
                answer,
            )
        }
    }

    fn purge(
        &self,
        now_ms: u64,
    ) -> impl Future<Output = Result<RetentionReport, StoreError>> + Send {
        {
            let (reply, answer) = oneshot::channel();
            self.call(Request::Purge { now_ms, reply }, answer)
        }
    }

    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        {
            let (reply, answer) = oneshot::channel();
            self.call(Request::Ping { reply }, answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_short_ones_are_corrupt() {
        let body = serde_json::to_vec(&BodyRef {
            f: "billing",
            ch: &["invoice".to_owned()],
            d: &Payload::from_json(r#"{"a": [1, 2]}"#).unwrap(),
        })
        .unwrap();
        let record = Header {
            ts: 7,
            expires: 9,
            acked: 0b1000_0000_0000_0001,
        }
        .record(&body);
        let (h, msg) = decode("c", 3, &record).unwrap();
        assert_eq!((h.ts, h.expires, h.acked), (7, 9, 0b1000_0000_0000_0001));
        assert_eq!(msg.id, MessageId(3));
        assert_eq!(msg.from, "billing");
        assert_eq!(msg.channel, ["invoice"]);
        assert_eq!(
            msg.data.json(),
            r#"{"a": [1, 2]}"#,
            "data is kept as received"
        );
        assert!(matches!(
            decode("c", 3, &record[..10]),
            Err(EmbeddedError::Corrupt { id: 3, .. })
        ));
        assert!(matches!(
            decode("c", 3, &record[..HEADER + 2]),
            Err(EmbeddedError::Corrupt { .. })
        ));
    }
}
