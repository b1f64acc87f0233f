//! [`EmbeddedStore`]: the handle, the store thread, the log file and its compaction.
//!
//! # Layout
//!
//! The data directory holds one append-only log, [`EmbeddedConfig::LOG_FILE`] (record layout
//! in [`crate::record`]), and a lock file. A push is written once, as one record with its
//! body and every recipient's id and store time, however many recipients it has; an
//! acknowledgement is a small record of the ids it changed. Nothing is rewritten in place.
//!
//! In memory the store keeps an index ([`crate::queues`]): per client its last id and its
//! kept entries (id, store time, expiry, acknowledged slots, which push), 40 bytes each; per
//! push where its body is in the log. Reads answer from the index and read bodies back with
//! positioned reads (from the page cache, as a rule). Opening the store replays the log to
//! rebuild the index; a record cut short by a crash at the end of the log (its length or
//! checksum does not match, and no intact record follows) is dropped, and the file truncated
//! there. Damage before the end stops opening unless a recovery is asked for, and ids never
//! go back (the crate's docs, "Damage" and "Ids"); the high-water mark of ids is the file
//! [`EmbeddedConfig::IDS_FILE`].
//!
//! Store times never go down within a client's queue: a message gets `now` or, if the clock
//! went back, its predecessor's time, so `history` finds where `since` starts by a binary
//! search.
//!
//! # The thread
//!
//! The [`MessageStore`] trait is runtime-free, so one std thread owns the log and the index
//! and serves requests from a channel; every reply travels on a futures-channel oneshot, so
//! callers await it on any runtime. The thread takes every request waiting in the channel (up
//! to [`MAX_BATCH`]), applies the writes among them to the index, writes their records with
//! one `write` and, if the batch holds an append, one `fdatasync`: group commit. Then it
//! answers the writes, and the reads of the batch, which see them.
//!
//! Acknowledgements do not travel on the channel. `ack` puts them in a queue shared with the
//! thread and answers at once (a ready future: the caller needs no task and no wake-up), and
//! the thread takes the whole queue at the start of each batch, before the batch's requests
//! are applied, and at least every [`LAZY_ACKS_FOR`]. So a read sent after an `ack` answered
//! sees it. Their records are written with the batch and not synced on their own: the next
//! append's sync makes them durable, and an idle store syncs after at most [`LAZY_ACKS_FOR`].
//! A crash in between forgets those acknowledgements, so their messages are delivered again:
//! at-least-once allows that, and a stream of acks costs no fsync, no thread wake-up and no
//! reply each.
//!
//! If a write or a sync fails, the log is cut back to where the batch began and the index
//! rebuilt from it, so nothing the callers were told failed is visible; if even that fails,
//! the store answers every request as unavailable until it is reopened.
//!
//! # Retention and compaction
//!
//! The per-client cap is applied on append (the entries below `last - cap` leave the index).
//! A purge removes expired entries from the index in steps of [`PURGE_BATCH`] queues, serving
//! waiting requests between two steps, then writes a record saying up to when everything
//! expired is gone. Neither rewrites the log: replay applies the same rules (the log records
//! the cap in force, and each purge's time), so a restart brings back nothing retention
//! dropped. A cap lowered between two runs is applied when the store opens, and the next
//! purge reports those drops.
//!
//! What retention dropped, and acknowledgement records, are garbage in the log. When the log
//! is at least [`EmbeddedConfig::compact_at`] bytes, twice its size after the last compaction,
//! and more than half of it garbage by the index's estimate, the thread writes the live state
//! (the cap, the last purge, every client's last id, every kept push with its kept copies and
//! their acknowledgements) to a new file, syncs it and renames it over the log. A crash before
//! the rename leaves the old log, and the unfinished file is removed on the next open.
//!
//! # Earlier versions
//!
//! Herald up to this one kept the store in a redb database ([`EmbeddedConfig::LEGACY_DB_FILE`]).
//! Opening a data directory that has one and no log converts it ([`crate::migrate`]): every
//! message with its id, time, expiry and acknowledgements, and every client's last id, then
//! the old file is removed.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use futures_channel::oneshot;
use herald_core::{
    AppendResult, ClientId, Event, EventId, Message, MessageId, MessageStore, NewMessage, NodeId,
    OutboxAdded, OutboxEntry, OutboxStats, Payload, Retention, RetentionReport, Slot, SlotBacklog,
    StoreError,
};

use crate::config::EmbeddedConfig;
use crate::error::EmbeddedError;
use crate::outbox::Outbox;
use crate::queues::{Entry, Queues};
use crate::record::{self, Record};

mod opening;
mod receipts;
mod requests;
mod worker;

pub(crate) use opening::NewLog;
use opening::*;
pub(crate) use opening::{io_error, open_or_create, sync_dir};
use requests::*;
use worker::*;

/// Most requests served by one turn of the thread (one write and one sync).
pub const MAX_BATCH: usize = 512;
/// Longest time acknowledgements written without an fsync wait for one, when nothing else
/// is written.
pub const LAZY_ACKS_FOR: std::time::Duration = std::time::Duration::from_millis(200);

/// Most queues one purge step looks at.
pub const PURGE_BATCH: usize = 1000;

/// How far the high-water mark is set above the highest id handed out: the mark file is
/// rewritten (three syncs) once every this many ids of the busiest queue, and a lost record
/// makes ids jump by up to this much.
pub const ID_RESERVE: u64 = 1 << 16;

/// How far ids jump above the highest id found when records were lost and the high-water
/// mark is missing or damaged too, so that no bound can be proven.
pub const UNPROVEN_JUMP: u64 = 1 << 32;

/// A durable [`MessageStore`] in an append-only log on local disk, served by a dedicated
/// thread.
///
/// Clones share the store. The thread stops, and the files are closed, when the last clone
/// is dropped (after the requests already sent are answered).
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    /// The channel to the thread, shared by clones.
    inner: Arc<Inner>,
}

/// What the clones share; dropping it stops the thread and waits for it.
#[derive(Debug)]
struct Inner {
    /// Acknowledgements not yet taken by the thread (see [`AckQueue`]).
    acks: Arc<AckQueue>,
    /// Requests to the store thread; `None` once dropping.
    tx: Option<mpsc::Sender<Request>>,
    /// The thread, joined on drop so that the files are closed when the store is gone.
    thread: Option<JoinHandle<()>>,
    /// The webhook outbox, with its own file and thread.
    outbox: Outbox,
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

impl EmbeddedStore {
    /// Opens (or creates) the store in `config.path` and starts its thread: takes the
    /// directory's lock, converts an earlier version's database if there is one, and replays
    /// the log.
    ///
    /// # Errors
    /// When the directory cannot be created, another process holds it, the log cannot be
    /// read or is not a Herald log, or the thread cannot start.
    pub fn open(config: EmbeddedConfig) -> Result<EmbeddedStore, EmbeddedError> {
        std::fs::create_dir_all(&config.path).map_err(|source| EmbeddedError::CreateDir {
            path: config.path.clone(),
            source,
        })?;
        let lock = take_lock(&config.lock_file())?;
        let tmp = config.compact_file();
        if tmp.exists() {
            log::warn!(
                "embedded store: removing {}, a compaction a crash interrupted (the log is intact)",
                tmp.display()
            );
            std::fs::remove_file(&tmp).map_err(|e| io_error(&tmp, e))?;
        }
        let log_path = config.log_file();
        let legacy = config.legacy_db_file();
        if legacy.exists() {
            if log_path.exists() {
                // The conversion finished (the log is renamed into place only when complete)
                // but the old file was not removed yet.
                std::fs::remove_file(&legacy).map_err(|e| io_error(&legacy, e))?;
            } else {
                crate::migrate::convert(&legacy, &tmp, &log_path)?;
                std::fs::remove_file(&legacy).map_err(|e| io_error(&legacy, e))?;
                sync_dir(&config.path)?;
            }
        }
        let ids_path = config.ids_file();
        let mut loaded = load(
            &log_path,
            &ids_path,
            config.retention.cap,
            config.recover_damaged_log,
            config.bounds(),
        )?;
        let skipped = std::mem::take(&mut loaded.skipped);
        log::info!(
            "embedded store open at {} (cap {}, ttl {:?}): {} clients, {} messages, {} bytes of log",
            log_path.display(),
            config.retention.cap,
            config.retention.ttl,
            loaded.queues.queues.len(),
            loaded.queues.entries,
            loaded.end
        );
        let outbox = Outbox::open(config.outbox_file(), config.recover_damaged_log)?;
        let (tx, rx) = mpsc::channel();
        let acks = Arc::new(AckQueue::default());
        let mut worker = Worker {
            acks: acks.clone(),
            dir: config.path.clone(),
            log_path,
            ids_path,
            mark: loaded.mark,
            file: loaded.file,
            end: loaded.end,
            // What the log held before is unknown garbage: measure from what it needs.
            compacted: loaded.queues.live_bytes().min(loaded.end),
            compact_at: config.compact_at,
            queues: loaded.queues,
            last_purge: loaded.last_purge,
            retention: config.retention,
            bounds: config.bounds(),
            capped_pending: loaded.capped,
            purge: None,
            lazy_acks: false,
            broken: None,
            buf: Vec::new(),
            _lock: lock,
        };
        if skipped.is_empty() {
            if config.recover_damaged_log {
                log::warn!(
                    "embedded store: the recovery option is set but {} is intact; remove it, so \
                     that damage found later stops start-up",
                    worker.log_path.display()
                );
            }
        } else {
            let aside = set_aside(&config, &skipped)?;
            worker.compact()?;
            log::warn!(
                "embedded store: recovered {}: skipped {} damaged bytes in {} places, kept every \
                 intact record, ids go on above {}; the damaged file is {} (what was skipped: \
                 {}.txt)",
                worker.log_path.display(),
                skipped.iter().map(|s| s.len).sum::<u64>(),
                skipped.len(),
                worker.queues.floor,
                aside.display(),
                aside.display()
            );
        }
        let thread = std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || worker.run(&rx))
            .map_err(EmbeddedError::Thread)?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                acks,
                tx: Some(tx),
                thread: Some(thread),
                outbox,
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

impl MessageStore for EmbeddedStore {
    fn append(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> impl Future<Output = Result<AppendResult, StoreError>> + Send {
        let push = msg.push.map(|p| p.to_string());
        let body = serde_json::to_vec(&BodyRef {
            f: &msg.from,
            ch: &msg.channel,
            d: &msg.data,
            p: push.as_deref(),
        });
        let call = match body {
            Ok(body) => Ok({
                let (reply, answer) = oneshot::channel();
                self.call(
                    Request::Append {
                        body,
                        push: msg.push,
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
        // Answered at once: see AckQueue.
        let queued = if self.inner.tx.is_some() {
            self.inner.acks.push(QueuedAck {
                client: client.clone(),
                slot,
                ids: ids.to_vec(),
            })
        } else {
            Err(stopped())
        };
        std::future::ready(queued)
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

    fn slots(
        &self,
        client: &ClientId,
        also: &[Slot],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<SlotBacklog>, StoreError>> + Send {
        let (reply, answer) = oneshot::channel();
        self.call(
            Request::Slots {
                client: client.clone(),
                also: also.to_vec(),
                now_ms,
                reply,
            },
            answer,
        )
    }

    // ---- Push receipts, status, recall and idempotency (receipts.rs) ----

    fn record_receipts(
        &self,
        receipts: &[herald_core::Receipt],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let receipts = receipts.to_vec();
        self.book(move |reply| receipts::BookRequest::Receipts { receipts, reply })
    }

    fn push_status(
        &self,
        push: herald_core::PushId,
        slot: Slot,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<herald_core::PushStatus>, StoreError>> + Send {
        self.book(move |reply| receipts::BookRequest::Status {
            push,
            slot,
            now_ms,
            reply,
        })
    }

    fn recall(
        &self,
        push: herald_core::PushId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<(herald_core::RecallReport, Vec<ClientId>)>, StoreError>>
    + Send {
        self.book(move |reply| receipts::BookRequest::Recall {
            push,
            now_ms,
            reply,
        })
    }

    fn expired_pushes(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<herald_core::PushId>, StoreError>> + Send {
        self.book(move |reply| receipts::BookRequest::Expired {
            now_ms,
            limit,
            reply,
        })
    }

    fn expiry_reported(
        &self,
        pushes: &[herald_core::PushId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let pushes = pushes.to_vec();
        self.book(move |reply| receipts::BookRequest::Reported { pushes, reply })
    }

    fn claim_idempotency(
        &self,
        key: &str,
        body_sha256: [u8; 32],
        now_ms: u64,
        times: herald_core::IdempotencyTimes,
    ) -> impl Future<Output = Result<herald_core::IdempotencyClaim, StoreError>> + Send {
        let key = key.to_owned();
        self.book(move |reply| receipts::BookRequest::Claim {
            key,
            sha: body_sha256,
            now_ms,
            times,
            reply,
        })
    }

    fn finish_idempotency(
        &self,
        key: &str,
        answer: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let (key, answer) = (key.to_owned(), answer.to_owned());
        self.book(move |reply| receipts::BookRequest::Finish { key, answer, reply })
    }

    fn release_idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let key = key.to_owned();
        self.book(move |reply| receipts::BookRequest::Release { key, reply })
    }

    fn outbox_add(
        &self,
        events: &[Event],
        max: u64,
    ) -> impl Future<Output = Result<OutboxAdded, StoreError>> + Send {
        let events = events.to_vec();
        self.inner.outbox.call(move |f| f.add(&events, max))
    }

    fn outbox_lease(
        &self,
        now_ms: u64,
        limit: usize,
        lease: std::time::Duration,
        _node: &NodeId,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send {
        self.inner
            .outbox
            .call(move |f| Ok(f.lease(now_ms, limit, lease)))
    }

    fn outbox_done(&self, ids: &[EventId]) -> impl Future<Output = Result<(), StoreError>> + Send {
        let ids = ids.to_vec();
        self.inner.outbox.call(move |f| f.done(&ids))
    }

    fn outbox_retry(
        &self,
        ids: &[EventId],
        next_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let ids = ids.to_vec();
        self.inner.outbox.call(move |f| f.retry(&ids, next_ms))
    }

    fn outbox_stats(&self) -> impl Future<Output = Result<OutboxStats, StoreError>> + Send {
        self.inner.outbox.call(|f| Ok(f.stats()))
    }
}
