//! Key and channel names, and the payloads on the channels: pure, no I/O.

use herald_core::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use herald_core::ports::BrokerEvent;
use herald_core::{Message, PushId};

/// Largest notification payload that carries its message (its JSON text); a larger message
/// is notified by id alone and read from the store by the sessions that want it.
pub(crate) const MAX_CARRIED: usize = 16 * 1024;

const NOTIFY_PREFIX: &str = "herald:n:{";

/// `herald:resync`: every node subscribes to it; a node that dropped or lost notifications
/// publishes its id there once Redis answers again, and every node resyncs (the lost
/// notifications were meant for sessions anywhere).
pub(crate) const RESYNC_CHANNEL: &str = "herald:resync";
const CLAIM_PREFIX: &str = "herald:s:{";

/// `herald:n:{c}`: where new last ids of `client` are published.
pub(crate) fn notify_channel(client: &ClientId) -> String {
    format!("{NOTIFY_PREFIX}{}}}", client.as_str())
}

/// `herald:s:{c}`: where claims of `client` are published.
pub(crate) fn claim_channel(client: &ClientId) -> String {
    format!("{CLAIM_PREFIX}{}}}", client.as_str())
}

/// `herald:g:{c}:<slot>`: the generation counter of `(client, slot)`.
pub(crate) fn generation_key(client: &ClientId, slot: Slot) -> String {
    format!("herald:g:{{{}}}:{}", client.as_str(), slot.get())
}

/// The claim payload `<slot>:<generation>:<node>` (CLAIM_SCRIPT in broker.rs builds it in Lua).
#[cfg(test)]
pub(crate) fn claim_payload(slot: Slot, generation: Generation, node: &NodeId) -> String {
    format!("{}:{}:{}", slot.get(), generation.0, node.as_str())
}

/// The notify payload that carries `message` itself: its wire JSON (the id included) and its
/// push id as `"p"` (which nodes of earlier versions ignore), or `None` when it is larger than
/// [`MAX_CARRIED`].
pub(crate) fn notify_payload(message: &Message) -> Option<String> {
    let mut json = serde_json::to_string(message).ok()?;
    if let Some(push) = message.push {
        // The wire form is an object: one more member goes before its closing brace.
        json.pop();
        json.push_str(&format!(r#","p":"{push}"}}"#));
    }
    Some(json).filter(|json| json.len() <= MAX_CARRIED)
}

/// The payload on a notify channel saying that `push` was recalled: `r:<push id>`.
pub(crate) fn recall_payload(push: PushId) -> String {
    format!("r:{push}")
}

/// The push id a carried message's payload names in `"p"`, if any.
fn push_of(payload: &str) -> Option<PushId> {
    let members: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(payload).ok()?;
    let text: String = serde_json::from_str(members.get("p")?.get()).ok()?;
    PushId::parse(&text).ok()
}

/// The client named by a channel with the given prefix, `None` when it is not one.
fn client_of(channel: &str, prefix: &str) -> Option<ClientId> {
    let inner = channel.strip_prefix(prefix)?.strip_suffix('}')?;
    ClientId::new(inner).ok()
}

/// Decodes a message on one of our channels into an event.
///
/// # Errors
/// A description of what is wrong, for the log, when the channel or payload is malformed.
pub(crate) fn decode(channel: &str, payload: &str) -> Result<BrokerEvent, String> {
    if channel == RESYNC_CHANNEL {
        return Ok(BrokerEvent::Resync);
    }
    if let Some(client) = client_of(channel, NOTIFY_PREFIX) {
        // `<id>`, `r:<push id>` (a recall), or the message's JSON (which names its id).
        if let Some(push) = payload.strip_prefix("r:") {
            let push =
                PushId::parse(push).map_err(|e| format!("recall payload on {channel}: {e}"))?;
            return Ok(BrokerEvent::Recall { client, push });
        }
        if payload.starts_with('{') {
            let mut message: Message = serde_json::from_str(payload).map_err(|e| {
                format!("notify payload on {channel}: not a message ({e}): {payload:.200}")
            })?;
            message.push = push_of(payload);
            return Ok(BrokerEvent::Notify {
                client,
                last: message.id,
                message: Some(message),
            });
        }
        let last = payload.parse::<u64>().map_err(|_| {
            format!("notify payload {payload:?} on {channel}: expected a message id")
        })?;
        return Ok(BrokerEvent::Notify {
            client,
            last: MessageId(last),
            message: None,
        });
    }
    if let Some(client) = client_of(channel, CLAIM_PREFIX) {
        let bad = || {
            format!("claim payload {payload:?} on {channel}: expected <slot>:<generation>:<node>")
        };
        let mut parts = payload.splitn(3, ':');
        let slot = parts
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad)?;
        let slot = Slot::new(slot).map_err(|_| bad())?;
        let generation = parts
            .next()
            .and_then(|g| g.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let node = parts
            .next()
            .and_then(|n| NodeId::new(n).ok())
            .ok_or_else(bad)?;
        return Ok(BrokerEvent::Claim {
            client,
            slot,
            generation: Generation(generation),
            node,
        });
    }
    Err(format!("message on unknown channel {channel:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    #[test]
    fn names_share_the_client_hash_tag() {
        let c = client("a:b@c");
        assert_eq!(notify_channel(&c), "herald:n:{a:b@c}");
        assert_eq!(claim_channel(&c), "herald:s:{a:b@c}");
        assert_eq!(
            generation_key(&c, Slot::new(3).unwrap()),
            "herald:g:{a:b@c}:3"
        );
    }

    #[test]
    fn a_notification_carries_its_message_up_to_the_limit() {
        let c = client("u-1");
        let mut msg = Message {
            id: MessageId(43),
            from: "billing".into(),
            channel: vec!["invoice".into()],
            data: herald_core::Payload::from_json(r#"{"amount": 12.50, "ok": [true]}"#).unwrap(),
            ts: 1_764_000_000_123,
            push: Some(herald_core::PushIds::new(3).next(1_764_000_000_123)),
        };
        let payload = notify_payload(&msg).expect("small enough");
        assert_eq!(
            decode(&notify_channel(&c), &payload),
            Ok(BrokerEvent::Notify {
                client: c.clone(),
                last: MessageId(43),
                message: Some(msg.clone()),
            }),
            "data keeps its exact text: {payload}"
        );
        let big = format!("\"{}\"", "x".repeat(MAX_CARRIED));
        msg.data = herald_core::Payload::from_json(&big).unwrap();
        assert_eq!(notify_payload(&msg), None, "too large: the id alone");
        let err = decode(&notify_channel(&c), r#"{"id":"seven"}"#).unwrap_err();
        assert!(err.contains("not a message"), "{err}");
    }

    #[test]
    fn recalls_ride_the_notify_channel() {
        let c = client("u-1");
        let push = herald_core::PushIds::new(3).next(5);
        assert_eq!(
            decode(&notify_channel(&c), &recall_payload(push)),
            Ok(BrokerEvent::Recall {
                client: c.clone(),
                push
            })
        );
        let err = decode(&notify_channel(&c), "r:nonsense").unwrap_err();
        assert!(err.contains("recall payload"), "{err}");
    }

    #[test]
    fn payloads_round_trip() {
        let c = client("u-1");
        assert_eq!(
            decode(&notify_channel(&c), "42"),
            Ok(BrokerEvent::Notify {
                client: c.clone(),
                last: MessageId(42),
                message: None,
            })
        );
        let node = NodeId::new("node-7").unwrap();
        let slot = Slot::new(5).unwrap();
        let payload = claim_payload(slot, Generation(9), &node);
        assert_eq!(
            decode(&claim_channel(&c), &payload),
            Ok(BrokerEvent::Claim {
                client: c,
                slot,
                generation: Generation(9),
                node
            })
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let c = client("u");
        assert!(decode(&notify_channel(&c), "x").is_err());
        assert!(decode(&notify_channel(&c), "-1").is_err());
        assert!(decode(&claim_channel(&c), "1:2").is_err());
        assert!(decode(&claim_channel(&c), "99:2:n").is_err());
        assert!(decode(&claim_channel(&c), "1:x:n").is_err());
        assert!(decode("other", "1").is_err());
        assert_eq!(decode(RESYNC_CHANNEL, "node-1"), Ok(BrokerEvent::Resync));
        assert!(decode("herald:n:{}", "1").is_err());
    }
}
