//! What a store keeps of a push after it was stored, for the sender: delivery receipts (when a
//! copy was handed to a connection, when its slot acknowledged it), the push's status per slot,
//! recalls, and idempotency claims of `POST /push` (the types of the store methods at the end of
//! [`MessageStore`](crate::ports::MessageStore)).
//!
//! Rules every store keeps (the contract suite, `contract_receipts`, checks them):
//! - A push stored with a [`PushId`] has a push record: its time, its expiry and its recipients
//!   in the order given, each with the id its copy got. The record lives
//!   [`PUSH_RECORD_GRACE`] longer than the push's copies.
//! - A receipt records the earliest time of its kind per copy and slot; a later one changes
//!   nothing (redeliveries keep the first delivery time).
//! - "acked" follows the acknowledgement state of the copy, whatever receipts say; the receipt
//!   only gives the time.
//! - A recalled copy is never returned by `unacked` again, for any slot that had not
//!   acknowledged it; it stays visible to `history` (the sender asked to stop delivery, the
//!   record of what was sent stays).
//! - An idempotency claim is taken by one caller at a time, cluster-wide.

use std::time::Duration;

use crate::ids::{ClientId, MessageId, Slot};
use crate::push_id::PushId;

/// How long a push record outlives the push's copies: the status of an expired push (its
/// copies `expired` or `acked`) can be read this long after it expired.
pub const PUSH_RECORD_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What a receipt says happened to a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReceiptKind {
    /// A session handed the copy to its connection.
    Delivered,
    /// The slot acknowledged the copy (an ack or a commit).
    Acked,
}

/// One fact about one copy of a push, for one slot, with the node's wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The push.
    pub push: PushId,
    /// The recipient.
    pub client: ClientId,
    /// The copy's id in the recipient's queue.
    pub id: MessageId,
    /// The slot it happened on.
    pub slot: Slot,
    /// What happened.
    pub kind: ReceiptKind,
    /// When, Unix milliseconds.
    pub at_ms: u64,
}

/// Where one copy stands for one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyState {
    /// Stored, not yet handed to a connection of the slot.
    Stored,
    /// Handed to a connection, not yet acknowledged.
    Delivered,
    /// Acknowledged by the slot.
    Acked,
    /// Gone unacknowledged: its time to live ran out, or the cap dropped it.
    Expired,
    /// Recalled before the slot acknowledged it.
    Recalled,
}

impl CopyState {
    /// The name the REST API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Stored => "stored",
            CopyState::Delivered => "delivered",
            CopyState::Acked => "acked",
            CopyState::Expired => "expired",
            CopyState::Recalled => "recalled",
        }
    }
}

/// One recipient's copy, for one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStatus {
    /// The recipient.
    pub client: ClientId,
    /// The copy's id in its queue.
    pub id: MessageId,
    /// Where it stands.
    pub state: CopyState,
    /// When it was first delivered to the slot, if known.
    pub delivered_at: Option<u64>,
    /// When the slot acknowledged it, if known.
    pub acked_at: Option<u64>,
}

/// A push as its sender may see it, for one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStatus {
    /// When the push was stored, Unix milliseconds.
    pub ts: u64,
    /// When its copies expire, Unix milliseconds.
    pub expires_ms: u64,
    /// Every stored copy, in the push's recipient order.
    pub copies: Vec<CopyStatus>,
}

/// What a recall did (the same on every repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecallReport {
    /// Copies no slot had acknowledged when the push was first recalled: hidden from every slot.
    pub recalled: u64,
    /// Copies some slot had acknowledged by then (hidden from the slots that had not).
    pub already_acked: u64,
}

/// The answer to an idempotency claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The caller holds the key now: it publishes, then finishes or releases the claim.
    Claimed,
    /// A push with this key and this body was answered: here is the answer it got.
    Replay(String),
    /// Another caller holds the key and is still storing its push.
    InProgress,
    /// The key was used with another body.
    Mismatch,
}

/// How long idempotency claims live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyTimes {
    /// A finished claim answers repeats this long after it was taken.
    pub ttl: Duration,
    /// A claim not finished this long after it was taken (its node died mid-push) may be
    /// taken over by another caller.
    pub lease: Duration,
}

/// Milliseconds of `d`, saturated.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether `key` is a valid `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn valid_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// The state of one copy for one slot, from what a store knows of it: whether the copy is still
/// kept (`kept`), whether `slot` acknowledged it, whether it was recalled, and its receipts.
pub fn copy_state(kept: bool, acked: bool, recalled: bool, delivered_at: Option<u64>) -> CopyState {
    if acked {
        CopyState::Acked
    } else if recalled {
        CopyState::Recalled
    } else if !kept {
        CopyState::Expired
    } else if delivered_at.is_some() {
        CopyState::Delivered
    } else {
        CopyState::Stored
    }
}
