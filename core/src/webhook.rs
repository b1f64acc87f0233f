//! Webhook events and their signature: what Herald POSTs to a `[webhook] url`, and how a
//! receiver checks that it came from Herald.
//!
//! An [`Event`] is one fact about one copy of a push (delivered, acked, expired, recalled).
//! Its id is deterministic ([`EventId::of`]): the same fact recorded twice (facts are recorded
//! at least once) makes the same event, so the outbox keeps it once and receivers deduplicate
//! by id.
//!
//! A delivery is `{"events":[...]}` ([`batch_body`]) with the header [`SIGNATURE_HEADER`]:
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` ([`sign`]). [`verify`]
//! checks it with a tolerance on `t`, so that a captured request cannot be replayed later.
//! Everything here is pure: times are passed in.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::{ClientId, MessageId, Slot};

/// What happened to a copy of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A connection of the client was handed the copy.
    Delivered,
    /// The client acknowledged the copy (ack or commit).
    Acked,
    /// The copy's time to live ran out before it was acknowledged.
    Expired,
    /// The copy was recalled before it was acknowledged.
    Recalled,
}

impl EventKind {
    /// Every kind, in the order of the docs.
    pub const ALL: [EventKind; 4] = [
        EventKind::Delivered,
        EventKind::Acked,
        EventKind::Expired,
        EventKind::Recalled,
    ];

    /// The kind as it appears in the `type` field and in `webhook.events`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Delivered => "delivered",
            EventKind::Acked => "acked",
            EventKind::Expired => "expired",
            EventKind::Recalled => "recalled",
        }
    }

    /// The kind named `s` (as [`EventKind::as_str`] writes it), if any.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event id: `ev_` and 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EventId(String);

/// Why an event id or an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(String);

impl EventId {
    /// The id of the fact `kind` about the copy of push `push_id` for `(client, slot)`: `ev_` and
    /// the first 32 hex digits of SHA-256 over the four fields, each ended by a newline (none of
    /// them can hold one). The message id and the time are left out: the fact is the same
    /// whenever and however often it is recorded.
    pub fn of(kind: EventKind, push_id: &str, client: &ClientId, slot: Slot) -> EventId {
        let mut h = Sha256::new();
        for part in [kind.as_str(), push_id, client.as_str()] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        h.update(slot.get().to_string().as_bytes());
        h.update(b"\n");
        let digest = h.finalize();
        EventId(format!("ev_{}", hex::encode(&digest[..16])))
    }

    /// Validates `s` as an event id.
    ///
    /// # Errors
    /// When `s` is not `ev_` and 32 lowercase hex digits.
    pub fn parse(s: &str) -> Result<EventId, EventError> {
        let ok = s.len() == 35
            && s.starts_with("ev_")
            && s[3..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(EventId(s.to_owned()))
        } else {
            Err(EventError(format!(
                "an event id is \"ev_\" and 32 lowercase hex digits, found {s:?}"
            )))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EventId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One webhook event, as the receiver gets it (field order as documented).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Deterministic: see [`EventId::of`].
    pub id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The push the copy belongs to.
    pub push_id: String,
    /// The recipient.
    pub client: ClientId,
    /// The slot the fact is about.
    pub slot: Slot,
    /// The copy's id in the client's queue.
    pub message_id: MessageId,
    /// When it happened, Unix milliseconds (the recording node's clock).
    pub ts: u64,
}

impl Event {
    /// The event for the fact `kind` about `(push_id, client, slot)`, with its id.
    pub fn new(
        kind: EventKind,
        push_id: &str,
        client: ClientId,
        slot: Slot,
        message_id: MessageId,
        ts: u64,
    ) -> Event {
        Event {
            id: EventId::of(kind, push_id, &client, slot),
            kind,
            push_id: push_id.to_owned(),
            client,
            slot,
            message_id,
            ts,
        }
    }

    /// The event as compact JSON.
    pub fn to_json(&self) -> String {
        // Every field is a string or a number: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses an event written by [`Event::to_json`], checking that its id is the one its
    /// fields make.
    ///
    /// # Errors
    /// When `json` is not an event, or its id does not match its fields.
    pub fn from_json(json: &str) -> Result<Event, EventError> {
        let ev: Event =
            serde_json::from_str(json).map_err(|e| EventError(format!("not an event: {e}")))?;
        let want = EventId::of(ev.kind, &ev.push_id, &ev.client, ev.slot);
        if want != ev.id {
            return Err(EventError(format!(
                "event id {} does not match its fields (expected {want})",
                ev.id
            )));
        }
        Ok(ev)
    }
}

/// An event in the outbox, as a lease hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The event.
    pub event: Event,
    /// Failed delivery attempts so far.
    pub attempts: u32,
}

/// What [`MessageStore::outbox_add`](crate::MessageStore::outbox_add) did with the events it
/// was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxAdded {
    /// Newly stored.
    pub added: u64,
    /// Already in the outbox (same id): ignored.
    pub duplicates: u64,
    /// Not stored because the outbox was full.
    pub dropped: u64,
}

/// The outbox's size, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Events waiting (leased or not).
    pub depth: u64,
    /// The `ts` of the oldest waiting event, if any.
    pub oldest_ts: Option<u64>,
}

/// The body of one delivery: `{"events":[...]}`.
pub fn batch_body<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    let mut out = String::from(r#"{"events":["#);
    for (i, ev) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&ev.to_json());
    }
    out.push_str("]}");
    out
}

/// The request header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";

/// How far a signature's time may be from the receiver's clock, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `t_secs` (Unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn sign(secret: &[u8], t_secs: u64, body: &[u8]) -> String {
    format!("t={t_secs},v1={}", hex::encode(mac(secret, t_secs, body)))
}

fn mac(secret: &[u8], t_secs: u64, body: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(t_secs.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<digits>,v1=<64 hex>[,v1=...]`.
    #[error("malformed signature header: {0}")]
    Malformed(String),
    /// The time is further from now than the tolerance.
    #[error("signature time {t} is {off} s away from now ({now}); the tolerance is {tolerance} s")]
    Stale {
        /// The header's time.
        t: u64,
        /// The receiver's time.
        now: u64,
        /// How far apart they are.
        off: u64,
        /// The tolerance.
        tolerance: u64,
    },
    /// No `v1` matches the body and the secret.
    #[error("signature does not match the body")]
    Mismatch,
}

/// Checks `header` (the value of [`SIGNATURE_HEADER`]) against `body` and `secret` at
/// `now_secs`: its `t` must be within `tolerance` of now (either way), and one of its `v1`
/// values (several are allowed, for a secret rotation) must be the HMAC of `"<t>.<body>"`.
/// The comparison is constant-time.
///
/// # Errors
/// [`SignatureError`] saying what was wrong.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| SignatureError::Malformed(format!("{part:?} is not key=value")))?;
        match k {
            "t" => {
                if t.is_some() {
                    return Err(SignatureError::Malformed("two t values".into()));
                }
                if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed(format!(
                        "t must be Unix seconds, found {v:?}"
                    )));
                }
                t = v.parse::<u64>().ok();
            }
            "v1" => match hex::decode(v) {
                Ok(sig) if sig.len() == 32 => sigs.push(sig),
                _ => {
                    return Err(SignatureError::Malformed(format!(
                        "v1 must be 64 hex digits, found {v:?}"
                    )));
                }
            },
            // Other schemes may be added later; a receiver ignores what it does not know.
            _ => {}
        }
    }
    let t = t.ok_or_else(|| SignatureError::Malformed("no t value".into()))?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed("no v1 value".into()));
    }
    let off = t.abs_diff(now_secs);
    if off > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            t,
            now: now_secs,
            off,
            tolerance: tolerance.as_secs(),
        });
    }
    let want = mac(secret, t, body);
    if sigs.iter().any(|s| bool::from(s.ct_eq(&want))) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event::new(
            kind,
            "01JD0000000000000000000000",
            ClientId::new("u42").unwrap(),
            Slot::new(0).unwrap(),
            MessageId(17),
            1_764_000_000_123,
        )
    }

    #[test]
    fn ids_are_deterministic_and_differ_per_fact() {
        let a = ev(EventKind::Acked);
        let mut again = ev(EventKind::Acked);
        again.ts += 5_000;
        again.message_id = MessageId(18);
        assert_eq!(
            Event::new(
                again.kind,
                &again.push_id,
                again.client.clone(),
                again.slot,
                again.message_id,
                again.ts
            )
            .id,
            a.id,
            "time and message id do not change the fact"
        );
        // Python: hashlib.sha256(b"acked\n01JD0000000000000000000000\nu42\n0\n").hexdigest()[:32]
        assert_eq!(a.id.as_str(), "ev_62ea33e2d613d9e39c6c8748f916b835");
        let mut seen = std::collections::HashSet::new();
        for kind in EventKind::ALL {
            for slot in [0, 1] {
                for client in ["u42", "u4"] {
                    let id = EventId::of(
                        kind,
                        "p",
                        &ClientId::new(client).unwrap(),
                        Slot::new(slot).unwrap(),
                    );
                    assert!(EventId::parse(id.as_str()).is_ok());
                    assert!(seen.insert(id), "one id per fact");
                }
            }
        }
    }

    #[test]
    fn events_round_trip_as_json_in_the_documented_shape() {
        let e = ev(EventKind::Delivered);
        let json = e.to_json();
        assert_eq!(
            json,
            format!(
                r#"{{"id":"{}","type":"delivered","push_id":"01JD0000000000000000000000","client":"u42","slot":0,"message_id":17,"ts":1764000000123}}"#,
                e.id
            )
        );
        assert_eq!(Event::from_json(&json).unwrap(), e);
        let forged = json.replace("u42", "u43");
        assert!(Event::from_json(&forged).is_err(), "id no longer matches");
        assert!(Event::from_json(r#"{"id":"ev_x"}"#).is_err());
        assert_eq!(
            batch_body([&e, &e]),
            format!(r#"{{"events":[{json},{json}]}}"#)
        );
        assert_eq!(batch_body([]), r#"{"events":[]}"#);
    }

    #[test]
    fn event_ids_are_validated() {
        assert!(EventId::parse("ev_0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "",
            "ev_",
            "ev_0123456789ABCDEF0123456789abcdef",
            "ex_0123456789abcdef0123456789abcdef",
            "ev_0123456789abcdef0123456789abcde",
            "ev_0123456789abcdef0123456789abcdef0",
        ] {
            assert!(EventId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kinds_parse_by_name() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("Acked"), None);
    }

    const NOW: u64 = 1_764_000_000;
    const TOL: Duration = DEFAULT_TOLERANCE;

    #[test]
    fn a_signature_matches_an_independent_vector() {
        // Python: hmac.new(b"s3cret", b"1764000000." + b'{"events":[]}', hashlib.sha256).hexdigest()
        let h = sign(b"s3cret", NOW, br#"{"events":[]}"#);
        assert_eq!(
            h,
            "t=1764000000,v1=4b4844f3f3448ab9d9235db45ed91b13fbf667bf9e64e5372e1f3eb88b104a95"
        );
        assert_eq!(verify(b"s3cret", &h, br#"{"events":[]}"#, NOW, TOL), Ok(()));
    }

    #[test]
    fn signatures_verify_within_the_tolerance_only() {
        let body = br#"{"events":[{"id":"x"}]}"#;
        let h = sign(b"k", NOW, body);
        assert_eq!(verify(b"k", &h, body, NOW + 300, TOL), Ok(()));
        assert_eq!(verify(b"k", &h, body, NOW - 300, TOL), Ok(()));
        assert!(matches!(
            verify(b"k", &h, body, NOW + 301, TOL),
            Err(SignatureError::Stale { off: 301, .. })
        ));
        assert!(matches!(
            verify(b"k", &h, body, NOW - 301, TOL),
            Err(SignatureError::Stale { .. })
        ));
    }

    #[test]
    fn forged_signatures_are_refused() {
        let body = br#"{"events":[]}"#;
        let h = sign(b"k", NOW, body);
        assert_eq!(
            verify(b"other", &h, body, NOW, TOL),
            Err(SignatureError::Mismatch),
            "another secret"
        );
        assert_eq!(
            verify(b"k", &h, br#"{"events":[1]}"#, NOW, TOL),
            Err(SignatureError::Mismatch),
            "another body"
        );
        // The same signature with another time: the time is signed too.
        let moved = h.replace("t=1764000000", "t=1764000001");
        assert_eq!(
            verify(b"k", &moved, body, NOW, TOL),
            Err(SignatureError::Mismatch)
        );
        // A rotation: one of several v1 values matches.
        let other = sign(b"old", NOW, body);
        let both = format!("{},{}", other, &h[h.find(",v1=").unwrap() + 1..]);
        assert_eq!(verify(b"k", &both, body, NOW, TOL), Ok(()));
        // Unknown schemes are ignored, not trusted.
        let v0 = format!("t={NOW},v0={}", "0".repeat(64));
        assert!(matches!(
            verify(b"k", &v0, body, NOW, TOL),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_headers_are_refused_not_panics() {
        let body = b"{}";
        let good = sign(b"k", NOW, body);
        let sig = &good[good.find("v1=").unwrap()..];
        for bad in [
            String::new(),
            "garbage".into(),
            format!("v1={}", "0".repeat(64)),
            format!("t={NOW}"),
            format!("t=,{sig}"),
            format!("t=-5,{sig}"),
            format!("t=99999999999999999999,{sig}"),
            format!("t={NOW},t={NOW},{sig}"),
            format!("t={NOW},v1=zz"),
            format!("t={NOW},v1={}", "0".repeat(63)),
            format!("t={NOW};{sig}"),
        ] {
            assert!(
                matches!(
                    verify(b"k", &bad, body, NOW, TOL),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }
}
