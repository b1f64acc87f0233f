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
    AppendResult, ClientId, Message, MessageId, MessageStore, NewMessage, Payload, Retention,
    RetentionReport, Slot, StoreError,
};

use crate::config::EmbeddedConfig;
use crate::error::EmbeddedError;
use crate::queues::{Entry, Queues};
use crate::record::{self, Record};

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
}

/// Acknowledgements on their way to the index.
///
/// An acknowledgement needs no answer from the disk (it is synced lazily anyway), so `ack`
/// only queues it here and answers at once: no message to the thread, no wake-up, no reply
/// channel. The thread takes the queue whole at the start of each turn, after it collected
/// the turn's requests and before it applies them, and at least every [`LAZY_ACKS_FOR`]; so
/// a read sent after an `ack` answered sees it, and an ack of an id not stored yet (which no
/// session sends) stays ignored.
#[derive(Debug, Default)]
struct AckQueue {
    /// The acknowledgements, in the order they were made.
    queue: std::sync::Mutex<Vec<QueuedAck>>,
    /// Set by the thread when it stops serving (it stopped, or a failed write left it
    /// broken): acknowledgements are refused from then on.
    closed: std::sync::atomic::AtomicBool,
}

/// One queued acknowledgement.
#[derive(Debug)]
struct QueuedAck {
    /// The client.
    client: ClientId,
    /// The slot.
    slot: Slot,
    /// The ids.
    ids: Vec<MessageId>,
}

impl AckQueue {
    /// Queues an acknowledgement, unless the thread stopped serving.
    fn push(&self, ack: QueuedAck) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self.closed.load(Ordering::Acquire) {
            return Err(stopped());
        }
        match self.queue.lock() {
            Ok(mut queue) => {
                queue.push(ack);
                Ok(())
            }
            Err(_) => Err(stopped()),
        }
    }

    /// Everything queued so far.
    fn take(&self) -> Vec<QueuedAck> {
        match self.queue.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Refuses acknowledgements from now on.
    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }
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

/// An I/O error on `path`.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), EmbeddedError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Keeps the damaged log a recovery is about to replace: a second name for the file,
/// [`EmbeddedConfig::DAMAGED_PREFIX`]`<n>`, and beside it `<n>.txt` listing the bytes
/// skipped (offset, length, reason). Returns the damaged file's new name.
fn set_aside(config: &EmbeddedConfig, skipped: &[Skip]) -> Result<PathBuf, EmbeddedError> {
    use std::io::Write;
    let log = config.log_file();
    let mut n = 1u32;
    let aside = loop {
        let p = config
            .path
            .join(format!("{}{n}", EmbeddedConfig::DAMAGED_PREFIX));
        if !p.exists() {
            break p;
        }
        n += 1;
    };
    std::fs::hard_link(&log, &aside).map_err(|e| io_error(&aside, e))?;
    let list = aside.with_extension(format!("{n}.txt"));
    let mut text = format!(
        "# bytes of {} skipped by a recovery: offset, length, reason\n",
        log.display()
    );
    for s in skipped {
        text.push_str(&format!("{} {} {}\n", s.at, s.len, s.reason));
    }
    let mut file = File::create(&list).map_err(|e| io_error(&list, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&list, e))?;
    sync_dir(&config.path)?;
    Ok(aside)
}

/// A log written whole to a temporary file, then synced and renamed over its destination
/// (compaction, the conversion of an earlier version's database): a crash before the rename
/// leaves what was there, and the temporary file is removed on the next open.
pub(crate) struct NewLog<'a> {
    /// The temporary file's path.
    tmp: &'a Path,
    /// The temporary file.
    file: File,
    /// Records not written yet; a record is put here whole, then the chunk written when it
    /// is big enough.
    pub(crate) chunk: Vec<u8>,
    /// Bytes written to the file so far (where `chunk` starts).
    pub(crate) written: u64,
}

impl<'a> NewLog<'a> {
    /// The chunk size at which it is written.
    const CHUNK: usize = 1 << 20;

    /// Creates the temporary file; the chunk starts with the log's magic.
    pub(crate) fn create(tmp: &'a Path) -> Result<NewLog<'a>, EmbeddedError> {
        let file = File::create(tmp).map_err(|e| io_error(tmp, e))?;
        let mut chunk = Vec::with_capacity(Self::CHUNK);
        chunk.extend_from_slice(record::MAGIC);
        Ok(NewLog {
            tmp,
            file,
            chunk,
            written: 0,
        })
    }

    /// Writes the chunk once it is big enough.
    pub(crate) fn spill(&mut self) -> Result<(), EmbeddedError> {
        if self.chunk.len() >= Self::CHUNK {
            self.write_chunk()?;
        }
        Ok(())
    }

    /// Writes the chunk.
    fn write_chunk(&mut self) -> Result<(), EmbeddedError> {
        use std::io::Write;
        self.file
            .write_all(&self.chunk)
            .map_err(|e| io_error(self.tmp, e))?;
        self.written += self.chunk.len() as u64;
        self.chunk.clear();
        Ok(())
    }

    /// Writes the rest, syncs, renames the file to `dest` and syncs the directory; returns
    /// the new log's length.
    pub(crate) fn finish(mut self, dest: &Path) -> Result<u64, EmbeddedError> {
        self.write_chunk()?;
        self.file.sync_all().map_err(|e| io_error(self.tmp, e))?;
        drop(self.file);
        std::fs::rename(self.tmp, dest).map_err(|e| io_error(self.tmp, e))?;
        sync_dir(dest.parent().unwrap_or(Path::new(".")))?;
        Ok(self.written)
    }
}

/// Opens and locks the lock file: one process at a time per data directory.
fn take_lock(path: &Path) -> Result<File, EmbeddedError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(EmbeddedError::Locked(path.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(path, e)),
    }
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

/// What replaying a log gives.
struct Loaded {
    /// The log, open for reading and writing.
    file: File,
    /// Its length: where the next record goes.
    end: u64,
    /// The index.
    queues: Queues,
    /// The time of the last purge recorded.
    last_purge: u64,
    /// Entries the cap (lowered since the log was written) dropped on opening.
    capped: u64,
    /// The high-water mark of ids, as the file holds it.
    mark: u64,
    /// Damaged bytes a recovery passed over; when there are any, the log must be rewritten.
    skipped: Vec<Skip>,
}

/// Bytes of the log that replay could not use: where they start, how many, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skip {
    /// Where the first unusable record starts.
    pub(crate) at: u64,
    /// How many bytes were passed over (up to the next intact record, or the end).
    pub(crate) len: u64,
    /// What was wrong with the record at `at`.
    pub(crate) reason: &'static str,
}

/// The log as replayed, before anything is written to it.
struct Replayed {
    /// The log, open for reading and writing.
    file: File,
    /// Where the intact records end; a torn tail starts here.
    end: u64,
    /// The index.
    queues: Queues,
    /// The cap the log last recorded.
    log_cap: Option<u64>,
    /// The time of the last purge recorded.
    last_purge: u64,
    /// A last record a crash cut short or that is damaged, with no intact record after it.
    torn: Option<Skip>,
    /// Damaged bytes with intact records after them, passed over (recovery only).
    skipped: Vec<Skip>,
}

/// Opens the log at `path` (creating it if missing) and replays it into an index, writing
/// nothing to it (but the magic bytes of a new log).
///
/// A record that is cut short or fails its checksum is either a torn tail (no intact record
/// follows it: what a crash during the last write leaves) or damage (an intact record
/// follows). Damage is an error unless `recover`; then replay goes on from the next intact
/// record and the bytes passed over are listed.
fn replay(path: &Path, recover: bool) -> Result<Replayed, EmbeddedError> {
    use std::io::Seek;
    let err = |e| io_error(path, e);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(err)?;
    let mut len = file.metadata().map_err(err)?.len();
    if len > 0 && len < record::MAGIC.len() as u64 {
        // A crash right after the log was created: what is there must be the magic's start.
        let mut start = vec![0; len as usize];
        file.read_exact_at(&mut start, 0).map_err(err)?;
        if record::MAGIC.starts_with(&start) {
            file.set_len(0).map_err(err)?;
            len = 0;
        }
    }
    if len == 0 {
        file.write_all_at(record::MAGIC, 0).map_err(err)?;
        file.sync_all().map_err(err)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        len = record::MAGIC.len() as u64;
    }
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &file);
    reader.rewind().map_err(err)?;
    let mut magic = [0u8; 8];
    if read_full(&mut reader, &mut magic).map_err(err)? < magic.len() || &magic != record::MAGIC {
        return Err(EmbeddedError::Log {
            path: path.to_owned(),
            offset: 0,
            reason: "not a Herald log (wrong magic bytes)".into(),
        });
    }
    let mut queues = Queues::default();
    let mut log_cap = None;
    let mut last_purge = 0;
    let mut at = record::MAGIC.len() as u64;
    let mut payload = Vec::new();
    let mut skipped = Vec::new();
    let torn = loop {
        let mut header = [0u8; record::FRAME_HEADER];
        let bad = match read_full(&mut reader, &mut header).map_err(err)? {
            0 => break None,
            n if n < header.len() => Some("a frame header cut short"),
            _ => match record::read_header(&header) {
                Err(_) => Some("a frame header with an impossible length"),
                Ok((n, crc)) => {
                    payload.resize(n, 0);
                    if read_full(&mut reader, &mut payload).map_err(err)? < n {
                        Some("a record cut short")
                    } else if record::crc32(&payload) != crc {
                        Some("a record whose checksum does not match")
                    } else {
                        None
                    }
                }
            },
        };
        if let Some(reason) = bad {
            let Some(next) = next_intact(&file, at + 1, len).map_err(err)? else {
                break Some(Skip {
                    at,
                    len: len - at,
                    reason,
                });
            };
            if !recover {
                return Err(EmbeddedError::Damaged {
                    path: path.to_owned(),
                    offset: at,
                    next,
                    reason: reason.into(),
                });
            }
            skipped.push(Skip {
                at,
                len: next - at,
                reason,
            });
            reader.seek(std::io::SeekFrom::Start(next)).map_err(err)?;
            at = next;
            continue;
        }
        let decoded = record::decode(&payload).map_err(|e| EmbeddedError::Log {
            path: path.to_owned(),
            offset: at,
            reason: e.0,
        })?;
        apply(&mut queues, decoded, at, &mut log_cap, &mut last_purge);
        at += (record::FRAME_HEADER + payload.len()) as u64;
    };
    drop(reader);
    Ok(Replayed {
        file,
        end: at,
        queues,
        log_cap,
        last_purge,
        torn,
        skipped,
    })
}

/// Where the first intact record at or after `from` starts, if any: a frame whose length
/// fits in the file, whose kind is known and whose checksum matches. After a bad record it
/// tells damage (an intact record follows) from a torn tail (none does), and it is where a
/// recovery resumes.
///
/// A message body cannot pass for a frame: it is JSON text, whose bytes make no length below
/// 151 MB, and any longer frame would have to match a checksum over the records after it.
fn next_intact(file: &File, from: u64, len: u64) -> std::io::Result<Option<u64>> {
    /// Bytes read at a time.
    const WINDOW: u64 = 1 << 20;
    let head = record::FRAME_HEADER as u64 + 1;
    let mut window = Vec::new();
    let mut window_at = from;
    let mut payload = Vec::new();
    let mut p = from;
    while p + head <= len {
        if p + head > window_at + window.len() as u64 {
            window_at = p;
            window.resize(WINDOW.min(len - p) as usize, 0);
            file.read_exact_at(&mut window, p)?;
        }
        let i = (p - window_at) as usize;
        let mut header = [0u8; record::FRAME_HEADER];
        header.copy_from_slice(&window[i..i + record::FRAME_HEADER]);
        if let Ok((n, crc)) = record::read_header(&header)
            && p + record::FRAME_HEADER as u64 + n as u64 <= len
            && record::is_kind(window[i + record::FRAME_HEADER])
        {
            payload.resize(n, 0);
            file.read_exact_at(&mut payload, p + record::FRAME_HEADER as u64)?;
            if record::crc32(&payload) == crc {
                return Ok(Some(p));
            }
        }
        p += 1;
    }
    Ok(None)
}

/// What the high-water mark file holds.
enum IdsFile {
    /// There is none: a new data directory, or one written by an earlier version.
    Missing,
    /// No id above this was ever handed out.
    Mark(u64),
    /// It cannot be read: why.
    Damaged(String),
}

/// The first bytes of the high-water mark file.
const IDS_MAGIC: &[u8; 8] = b"HRLDIDS1";

/// Reads the high-water mark file: magic, `mark: u64`, CRC-32 of the 16 bytes before it.
fn read_ids(path: &Path) -> Result<IdsFile, EmbeddedError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(IdsFile::Missing),
        Err(e) => return Err(io_error(path, e)),
    };
    if bytes.len() != 20 || &bytes[..8] != IDS_MAGIC {
        return Ok(IdsFile::Damaged(format!(
            "{} bytes, not a high-water mark",
            bytes.len()
        )));
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if record::crc32(&bytes[..16]) != crc {
        return Ok(IdsFile::Damaged("its checksum does not match".into()));
    }
    let mut mark = [0u8; 8];
    mark.copy_from_slice(&bytes[8..16]);
    Ok(IdsFile::Mark(u64::from_le_bytes(mark)))
}

/// Replaces the high-water mark file with `mark`: written to
/// [`EmbeddedConfig::IDS_NEW_FILE`], synced, renamed, and the directory synced.
fn write_ids(path: &Path, mark: u64) -> Result<(), EmbeddedError> {
    use std::io::Write;
    let tmp = path.with_file_name(EmbeddedConfig::IDS_NEW_FILE);
    let mut bytes = IDS_MAGIC.to_vec();
    bytes.extend_from_slice(&mark.to_le_bytes());
    let crc = record::crc32(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let mut file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io_error(&tmp, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Opens the log at `path` (creating it if missing), replays it into an index and applies
/// `cap`, recording it if the log had another; keeps the high-water mark at `ids` above
/// every id handed out.
///
/// When bytes of the log were lost (a torn tail, or damage passed over because `recover`),
/// every queue's ids go on above the high-water mark (the floor, recorded in the log): ids
/// the lost records handed out are never handed out again. A torn tail is cut off the file;
/// a recovered log is left as it is, for the caller to rewrite ([`Loaded::skipped`]).
///
/// # Errors
/// As [`replay`], and when the file cannot be written.
fn load(path: &Path, ids: &Path, cap: u64, recover: bool) -> Result<Loaded, EmbeddedError> {
    let err = |e| io_error(path, e);
    let Replayed {
        file,
        end,
        mut queues,
        log_cap,
        last_purge,
        torn,
        skipped,
    } = replay(path, recover)?;
    let high = queues.high;
    let found = read_ids(ids)?;
    let floor = if torn.is_some() || !skipped.is_empty() {
        Some(match &found {
            IdsFile::Mark(mark) => high.max(*mark),
            IdsFile::Missing | IdsFile::Damaged(_) => {
                log::error!(
                    "embedded store: records of {} were lost and the high-water mark {} is {}: \
                     ids jump by {UNPROVEN_JUMP} above the highest id found ({high}), which \
                     cannot be proven to be above every id handed out",
                    path.display(),
                    ids.display(),
                    match &found {
                        IdsFile::Damaged(why) => why.as_str(),
                        _ => "missing",
                    }
                );
                high.saturating_add(UNPROVEN_JUMP)
            }
        })
    } else {
        if let IdsFile::Damaged(why) = &found {
            log::warn!(
                "embedded store: the high-water mark {} is damaged ({why}); the log is intact, \
                 so it is rebuilt from it",
                ids.display()
            );
        }
        None
    };
    // The mark is raised first: whatever happens to the log next, it covers every id.
    let mark = match found {
        IdsFile::Mark(mark) if floor.is_none() && mark >= high => mark,
        _ => {
            let mark = floor.unwrap_or(high).saturating_add(ID_RESERVE);
            write_ids(ids, mark)?;
            mark
        }
    };
    if let Some(t) = &torn {
        log::warn!(
            "embedded store: {} ends with {} at byte {}; dropping the last {} bytes (a write a \
             crash interrupted, never acknowledged, or a damaged last record); ids go on above {}",
            path.display(),
            t.reason,
            t.at,
            t.len,
            floor.unwrap_or(high)
        );
    }
    for s in &skipped {
        log::warn!(
            "embedded store: recovering {}: skipping {} damaged bytes at byte {} ({})",
            path.display(),
            s.len,
            s.at,
            s.reason
        );
    }
    if let Some(floor) = floor {
        queues.raise_floor(floor);
    }
    // What the last purge removed stays removed; then the cap of this run.
    let n = queues.queues.len();
    queues.expire(0..n, last_purge);
    let capped = queues.trim_all(cap);
    let mut end = end;
    if skipped.is_empty() {
        let mut buf = Vec::new();
        if let Some(floor) = floor {
            record::put_floor(&mut buf, floor);
        }
        if log_cap != Some(cap) {
            record::put_cap(&mut buf, cap);
        }
        if torn.is_some() {
            file.set_len(end).map_err(err)?;
        }
        if !buf.is_empty() {
            file.write_all_at(&buf, end).map_err(err)?;
            end += buf.len() as u64;
        }
        if torn.is_some() || !buf.is_empty() {
            file.sync_all().map_err(err)?;
        }
    }
    Ok(Loaded {
        file,
        end,
        queues,
        last_purge,
        capped,
        mark,
        skipped,
    })
}

/// Reads until `buf` is full or the input ends; returns how many bytes it read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Applies one replayed record, found at byte `at` of the log, to the index.
fn apply(
    queues: &mut Queues,
    record: Record,
    at: u64,
    log_cap: &mut Option<u64>,
    last_purge: &mut u64,
) {
    match record {
        Record::Push {
            expires,
            body,
            copies,
        } => {
            let push = queues.new_push(at + record::PUSH_BODY_AT, body.len() as u32);
            for copy in copies {
                let i = queues.restore(
                    &copy.client,
                    push,
                    Entry {
                        id: copy.id.0,
                        ts: copy.ts,
                        expires,
                        push,
                        acked: copy.acked,
                    },
                );
                // The cap in force when the record was written dropped the same entries then.
                queues.trim(i, log_cap.unwrap_or(u64::MAX));
            }
            queues.forget_if_unused(push);
        }
        Record::Ack { client, slot, ids } => {
            queues.ack(&client, slot, &ids);
        }
        Record::Last { client, last } => queues.set_last(&client, last),
        Record::Cap(cap) => *log_cap = Some(cap),
        Record::Purged(now_ms) => *last_purge = (*last_purge).max(now_ms),
        Record::Floor(floor) => queues.raise_floor(floor),
        Record::Skipped { client, from, to } => queues.add_skipped(&client, from, to),
    }
}

/// A purge in progress: its reference time, what it dropped so far, who waits for it.
struct PurgeJob {
    /// Expiry reference of the first purge request (later ones join it).
    now_ms: u64,
    /// Expired entries dropped so far.
    expired: u64,
    /// The first queue the next step looks at.
    next: usize,
    /// The callers waiting for the report.
    replies: Vec<Reply<RetentionReport>>,
}

/// The store thread's state.
struct Worker {
    /// Acknowledgements queued by the handles.
    acks: Arc<AckQueue>,
    /// The data directory.
    dir: PathBuf,
    /// The log's path.
    log_path: PathBuf,
    /// The high-water mark file's path.
    ids_path: PathBuf,
    /// The high-water mark: no id above it was handed out; raised (and synced) before a
    /// batch that goes above it is written.
    mark: u64,
    /// The log.
    file: File,
    /// The log's length: where the next batch is written.
    end: u64,
    /// The log's length after the last compaction (at opening: what the index needs).
    compacted: u64,
    /// The smallest log that is compacted.
    compact_at: u64,
    /// The index.
    queues: Queues,
    /// Time of the last finished purge.
    last_purge: u64,
    /// Cap and default TTL.
    retention: Retention,
    /// Entries dropped by the cap, not yet reported by a purge.
    capped_pending: u64,
    /// The purge in progress, if any.
    purge: Option<PurgeJob>,
    /// Acknowledgements were written without an fsync since the last sync.
    lazy_acks: bool,
    /// Why the store cannot serve any more (a failed write it could not undo).
    broken: Option<String>,
    /// The records of the batch being written.
    buf: Vec<u8>,
    /// The data directory's lock, held as long as the thread runs.
    _lock: File,
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
    fn run(mut self, rx: &mpsc::Receiver<Request>) {
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
    fn make_durable(&mut self) {
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
    fn serve(&mut self, batch: Vec<Request>) {
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
    fn write_batch(&mut self, acks: &[QueuedAck], writes: Vec<Request>) {
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
        for req in &writes {
            if let Request::Append {
                body,
                ttl,
                recipients,
                now_ms,
                ..
            } = req
            {
                outcomes.push(self.append(start, body, *ttl, recipients, *now_ms));
            }
        }
        let appended = !outcomes.is_empty();
        let written = self
            .cover_ids()
            .and_then(|()| self.write_and_sync(start, appended));
        match written {
            Ok(()) => {
                // A sync also makes every earlier unsynced write durable.
                self.lazy_acks = !appended && (self.lazy_acks || self.end > start);
                for (req, ids) in writes.into_iter().zip(outcomes) {
                    if let Request::Append { reply, .. } = req {
                        let _ = reply.send(Ok(ids));
                    }
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
    fn cover_ids(&mut self) -> Result<(), EmbeddedError> {
        if self.queues.high > self.mark {
            let mark = self.queues.high.saturating_add(ID_RESERVE);
            write_ids(&self.ids_path, mark)?;
            self.mark = mark;
        }
        Ok(())
    }

    /// Writes the batch's records at `start` and syncs them when `sync`.
    fn write_and_sync(&mut self, start: u64, sync: bool) -> Result<(), EmbeddedError> {
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
    fn undo(&mut self, start: u64) {
        let rebuilt = self
            .file
            .set_len(start)
            .map_err(|e| io_error(&self.log_path, e))
            .and_then(|()| load(&self.log_path, &self.ids_path, self.retention.cap, false));
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
    fn append(
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
    fn read(&self, req: Request) {
        match req {
            Request::Unacked {
                client,
                slot,
                after,
                limit,
                now_ms,
                reply,
            } => {
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
            other => other.fail(StoreError::Unavailable("not a read".into())),
        }
    }

    /// The messages of `entries`, their bodies read from the log.
    fn messages(&self, entries: &[Entry]) -> Result<Vec<Message>, EmbeddedError> {
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
            });
        }
        Ok(out)
    }

    /// Reads the body of `push` into `out`.
    fn body(&self, push: u64, out: &mut Vec<u8>) -> Result<(), EmbeddedError> {
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
    fn purge_step(&mut self) {
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
    fn maybe_compact(&mut self) {
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
    fn compact(&mut self) -> Result<(), EmbeddedError> {
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

impl Request {
    /// Answers the request with `err`.
    fn fail(self, err: StoreError) {
        match self {
            Request::Append { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Ping { reply } => {
                let _ = reply.send(Err(err));
            }
            Request::Unacked { reply, .. } | Request::History { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Purge { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
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
}
