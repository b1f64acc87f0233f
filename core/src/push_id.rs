//! Push ids: the name a `POST /push` answers with, and every copy of that push carries.
//!
//! A [`PushId`] is 128 bits written as 26 characters of Crockford's base32 (digits and
//! upper-case letters without `I`, `L`, `O`, `U`): 48 bits of Unix milliseconds, then 64 bits
//! drawn once per node at start ([`PushIds::new`]), then a 16-bit per-node counter. So:
//! - ids sort by time as plain strings (the time comes first, and the alphabet is in ASCII
//!   order);
//! - two nodes never make the same id (their 64 random bits differ, but with a chance of
//!   about one in 2^64 per pair of nodes);
//! - one node never makes the same id twice, even when its clock steps back: [`PushIds`]
//!   never goes below the time of its last id, and moves one millisecond on when its counter
//!   runs out.
//!
//! Ids are opaque to API callers; only their uniqueness and order are promised.

use std::fmt;

/// Crockford's base32 alphabet, in ASCII order.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Length of a push id's text.
pub const PUSH_ID_LEN: usize = 26;

/// The id of one push: 26 characters of Crockford base32, time-ordered. Cheap to copy.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushId([u8; PUSH_ID_LEN]);

/// Why a text is not a push id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a push id (26 characters of 0-9 and A-Z without I, L, O, U), found {0:?}")]
pub struct PushIdError(pub String);

impl PushId {
    /// The id made of `bits` (time in the top 48 bits).
    pub fn from_bits(bits: u128) -> PushId {
        let mut out = [0u8; PUSH_ID_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            // 26 characters × 5 bits = 130: the first character holds the top 3 bits alone.
            let shift = 5 * (PUSH_ID_LEN - 1 - i);
            *c = ALPHABET[((bits >> shift) & 31) as usize];
        }
        PushId(out)
    }

    /// Parses a push id as [`PushId::as_str`] writes it.
    ///
    /// # Errors
    /// When `s` is not 26 characters of the alphabet, or encodes more than 128 bits.
    pub fn parse(s: &str) -> Result<PushId, PushIdError> {
        let bad = || PushIdError(s.chars().take(40).collect());
        let bytes: [u8; PUSH_ID_LEN] = s.as_bytes().try_into().map_err(|_| bad())?;
        if !bytes.iter().all(|b| ALPHABET.contains(b)) || bytes[0] > b'7' {
            return Err(bad());
        }
        Ok(PushId(bytes))
    }

    /// The 128 bits of the id.
    pub fn bits(self) -> u128 {
        self.0.iter().fold(0u128, |acc, c| {
            let v = ALPHABET.iter().position(|a| a == c).unwrap_or(0) as u128;
            (acc << 5) | v
        })
    }

    /// The Unix milliseconds the id was made at (as its node's clock said).
    pub fn time_ms(self) -> u64 {
        (self.bits() >> 80) as u64
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("the alphabet is ASCII")
    }
}

impl fmt::Display for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PushId({})", self.as_str())
    }
}

/// A node's source of push ids: pure (the caller gives the time), monotonic.
#[derive(Debug, Clone)]
pub struct PushIds {
    /// The node's 64 random bits, drawn once at start.
    entropy: u64,
    /// Time of the last id made; never goes down.
    last_ms: u64,
    /// Counter of the last id within `last_ms`.
    counter: u16,
    /// Whether an id was made yet (the first one starts the counter at 0).
    started: bool,
}

impl PushIds {
    /// A generator for a node whose random draw is `node_entropy`.
    pub fn new(node_entropy: u64) -> PushIds {
        PushIds {
            entropy: node_entropy,
            last_ms: 0,
            counter: 0,
            started: false,
        }
    }

    /// The next id at `now_ms` (Unix milliseconds): greater than every id this generator made
    /// before, whatever the clock did.
    pub fn next(&mut self, now_ms: u64) -> PushId {
        let now_ms = now_ms.min((1 << 48) - 1);
        if !self.started || now_ms > self.last_ms {
            self.started = true;
            self.last_ms = now_ms;
            self.counter = 0;
        } else if self.counter == u16::MAX {
            self.last_ms += 1;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        let bits = (u128::from(self.last_ms) << 80)
            | (u128::from(self.entropy) << 16)
            | u128::from(self.counter);
        PushId::from_bits(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time_as_text() {
        let mut g = PushIds::new(0xDEAD_BEEF_0123_4567);
        let a = g.next(1_764_000_000_123);
        let b = g.next(1_764_000_000_124);
        assert_eq!(a.as_str().len(), 26);
        assert_eq!(PushId::parse(a.as_str()), Ok(a));
        assert_eq!(a.time_ms(), 1_764_000_000_123);
        assert!(a.as_str() < b.as_str() && a < b);
        let max = PushId::from_bits(u128::MAX);
        assert_eq!(PushId::parse(max.as_str()).unwrap().bits(), u128::MAX);
    }

    #[test]
    fn a_clock_stepping_back_or_a_full_counter_never_repeats_an_id() {
        let mut g = PushIds::new(7);
        let mut last = g.next(1000);
        for now in [999, 1000, 500, 1000] {
            let id = g.next(now);
            assert!(id > last, "{id} after {last}");
            last = id;
        }
        for _ in 0..70_000 {
            let id = g.next(1000);
            assert!(id > last);
            last = id;
        }
        assert_eq!(last.time_ms(), 1001, "the counter ran out once");
    }

    #[test]
    fn two_nodes_in_the_same_millisecond_differ() {
        let (mut a, mut b) = (PushIds::new(1), PushIds::new(2));
        assert_ne!(a.next(5), b.next(5));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for s in [
            "",
            "0123",
            "0000000000000000000000000I",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "0000000000000000000000000a",
            "000000000000000000000000000",
        ] {
            assert!(PushId::parse(s).is_err(), "{s:?}");
        }
    }
}
