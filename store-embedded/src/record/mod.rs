//! The log's records: framing, checksums and the byte layout of each kind.
//!
//! The log file starts with [`MAGIC`], then frames. A frame is `len: u32 LE`, `crc: u32 LE`
//! (CRC-32 of the payload), then `len` bytes of payload whose first byte says its kind. All
//! integers are little-endian; a client id is a length byte and its bytes (ids are at most
//! 128 bytes).
//!
//! | kind | payload after the kind byte | written |
//! | --- | --- | --- |
//! | [`Record::Push`] | `expires: u64`, `body_len: u32`, body, `n: u32`, then `n` × (client, `id: u64`, `ts: u64`, `acked: u16`) | once per push, whatever the number of recipients |
//! | [`Record::Ack`] | client, `slot: u8`, `n: u32`, `n` × `id: u64` | per acknowledgement that changed something |
//! | [`Record::Last`] | client, `last: u64` | by compaction: the last id handed out, which outlives the messages |
//! | [`Record::Cap`] | `cap: u64` | when the store opens with another cap than the log's last one, and by compaction |
//! | [`Record::Purged`] | `now_ms: u64` | after each purge: everything expired at that time is gone |
//! | [`Record::Floor`] | `floor: u64` | when bytes of the log were lost (a torn tail, a recovery), and by compaction: no queue hands out an id at or below it again |
//! | [`Record::Skipped`] | client, `from: u64`, `to: u64` | by compaction: ids a floor skipped in a queue that still had messages |
//! | [`Record::Named`] | push id (26 bytes), `ts: u64`, `expires: u64`, `n: u32`, `n` × (client, `id: u64`) | after a push that has a push id, and by compaction: the push record |
//! | [`Record::Receipts`] | `n: u32`, `n` × (push id, client, `id: u64`, `slot: u8`, `kind: u8`, `at: u64`) | per batch of delivery receipts, not synced on its own |
//! | [`Record::Recall`] | push id, `recalled: u64`, `already_acked: u64` | when a push is first recalled, and by compaction |
//! | [`Record::Claim`] | key (length byte, bytes), `sha256: [u8; 32]`, `taken: u64`, `expires: u64`, `lease: u64`, `answered: u8`, then `len: u32` and the answer when answered | when an idempotency key is claimed or finished, and by compaction |
//! | [`Record::Release`] | key | when a claim is given up |
//! | [`Record::Reported`] | `n: u32`, `n` × push id | when the `expired` events of pushes were recorded, and by compaction; not synced on its own |
//!
//! A push's body sits at a fixed distance from its frame's start ([`PUSH_BODY_AT`]), so the
//! in-memory index keeps only its position and reads it back with one positioned read.

mod decode;
mod encode;
mod frame;
#[cfg(test)]
mod tests;

use herald_core::books::Claim;
use herald_core::{ClientId, MessageId, PushId, RecallReport, Receipt, Slot};

pub use decode::decode;
pub use encode::{
    put_ack, put_cap, put_claim, put_floor, put_last, put_named, put_purged, put_push, put_recall,
    put_receipts, put_release, put_reported, put_skipped,
};
pub use frame::{crc32, read_header};

/// The first bytes of a log file: the format and its version.
pub const MAGIC: &[u8; 8] = b"HRLDLOG1";

/// Length of a frame's header: `len` and `crc`.
pub const FRAME_HEADER: usize = 8;

/// Where a push's body starts, counted from its frame's first byte: frame header, kind,
/// `expires`, `body_len`.
pub const PUSH_BODY_AT: u64 = (FRAME_HEADER + 1 + 8 + 4) as u64;

/// The longest payload a frame may announce. A push to the most recipients a request may
/// name is far below it; a longer length can only come from a damaged file.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// Kind byte of [`Record::Push`].
const PUSH: u8 = 1;
/// Kind byte of [`Record::Ack`].
const ACK: u8 = 2;
/// Kind byte of [`Record::Last`].
const LAST: u8 = 3;
/// Kind byte of [`Record::Cap`].
const CAP: u8 = 4;
/// Kind byte of [`Record::Purged`].
const PURGED: u8 = 5;
/// Kind byte of [`Record::Floor`].
const FLOOR: u8 = 6;
/// Kind byte of [`Record::Skipped`].
const SKIPPED: u8 = 7;
/// Kind byte of [`Record::Named`].
const NAMED: u8 = 8;
/// Kind byte of [`Record::Receipts`].
const RECEIPTS: u8 = 9;
/// Kind byte of [`Record::Recall`].
const RECALL: u8 = 10;
/// Kind byte of [`Record::Claim`].
const CLAIM: u8 = 11;
/// Kind byte of [`Record::Release`].
const RELEASE: u8 = 12;
/// Kind byte of [`Record::Reported`].
const REPORTED: u8 = 13;

/// Whether `kind` is the kind byte of a record this version writes: a cheap first test of a
/// frame found while looking for the next intact record after damage.
pub fn is_kind(kind: u8) -> bool {
    (PUSH..=REPORTED).contains(&kind)
}

/// One recipient's copy of a push, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The queue.
    pub client: ClientId,
    /// Its id in that queue.
    pub id: MessageId,
    /// Its store time.
    pub ts: u64,
    /// Slots that had acknowledged it when the record was written (0 for a new push).
    pub acked: u16,
}

/// A decoded record; a push's body is left in the payload ([`Record::Push::body`] is its
/// place there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A message appended to one or more queues.
    Push {
        /// Expiry time: expired when `now >= expires`.
        expires: u64,
        /// Where the body is within the payload.
        body: std::ops::Range<usize>,
        /// The copies.
        copies: Vec<Copy>,
    },
    /// Ids of a client newly acknowledged by a slot.
    Ack {
        /// The client.
        client: ClientId,
        /// The slot.
        slot: Slot,
        /// The ids.
        ids: Vec<MessageId>,
    },
    /// The last id handed out in a client's queue.
    Last {
        /// The client.
        client: ClientId,
        /// Its last id.
        last: MessageId,
    },
    /// The per-client cap in force from here on.
    Cap(u64),
    /// A purge at this time removed everything expired by then.
    Purged(u64),
    /// Every queue's last id is at least this from here on, and a queue first seen later
    /// starts above it: ids at or below it may have been handed out by records that were
    /// lost.
    Floor(u64),
    /// Ids `from..=to` of a client were skipped by a floor while the queue held messages:
    /// they are not messages, so the cap does not count them.
    Skipped {
        /// The client.
        client: ClientId,
        /// The first skipped id.
        from: u64,
        /// The last skipped id.
        to: u64,
    },
    /// A push record: the push's id, time, expiry, and recipients with their copies' ids.
    Named {
        /// The push.
        push: PushId,
        /// Its store time.
        ts: u64,
        /// Its expiry.
        expires: u64,
        /// Its recipients, in order, with their ids.
        copies: Vec<(ClientId, MessageId)>,
    },
    /// Delivery receipts.
    Receipts(Vec<Receipt>),
    /// A push was recalled, with what the recall counted.
    Recall {
        /// The push.
        push: PushId,
        /// The counts.
        report: RecallReport,
    },
    /// An idempotency claim, as it is now (taken or finished).
    Claim {
        /// The key.
        key: String,
        /// The claim.
        claim: Claim,
    },
    /// An idempotency claim was given up.
    Release {
        /// The key.
        key: String,
    },
    /// The expiry of these pushes was reported (their `expired` events recorded).
    Reported(Vec<PushId>),
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);
