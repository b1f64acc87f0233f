//! The webhook outbox on local disk: its own append-only file, [`EmbeddedConfig::OUTBOX_FILE`],
//! next to the message log, served by its own thread (a webhook stall never holds up pushes).
//!
//! The file starts with [`MAGIC`], then frames as the message log's (`len: u32 LE`,
//! `crc: u32 LE` = CRC-32 of the payload, payload); a payload is a kind byte and JSON:
//!
//! | kind | JSON | written |
//! | --- | --- | --- |
//! | 1, add | `[event, attempts, next_ms]` | per event added (synced before the add answers) |
//! | 2, done | `[id, ...]` | per [`outbox_done`](herald_core::MessageStore::outbox_done) that removed something |
//! | 3, retry | `[[id, ...], next_ms]` | per retry (synced too: the attempt count drives the backoff) |
//!
//! Leases are kept in memory only: after a restart every event is due at once.
//!
//! Damage follows the message log's rules: a record cut short or failing its checksum with no
//! intact record after it is a torn tail, cut off with a warning; with an intact record after
//! it, opening fails with [`EmbeddedError::Damaged`] unless the recovery option is set, which
//! skips it with a warning and rewrites the file. When the file is more than twice the size
//! its live events need (and at least [`COMPACT_MIN`]), it is rewritten (new file, sync,
//! rename, directory sync); a crash before the rename leaves `<file>.new`, removed on the next
//! open.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use futures_channel::oneshot;
use herald_core::{Event, EventId, OutboxAdded, OutboxEntry, OutboxIndex, OutboxStats, StoreError};

use crate::error::EmbeddedError;
use crate::record::{FRAME_HEADER, crc32, read_header};
use crate::store::{io_error, open_or_create, sync_dir};

/// The first bytes of an outbox file.
pub const MAGIC: &[u8; 8] = b"HRLDOBX1";

/// The smallest file that is compacted.
pub const COMPACT_MIN: u64 = 1 << 20;

const ADD: u8 = 1;
const DONE: u8 = 2;
const RETRY: u8 = 3;

/// A job for the outbox thread.
type Job = Box<dyn FnOnce(&mut OutboxFile) + Send>;

/// The handle: sends jobs to the thread.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// `None` once dropping.
    tx: Option<mpsc::Sender<Job>>,
    /// Joined on drop.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Outbox {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("the embedded outbox thread panicked");
        }
    }
}

/// The file and the index, owned by the thread.
pub(crate) struct OutboxFile {
    path: PathBuf,
    file: File,
    end: u64,
    index: OutboxIndex,
    /// Set when a write failed and could not be undone.
    broken: Option<String>,
}

impl Outbox {
    /// Opens (or creates) the outbox file at `path` (the directory lock is held by the caller)
    /// and starts its thread.
    pub(crate) fn open(path: PathBuf, recover: bool) -> Result<Outbox, EmbeddedError> {
        let mut f = replay(&path, recover)?;
        log::info!(
            "embedded outbox open at {}: {} events waiting",
            path.display(),
            f.index.len()
        );
        f.maybe_compact();
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("herald-outbox".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut f);
                }
            })
            .map_err(EmbeddedError::Thread)?;
        Ok(Outbox {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the thread and awaits its answer.
    pub(crate) fn call<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&mut OutboxFile) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |file: &mut OutboxFile| {
            let out = match &file.broken {
                Some(why) => Err(StoreError::Unavailable(why.clone())),
                None => f(file),
            };
            let _ = reply.send(out);
        });
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        async move {
            if !sent {
                return Err(stopped());
            }
            answer.await.unwrap_or_else(|_| Err(stopped()))
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the embedded outbox thread has stopped".into())
}

/// Appends a frame of `kind` with `json` to `out`.
fn frame(out: &mut Vec<u8>, kind: u8, json: &serde_json::Value) {
    let mut payload = vec![kind];
    // A Value always serializes.
    payload.extend_from_slice(json.to_string().as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

fn add_json(ev: &Event, attempts: u32, next_ms: u64) -> serde_json::Value {
    serde_json::json!([ev, attempts, next_ms])
}

/// Applies one decoded payload to `index`.
fn apply(index: &mut OutboxIndex, payload: &[u8]) -> Result<(), String> {
    let (&kind, json) = payload.split_first().ok_or("empty record")?;
    match kind {
        ADD => {
            let (ev, attempts, next): (Event, u32, u64) =
                serde_json::from_slice(json).map_err(|e| format!("add record: {e}"))?;
            index.insert(ev, attempts, next);
        }
        DONE => {
            let ids: Vec<EventId> =
                serde_json::from_slice(json).map_err(|e| format!("done record: {e}"))?;
            index.done(&ids);
        }
        RETRY => {
            let (ids, next): (Vec<EventId>, u64) =
                serde_json::from_slice(json).map_err(|e| format!("retry record: {e}"))?;
            index.retry(&ids, next);
        }
        other => return Err(format!("unknown record kind {other}")),
    }
    Ok(())
}

/// Whether an intact frame (length fits, checksum matches, kind known) starts at `at`.
fn intact_at(bytes: &[u8], at: usize) -> Option<usize> {
    let header: [u8; FRAME_HEADER] = bytes.get(at..at + FRAME_HEADER)?.try_into().ok()?;
    let (len, crc) = read_header(&header).ok()?;
    let payload = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len)?;
    (crc32(payload) == crc && (ADD..=RETRY).contains(&payload[0])).then_some(len)
}

/// A compaction's unfinished file: `<outbox file>.new`.
fn new_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Reads the file (creating it if missing) and rebuilds the index.
fn replay(path: &Path, recover: bool) -> Result<OutboxFile, EmbeddedError> {
    let err = |e| io_error(path, e);
    let tmp = new_file(path);
    if tmp.exists() {
        log::warn!(
            "embedded outbox: removing {}, a compaction a crash interrupted (the outbox is intact)",
            tmp.display()
        );
        std::fs::remove_file(&tmp).map_err(|e| io_error(&tmp, e))?;
    }
    let mut file = open_or_create(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(err)?;
    if bytes.is_empty() {
        file.write_all(MAGIC).map_err(err)?;
        file.sync_all().map_err(err)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        return Ok(OutboxFile {
            path: path.to_owned(),
            file,
            end: MAGIC.len() as u64,
            index: OutboxIndex::new(),
            broken: None,
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(EmbeddedError::Log {
            path: path.to_owned(),
            offset: 0,
            reason: "not a Herald outbox file".into(),
        });
    }
    let mut index = OutboxIndex::new();
    let mut at = MAGIC.len();
    let mut skipped = false;
    while at < bytes.len() {
        let reason = match intact_at(&bytes, at) {
            Some(len) => match apply(
                &mut index,
                &bytes[at + FRAME_HEADER..at + FRAME_HEADER + len],
            ) {
                Ok(()) => {
                    at += FRAME_HEADER + len;
                    continue;
                }
                Err(reason) => reason,
            },
            None => "record cut short or checksum mismatch".to_owned(),
        };
        let next = (at + 1..bytes.len()).find(|&i| intact_at(&bytes, i).is_some());
        match next {
            None => {
                log::warn!(
                    "embedded outbox {}: dropping {} bytes at byte {at}, a write a crash cut \
                     short ({reason})",
                    path.display(),
                    bytes.len() - at
                );
                file.set_len(at as u64).map_err(err)?;
                file.sync_all().map_err(err)?;
                bytes.truncate(at);
                break;
            }
            Some(next) if recover => {
                log::warn!(
                    "embedded outbox {}: skipping {} damaged bytes at byte {at} ({reason}); \
                     events they held are lost",
                    path.display(),
                    next - at
                );
                skipped = true;
                at = next;
            }
            Some(next) => {
                return Err(EmbeddedError::Damaged {
                    path: path.to_owned(),
                    offset: at as u64,
                    next: next as u64,
                    reason,
                });
            }
        }
    }
    let mut f = OutboxFile {
        path: path.to_owned(),
        file,
        end: bytes.len() as u64,
        index,
        broken: None,
    };
    if skipped {
        f.compact()?;
    }
    Ok(f)
}

impl OutboxFile {
    /// Writes `buf` at the end and syncs; on failure cuts the file back (or breaks).
    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let start = self.end;
        let written = self
            .file
            .write_all_at(buf, start)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.end = start + buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(e2) = self.file.set_len(start) {
                    self.broken = Some(format!(
                        "the embedded outbox failed a write ({e}) and could not undo it ({e2}); \
                         restart Herald"
                    ));
                }
                Err(StoreError::from(io_error(&self.path, e)))
            }
        }
    }

    /// [`herald_core::MessageStore::outbox_add`].
    pub(crate) fn add(&mut self, events: &[Event], max: u64) -> Result<OutboxAdded, StoreError> {
        let (added, put) = self.index.add(events, max);
        let mut buf = Vec::new();
        for &i in &put {
            frame(&mut buf, ADD, &add_json(&events[i], 0, 0));
        }
        if let Err(e) = self.write(&buf) {
            let ids: Vec<EventId> = put.iter().map(|&i| events[i].id.clone()).collect();
            self.index.done(&ids);
            return Err(e);
        }
        Ok(added)
    }

    /// [`herald_core::MessageStore::outbox_lease`].
    pub(crate) fn lease(&mut self, now_ms: u64, limit: usize, lease: Duration) -> Vec<OutboxEntry> {
        self.index.lease(now_ms, limit, lease)
    }

    /// [`herald_core::MessageStore::outbox_done`].
    pub(crate) fn done(&mut self, ids: &[EventId]) -> Result<(), StoreError> {
        let removed = self.index.done(ids);
        if !removed.is_empty() {
            let mut buf = Vec::new();
            frame(&mut buf, DONE, &serde_json::json!(removed));
            // Not synced: losing it only sends those events again (at least once).
            self.file
                .write_all_at(&buf, self.end)
                .map_err(|e| StoreError::from(io_error(&self.path, e)))?;
            self.end += buf.len() as u64;
            self.maybe_compact();
        }
        Ok(())
    }

    /// [`herald_core::MessageStore::outbox_retry`].
    pub(crate) fn retry(&mut self, ids: &[EventId], next_ms: u64) -> Result<(), StoreError> {
        let changed = self.index.retry(ids, next_ms);
        if !changed.is_empty() {
            let mut buf = Vec::new();
            frame(&mut buf, RETRY, &serde_json::json!([changed, next_ms]));
            self.write(&buf)?;
        }
        Ok(())
    }

    /// [`herald_core::MessageStore::outbox_stats`].
    pub(crate) fn stats(&self) -> OutboxStats {
        self.index.stats()
    }

    /// Compacts when the file is big and mostly garbage.
    fn maybe_compact(&mut self) {
        // An add record is about 300 bytes.
        let live = self.index.len() as u64 * 300;
        if self.end < COMPACT_MIN || self.end < 2 * live.max(COMPACT_MIN / 2) {
            return;
        }
        if let Err(e) = self.compact() {
            log::error!("embedded outbox compaction failed, the file stays as it is: {e}");
        }
    }

    /// Writes the live events to a new file and renames it over the old one.
    fn compact(&mut self) -> Result<(), EmbeddedError> {
        let tmp = new_file(&self.path);
        let mut buf = MAGIC.to_vec();
        for (ev, attempts, next) in self.index.iter() {
            frame(&mut buf, ADD, &add_json(ev, attempts, next));
        }
        let err = |e| io_error(&tmp, e);
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&buf).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io_error(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = f;
        self.end = buf.len() as u64;
        Ok(())
    }
}
