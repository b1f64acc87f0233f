//! The [`MemoryBroker`] bus and its [`MemoryBrokerNode`] handles: subscriptions, notifications,
//! claims and the registry of sessions online, in memory.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_core::Stream;

use super::lock;
use crate::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use crate::message::Message;
use crate::ports::{Broker, BrokerError, BrokerEvent, BrokerEvents, OnlineSession};
use crate::push_id::PushId;

/// The shared bus of [`MemoryBrokerNode`]s: one per process for the single-node server, one
/// per simulated cluster in tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<BusInner>,
}

#[derive(Debug, Default)]
struct BusInner {
    down: AtomicBool,
    next_node: AtomicU64,
    state: Mutex<BusState>,
}

#[derive(Debug, Default)]
struct BusState {
    /// Per node: its subscriptions and its event queue.
    nodes: HashMap<u64, NodeState>,
    /// Per (client, slot): the last generation given.
    generations: HashMap<(ClientId, Slot), u64>,
    /// The registry of sessions online: per client, by slot in order, the node handle that
    /// claimed it and the session (an entry of a dropped handle is a dead node's: not shown).
    /// A list: a client has one or a few, and a map per client cost an idle connection about
    /// 300 bytes.
    online: HashMap<ClientId, Vec<(u64, OnlineSession)>>,
}

#[derive(Debug)]
struct NodeState {
    subscribed: HashSet<ClientId>,
    events: UnboundedSender<BrokerEvent>,
}

impl MemoryBroker {
    /// A bus with no node.
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    /// A new node handle on this bus.
    pub fn node(&self) -> MemoryBrokerNode {
        let id = self.inner.next_node.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded();
        lock(&self.inner.state).nodes.insert(
            id,
            NodeState {
                subscribed: HashSet::new(),
                events: tx,
            },
        );
        MemoryBrokerNode {
            bus: self.clone(),
            id,
            events: Mutex::new(Some(rx)),
        }
    }

    /// While `down`, every call fails with [`BrokerError::Unavailable`]. Coming back up sends
    /// [`BrokerEvent::Resync`] to every node, as a reconnecting real broker would.
    pub fn set_down(&self, down: bool) {
        let was = self.inner.down.swap(down, Ordering::SeqCst);
        if was && !down {
            for node in lock(&self.inner.state).nodes.values() {
                let _ = node.events.unbounded_send(BrokerEvent::Resync);
            }
        }
    }

    /// Forgets every generation handed out, as a Redis restarted without persistence does:
    /// the next claim of each `(client, slot)` gets generation 1 again.
    pub fn forget_generations(&self) {
        lock(&self.inner.state).generations.clear();
    }

    fn check_up(&self) -> Result<(), BrokerError> {
        if self.inner.down.load(Ordering::SeqCst) {
            Err(BrokerError::Unavailable(
                "memory broker switched down".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Sends `event` to every node subscribed to `client`.
    fn fan_out(state: &BusState, client: &ClientId, event: &BrokerEvent) {
        for node in state.nodes.values() {
            if node.subscribed.contains(client) {
                let _ = node.events.unbounded_send(event.clone());
            }
        }
    }
}

/// One node's handle on a [`MemoryBroker`]. Dropping it removes the node's subscriptions, as a
/// crashed node's would vanish.
#[derive(Debug)]
pub struct MemoryBrokerNode {
    bus: MemoryBroker,
    id: u64,
    events: Mutex<Option<UnboundedReceiver<BrokerEvent>>>,
}

impl MemoryBrokerNode {
    fn with_node<T>(&self, f: impl FnOnce(&mut BusState) -> T) -> Result<T, BrokerError> {
        self.bus.check_up()?;
        Ok(f(&mut lock(&self.bus.inner.state)))
    }

    fn subscribe_now(&self, client: &ClientId) -> Result<(), BrokerError> {
        self.with_node(|s| {
            if let Some(n) = s.nodes.get_mut(&self.id) {
                n.subscribed.insert(client.clone());
            }
        })
    }

    fn unsubscribe_now(&self, client: &ClientId) -> Result<(), BrokerError> {
        self.with_node(|s| {
            if let Some(n) = s.nodes.get_mut(&self.id) {
                n.subscribed.remove(client);
            }
        })
    }

    fn notify_now(
        &self,
        client: &ClientId,
        last: MessageId,
        message: Option<&Message>,
    ) -> Result<(), BrokerError> {
        self.with_node(|s| {
            let event = BrokerEvent::Notify {
                client: client.clone(),
                last,
                message: message.cloned(),
            };
            MemoryBroker::fan_out(s, client, &event);
        })
    }

    fn claim_now(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        now_ms: Option<u64>,
    ) -> Result<Generation, BrokerError> {
        self.with_node(|s| {
            let g = s.generations.entry((client.clone(), slot)).or_insert(0);
            *g += 1;
            let generation = Generation(*g);
            if let Some(since_ms) = now_ms {
                let session = OnlineSession {
                    slot,
                    node: node.clone(),
                    generation,
                    since_ms,
                };
                let slots = s.online.entry(client.clone()).or_default();
                match slots.binary_search_by_key(&slot, |(_, o)| o.slot) {
                    Ok(at) => slots[at] = (self.id, session),
                    Err(at) => {
                        // One slot at a time: a client nearly always has one session, and a
                        // first push would make room for four (about 130 bytes more each).
                        slots.reserve_exact(1);
                        slots.insert(at, (self.id, session));
                    }
                }
            }
            let event = BrokerEvent::Claim {
                client: client.clone(),
                slot,
                generation,
                node: node.clone(),
            };
            MemoryBroker::fan_out(s, client, &event);
            generation
        })
    }
}

impl MemoryBrokerNode {
    fn end_session_now(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        generation: Generation,
    ) -> Result<(), BrokerError> {
        self.with_node(|s| {
            if let Some(slots) = s.online.get_mut(client) {
                slots.retain(|(_, o)| {
                    !(o.slot == slot && o.node == *node && o.generation == generation)
                });
                if slots.is_empty() {
                    s.online.remove(client);
                }
            }
        })
    }

    fn sessions_now(&self, client: &ClientId) -> Result<Vec<OnlineSession>, BrokerError> {
        self.with_node(|s| {
            s.online.get(client).map_or_else(Vec::new, |slots| {
                slots
                    .iter()
                    .filter(|(handle, _)| s.nodes.contains_key(handle))
                    .map(|(_, o)| o.clone())
                    .collect()
            })
        })
    }
}

impl Drop for MemoryBrokerNode {
    fn drop(&mut self) {
        lock(&self.bus.inner.state).nodes.remove(&self.id);
    }
}

/// An event stream that ends at once (the second call of `events()`).
struct Ended;

impl Stream for Ended {
    type Item = BrokerEvent;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<BrokerEvent>> {
        Poll::Ready(None)
    }
}

impl Broker for MemoryBrokerNode {
    fn subscribe(&self, client: &ClientId) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.subscribe_now(client))
    }

    fn unsubscribe(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.unsubscribe_now(client))
    }

    fn notify(
        &self,
        client: &ClientId,
        last: MessageId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.notify_now(client, last, None))
    }

    fn notify_message(
        &self,
        client: &ClientId,
        message: &Message,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.notify_now(client, message.id, Some(message)))
    }

    fn claim(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send {
        std::future::ready(self.claim_now(client, slot, node, None))
    }

    fn ping(&self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.bus.check_up())
    }

    fn events(&self) -> BrokerEvents {
        match lock(&self.events).take() {
            Some(rx) => Box::pin(rx),
            None => Box::pin(Ended),
        }
    }

    fn claim_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        now_ms: u64,
    ) -> impl Future<Output = Result<Generation, BrokerError>> + Send {
        std::future::ready(self.claim_now(client, slot, node, Some(now_ms)))
    }

    fn end_session(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
        generation: Generation,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.end_session_now(client, slot, node, generation))
    }

    fn sessions(
        &self,
        client: &ClientId,
    ) -> impl Future<Output = Result<Vec<OnlineSession>, BrokerError>> + Send {
        std::future::ready(self.sessions_now(client))
    }

    fn notify_recall(
        &self,
        push: PushId,
        clients: &[ClientId],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        std::future::ready(self.with_node(|s| {
            for client in clients {
                let event = BrokerEvent::Recall {
                    client: client.clone(),
                    push,
                };
                MemoryBroker::fan_out(s, client, &event);
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::now_or_never;

    fn c(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    fn next_event(s: &mut BrokerEvents) -> Option<BrokerEvent> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match s.as_mut().poll_next(&mut cx) {
            Poll::Ready(e) => e,
            Poll::Pending => None,
        }
    }

    #[test]
    fn broker_fan_out_claims_and_resync() {
        let bus = MemoryBroker::new();
        let n1 = bus.node();
        let n2 = bus.node();
        let mut e1 = n1.events();
        let mut e2 = n2.events();
        let mut again = n1.events();
        assert_eq!(next_event(&mut again), None);
        now_or_never(n1.subscribe(&c("a"))).unwrap();
        now_or_never(n2.notify(&c("a"), MessageId(3))).unwrap();
        assert_eq!(
            next_event(&mut e1),
            Some(BrokerEvent::Notify {
                client: c("a"),
                last: MessageId(3),
                message: None,
            })
        );
        assert_eq!(next_event(&mut e2), None, "n2 is not subscribed");
        let slot = Slot::new(2).unwrap();
        let node = NodeId::new("x").unwrap();
        assert_eq!(
            now_or_never(n2.claim(&c("a"), slot, &node)).unwrap(),
            Generation(1)
        );
        assert_eq!(
            now_or_never(n2.claim(&c("a"), slot, &node)).unwrap(),
            Generation(2)
        );
        assert!(matches!(
            next_event(&mut e1),
            Some(BrokerEvent::Claim {
                generation: Generation(1),
                ..
            })
        ));
        bus.set_down(true);
        assert!(now_or_never(n1.notify(&c("a"), MessageId(4))).is_err());
        bus.set_down(false);
        assert!(matches!(
            next_event(&mut e1),
            Some(BrokerEvent::Claim {
                generation: Generation(2),
                ..
            })
        ));
        assert_eq!(next_event(&mut e1), Some(BrokerEvent::Resync));
        assert_eq!(next_event(&mut e2), Some(BrokerEvent::Resync));
        now_or_never(n1.unsubscribe(&c("a"))).unwrap();
        now_or_never(n2.notify(&c("a"), MessageId(5))).unwrap();
        assert_eq!(next_event(&mut e1), None);
        drop(n1);
        assert_eq!(lock(&bus.inner.state).nodes.len(), 1);
    }
}
