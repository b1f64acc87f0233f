//! The publish path of one `POST /push`: validation, the store append, the notifications,
//! and the outcome the REST API answers with. One function, [`publish`], that the server,
//! the cluster simulation (`core/tests/sim.rs`) and the example driver all run, so the
//! simulation checks the code that ships.
//!
//! Rules kept here:
//! - A body that does not validate stores nothing ([`Published::Refused`]).
//! - A push is promised (the answer is 200) once at least one recipient's copy is stored;
//!   when the store is down or stored no copy, nothing is promised (503).
//! - Notifications go out only for stored copies, all together (one
//!   [`Broker::notify_messages`], pipelined by a broker that can), each carrying its message
//!   so that a session waiting for exactly that id delivers it without a store read.
//! - A failed notification does not undo the promise: it delays delivery until the next
//!   notification or a broker resync (sessions then re-read their queues).

use crate::ids::{ClientId, MessageId};
use crate::ports::{Broker, BrokerError, MessageStore, StoreError};
use crate::push::{FieldError, parse_push};
use crate::push_id::PushId;

/// What became of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The body is not a valid push: every problem found. Nothing was stored.
    Refused(Vec<FieldError>),
    /// No recipient's copy was stored: the store is down (`failed` empty) or refused every
    /// copy (`failed` lists them). Nothing is promised.
    NotStored {
        /// Why.
        error: StoreError,
        /// The recipients whose copy the store refused one by one.
        failed: Vec<ClientId>,
    },
    /// At least one copy was stored: the push is promised.
    Stored {
        /// The push's id, which every stored copy carries.
        push_id: PushId,
        /// The recipients whose copy was stored, with the id it got, in the order given.
        stored: Vec<(ClientId, MessageId)>,
        /// The recipients whose copy could not be stored.
        failed: Vec<ClientId>,
        /// Why the notifications could not all be sent, if so (delivery is then delayed,
        /// not lost).
        notify_error: Option<BrokerError>,
    },
}

/// Runs the publish path of the push `body` (the JSON of a `POST /push`) at `now_ms` (Unix
/// milliseconds, the stored messages' time) on `store` and `broker`, naming it `push_id`
/// (the caller's [`crate::PushIds`] made it).
pub async fn publish<S: MessageStore, B: Broker>(
    store: &S,
    broker: &B,
    body: &[u8],
    now_ms: u64,
    push_id: PushId,
) -> Published {
    let mut push = match parse_push(body) {
        Ok(p) => p,
        Err(errors) => return Published::Refused(errors),
    };
    push.message.push = Some(push_id);
    let results = match store.append(&push.message, &push.recipients, now_ms).await {
        Ok(r) => r,
        Err(error) => {
            log::warn!("push failed, store down: {error}");
            return Published::NotStored {
                error,
                failed: Vec::new(),
            };
        }
    };
    let mut notes = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for (client, r) in push.recipients.into_iter().zip(results) {
        match r {
            Ok(id) => {
                let message = push.message.to_message(id, now_ms);
                notes.push((client, message));
            }
            Err(e) => {
                log::warn!("push to {client} failed: {e}");
                failed.push(client);
            }
        }
    }
    if notes.is_empty() {
        return Published::NotStored {
            error: StoreError::Unavailable("no recipient's copy could be stored".into()),
            failed,
        };
    }
    let notify_error = broker.notify_messages(&notes).await.err();
    if let Some(e) = &notify_error {
        for (client, message) in &notes {
            log::warn!("notify {client} of message {} failed: {e}", message.id);
        }
    }
    Published::Stored {
        push_id,
        stored: notes
            .into_iter()
            .map(|(client, message)| (client, message.id))
            .collect(),
        failed,
        notify_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Slot;
    use crate::memory::{MemoryBroker, MemoryStore, now_or_never};
    use crate::ports::{BrokerEvent, Retention};

    #[test]
    fn a_push_is_stored_notified_and_answered() {
        let store = MemoryStore::new(Retention::default());
        let bus = MemoryBroker::new();
        let broker = bus.node();
        let mut events = broker.events();
        let a = ClientId::new("a").unwrap();
        now_or_never(broker.subscribe(&a)).unwrap();
        let body = br#"{"send_id":"s","recv_id":["a","b","a"],"data":{"n":1}}"#;
        let id = crate::PushIds::new(3).next(7);
        let out = now_or_never(publish(&store, &broker, body, 7, id));
        let b = ClientId::new("b").unwrap();
        assert_eq!(
            out,
            Published::Stored {
                push_id: id,
                stored: vec![(a.clone(), MessageId(1)), (b, MessageId(1))],
                failed: vec![],
                notify_error: None,
            }
        );
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(Some(BrokerEvent::Notify {
            client, message, ..
        })) = events.as_mut().poll_next(&mut cx)
        else {
            panic!("a notification for a");
        };
        assert_eq!(client, a);
        let message = message.expect("the message rides along");
        assert_eq!((message.data.json(), message.ts), (r#"{"n":1}"#, 7));
        assert_eq!(message.push, Some(id));
        let unacked = now_or_never(store.unacked(&a, Slot::default(), MessageId::ZERO, 9, 7));
        assert_eq!(
            unacked.unwrap()[0].push,
            Some(id),
            "the stored copy knows its push"
        );
    }

    #[test]
    fn refused_and_unstored_pushes_promise_nothing() {
        let store = MemoryStore::new(Retention::default());
        let broker = MemoryBroker::new().node();
        let id = crate::PushIds::new(3).next(7);
        let out = now_or_never(publish(&store, &broker, br#"{"send_id":"s"}"#, 7, id));
        assert!(matches!(out, Published::Refused(e) if !e.is_empty()));
        store.set_down(true);
        let body = br#"{"send_id":"s","recv_id":["a"],"data":1}"#;
        let out = now_or_never(publish(&store, &broker, body, 7, id));
        assert!(matches!(out, Published::NotStored { failed, .. } if failed.is_empty()));
    }
}
