//! Converting the redb database of earlier versions into a log.
//!
//! Earlier versions kept, in `herald.redb`: `messages` (`(client, id)` → `ts: u64`,
//! `expires: u64`, `acked: u16`, then the same JSON body the log keeps), `counters`
//! (`client` → last id), `floors` (`(client, slot)` → every id up to it acknowledged by the
//! slot) and, before that, a time index `times` that is not needed. The conversion writes
//! every client's last id, then every message as a push with one copy (its acknowledgements
//! are the record's bits and the floors), to a new file that is synced and renamed into place
//! only when complete: a crash during the conversion leaves the database, and the next open
//! starts over.

use std::collections::HashMap;
use std::path::Path;

use herald_core::{ClientId, MessageId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::error::EmbeddedError;
use crate::record;
use crate::store::NewLog;

/// `(client, id)` → record.
const MESSAGES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("messages");
/// `client` → the last id handed out.
const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");
/// `(client, slot)` → every id up to this one is acknowledged by the slot.
const FLOORS: TableDefinition<'_, (&str, u8), u64> = TableDefinition::new("floors");

/// Length of an old record's header: `ts`, `expires`, `acked`.
const HEADER: usize = 18;

/// Converts the database at `db` into a log at `log`, written first to `tmp`.
pub fn convert(db: &Path, tmp: &Path, log: &Path) -> Result<(), EmbeddedError> {
    log::info!(
        "embedded store: converting {} (an earlier version's database) to {}",
        db.display(),
        log.display()
    );
    let database = redb::Database::open(db)?;
    let txn = database.begin_read()?;
    let mut out = NewLog::create(tmp)?;
    let client = |s: &str| {
        ClientId::new(s).map_err(|e| EmbeddedError::Legacy(format!("client id {s:?}: {e}")))
    };
    let mut floors: HashMap<String, Vec<(u8, u64)>> = HashMap::new();
    match txn.open_table(FLOORS) {
        Ok(table) => {
            for entry in table.iter()? {
                let (key, floor) = entry?;
                let (c, slot) = key.value();
                floors
                    .entry(c.to_owned())
                    .or_default()
                    .push((slot, floor.value()));
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut clients = 0u64;
    match txn.open_table(COUNTERS) {
        Ok(table) => {
            for entry in table.iter()? {
                let (key, last) = entry?;
                record::put_last(
                    &mut out.chunk,
                    &client(key.value())?,
                    MessageId(last.value()),
                );
                clients += 1;
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut messages = 0u64;
    match txn.open_table(MESSAGES) {
        Ok(table) => {
            let mut current: Option<(String, ClientId)> = None;
            for entry in table.iter()? {
                let (key, value) = entry?;
                let (c, id) = key.value();
                let bytes = value.value();
                if bytes.len() < HEADER {
                    return Err(EmbeddedError::Legacy(format!(
                        "record {id} of {c} is {} bytes, shorter than its header",
                        bytes.len()
                    )));
                }
                let u64_at = |at: usize| {
                    let mut a = [0; 8];
                    a.copy_from_slice(&bytes[at..at + 8]);
                    u64::from_le_bytes(a)
                };
                let (ts, expires) = (u64_at(0), u64_at(8));
                let mut acked = u16::from_le_bytes([bytes[16], bytes[17]]);
                for (slot, floor) in floors.get(c).map_or(&[][..], Vec::as_slice) {
                    if id <= *floor && *slot < 16 {
                        acked |= 1 << slot;
                    }
                }
                if current.as_ref().is_none_or(|(name, _)| name != c) {
                    current = Some((c.to_owned(), client(c)?));
                }
                let Some((_, cid)) = &current else {
                    continue;
                };
                record::put_push(
                    &mut out.chunk,
                    expires,
                    &bytes[HEADER..],
                    std::iter::once((cid, MessageId(id), ts, acked)),
                );
                messages += 1;
                out.spill()?;
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    out.finish(log)?;
    log::info!("embedded store: converted {clients} clients and {messages} messages");
    Ok(())
}
