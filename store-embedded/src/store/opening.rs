//! Opening the store: the lock, the log's replay (with recovery of a damaged log), the ids
//! file, and writing a new log (compaction).

use super::*;
use crate::config::Bounds;

/// An I/O error on `path`.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens the log-like file at `path` to read and append, creating it empty if missing (the
/// message log and the webhook outbox).
pub(crate) fn open_or_create(path: &Path) -> Result<std::fs::File, EmbeddedError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error(path, e))
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
pub(super) fn set_aside(
    config: &EmbeddedConfig,
    skipped: &[Skip],
) -> Result<PathBuf, EmbeddedError> {
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
    pub(super) fn write_chunk(&mut self) -> Result<(), EmbeddedError> {
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
pub(super) fn take_lock(path: &Path) -> Result<File, EmbeddedError> {
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
pub(super) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A message body as stored: borrowed for encoding.
#[derive(serde::Serialize)]
pub(super) struct BodyRef<'a> {
    /// From.
    pub(super) f: &'a str,
    /// Topics.
    pub(super) ch: &'a [String],
    /// Data, raw.
    pub(super) d: &'a Payload,
    /// The push id, when the push has one (bodies of earlier versions have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) p: Option<&'a str>,
}

/// A message body as stored: owned for decoding.
#[derive(serde::Deserialize)]
pub(super) struct Body {
    /// From.
    pub(super) f: String,
    /// Topics.
    pub(super) ch: Vec<String>,
    /// Data, raw.
    pub(super) d: Payload,
    /// The push id, if any.
    #[serde(default)]
    pub(super) p: Option<String>,
}

/// What replaying a log gives.
pub(super) struct Loaded {
    /// The log, open for reading and writing.
    pub(super) file: File,
    /// Its length: where the next record goes.
    pub(super) end: u64,
    /// The index.
    pub(super) queues: Queues,
    /// The time of the last purge recorded.
    pub(super) last_purge: u64,
    /// Entries the cap (lowered since the log was written) dropped on opening.
    pub(super) capped: u64,
    /// The high-water mark of ids, as the file holds it.
    pub(super) mark: u64,
    /// Damaged bytes a recovery passed over; when there are any, the log must be rewritten.
    pub(super) skipped: Vec<Skip>,
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
pub(super) struct Replayed {
    /// The log, open for reading and writing.
    pub(super) file: File,
    /// Where the intact records end; a torn tail starts here.
    pub(super) end: u64,
    /// The index.
    pub(super) queues: Queues,
    /// The cap the log last recorded.
    pub(super) log_cap: Option<u64>,
    /// The time of the last purge recorded.
    pub(super) last_purge: u64,
    /// A last record a crash cut short or that is damaged, with no intact record after it.
    pub(super) torn: Option<Skip>,
    /// Damaged bytes with intact records after them, passed over (recovery only).
    pub(super) skipped: Vec<Skip>,
}

/// Opens the log at `path` (creating it if missing) and replays it into an index, writing
/// nothing to it (but the magic bytes of a new log).
///
/// A record that is cut short or fails its checksum is either a torn tail (no intact record
/// follows it: what a crash during the last write leaves) or damage (an intact record
/// follows). Damage is an error unless `recover`; then replay goes on from the next intact
/// record and the bytes passed over are listed.
pub(super) fn replay(
    path: &Path,
    recover: bool,
    bounds: Bounds,
) -> Result<Replayed, EmbeddedError> {
    use std::io::Seek;
    let err = |e| io_error(path, e);
    let file = open_or_create(path)?;
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
    queues.books = herald_core::books::PushBook::with_max_copies(bounds.receipts_max_copies);
    queues.claims =
        herald_core::books::IdempotencyTable::with_max_keys(bounds.idempotency_max_keys);
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
pub(super) fn next_intact(file: &File, from: u64, len: u64) -> std::io::Result<Option<u64>> {
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
pub(super) enum IdsFile {
    /// There is none: a new data directory, or one written by an earlier version.
    Missing,
    /// No id above this was ever handed out.
    Mark(u64),
    /// It cannot be read: why.
    Damaged(String),
}

/// The first bytes of the high-water mark file.
pub(super) const IDS_MAGIC: &[u8; 8] = b"HRLDIDS1";

/// Reads the high-water mark file: magic, `mark: u64`, CRC-32 of the 16 bytes before it.
pub(super) fn read_ids(path: &Path) -> Result<IdsFile, EmbeddedError> {
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
pub(super) fn write_ids(path: &Path, mark: u64) -> Result<(), EmbeddedError> {
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
pub(super) fn load(
    path: &Path,
    ids: &Path,
    cap: u64,
    recover: bool,
    bounds: Bounds,
) -> Result<Loaded, EmbeddedError> {
    let err = |e| io_error(path, e);
    let Replayed {
        file,
        end,
        mut queues,
        log_cap,
        last_purge,
        torn,
        skipped,
    } = replay(path, recover, bounds)?;
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
pub(super) fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
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
pub(super) fn apply(
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
                        recalled: false,
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
        Record::Purged(now_ms) => {
            *last_purge = (*last_purge).max(now_ms);
            queues.books.purge(now_ms);
            queues.claims.purge(now_ms);
        }
        Record::Floor(floor) => queues.raise_floor(floor),
        Record::Skipped { client, from, to } => queues.add_skipped(&client, from, to),
        Record::Named {
            push,
            ts,
            expires,
            copies,
        } => queues.books.stored(push, ts, expires, copies),
        Record::Receipts(receipts) => {
            for r in &receipts {
                queues.books.receipt(r);
            }
        }
        Record::Recall { push, report } => {
            if let Some(rec) = queues.books.records.get_mut(&push) {
                rec.recall = Some(report);
            }
            queues.mark_recalled(push);
        }
        Record::Claim { key, claim } => queues.claims.restore(key, claim),
        Record::Release { key } => {
            queues.claims.release(&key);
        }
        Record::Reported(pushes) => {
            for p in pushes {
                queues.books.expiry_reported(p);
            }
        }
    }
}
