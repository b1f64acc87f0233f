//! The contract suite's own tests: the memory ports pass it, and brokers or stores that break
//! a rule fail it.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use futures_executor::block_on;

use super::{ContractConfig, broker_suite, store_suite};
use crate::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use crate::memory::{MemoryBroker, MemoryStore};
use crate::message::{Message, NewMessage};
use crate::ports::{Broker, BrokerEvent, BrokerEvents, MessageStore};

/// The output of a future that is ready at once (the memory ports' futures are).
fn ready_now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a memory port's future was not ready"),
    }
}

fn cfg() -> ContractConfig {
    ContractConfig::new("ct-7f3a", 1_764_000_000_000).unwrap()
}

#[test]
fn memory_store_passes_the_store_suite() {
    block_on(store_suite(&cfg(), |r| {
        std::future::ready(MemoryStore::new(r))
    }));
}

#[test]
fn memory_broker_passes_the_broker_suite() {
    block_on(broker_suite(
        &cfg(),
        |n| {
            let bus = MemoryBroker::new();
            std::future::ready((0..n).map(|_| bus.node()).collect::<Vec<_>>())
        },
        |_| std::future::ready(()),
    ));
}

#[test]
fn one_shared_store_passes_with_lower_bound_purge_counts() {
    // As on a shared real database: checks with the same retention share one store.
    let cfg = cfg().exact_purge_counts(false);
    let mut stores = Vec::new();
    block_on(store_suite(&cfg, |r| {
        // The retention of the check still applies: one store per retention, shared.
        let s = match stores.iter().find(|(rr, _)| *rr == r) {
            Some((_, s)) => MemoryStore::clone(s),
            None => {
                let s = MemoryStore::new(r);
                stores.push((r, s.clone()));
                s
            }
        };
        std::future::ready(s)
    }));
}

#[test]
fn run_ids_are_validated() {
    assert!(ContractConfig::new("bad id", 0).is_err());
    assert!(ContractConfig::new(&"a".repeat(100), 0).is_err());
    assert!(ContractConfig::new("ok-1", 0).is_ok());
}

/// A store that breaks one rule: it ignores the slot when acknowledging.
#[derive(Clone)]
struct SlotBlind(MemoryStore);

impl MessageStore for SlotBlind {
    fn append(
        &self,
        msg: &NewMessage,
        recipients: &[ClientId],
        now_ms: u64,
    ) -> impl Future<Output = Result<crate::ports::AppendResult, crate::ports::StoreError>> + Send
    {
        self.0.append(msg, recipients, now_ms)
    }
    fn unacked(
        &self,
        client: &ClientId,
        slot: Slot,
        after: MessageId,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, crate::ports::StoreError>> + Send {
        self.0.unacked(client, slot, after, limit, now_ms)
    }
    fn ack(
        &self,
        client: &ClientId,
        _slot: Slot,
        ids: &[MessageId],
    ) -> impl Future<Output = Result<(), crate::ports::StoreError>> + Send {
        let all: Vec<_> = (0..16).map(|s| Slot::new(s).unwrap()).collect();
        for s in all {
            let _ = ready_now(self.0.ack(client, s, ids));
        }
        std::future::ready(Ok(()))
    }
    fn history(
        &self,
        client: &ClientId,
        since_ms: u64,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Message>, crate::ports::StoreError>> + Send {
        self.0.history(client, since_ms, limit, now_ms)
    }
    fn purge(
        &self,
        now_ms: u64,
    ) -> impl Future<Output = Result<crate::ports::RetentionReport, crate::ports::StoreError>> + Send
    {
        self.0.purge(now_ms)
    }
    fn ping(&self) -> impl Future<Output = Result<(), crate::ports::StoreError>> + Send {
        self.0.ping()
    }
    fn slots(
        &self,
        client: &ClientId,
        also: &[Slot],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<crate::ports::SlotBacklog>, crate::ports::StoreError>> + Send
    {
        self.0.slots(client, also, now_ms)
    }

    fn outbox_add(
        &self,
        events: &[crate::webhook::Event],
        max: u64,
    ) -> impl Future<Output = Result<crate::webhook::OutboxAdded, crate::ports::StoreError>> + Send
    {
        self.0.outbox_add(events, max)
    }
    fn outbox_lease(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        node: &NodeId,
    ) -> impl Future<Output = Result<Vec<crate::webhook::OutboxEntry>, crate::ports::StoreError>> + Send
    {
        self.0.outbox_lease(now_ms, limit, lease, node)
    }
    fn outbox_done(
        &self,
        ids: &[crate::webhook::EventId],
    ) -> impl Future<Output = Result<(), crate::ports::StoreError>> + Send {
        self.0.outbox_done(ids)
    }
    fn outbox_retry(
        &self,
        ids: &[crate::webhook::EventId],
        next_ms: u64,
    ) -> impl Future<Output = Result<(), crate::ports::StoreError>> + Send {
        self.0.outbox_retry(ids, next_ms)
    }
    fn outbox_stats(
        &self,
    ) -> impl Future<Output = Result<crate::webhook::OutboxStats, crate::ports::StoreError>> + Send
    {
        self.0.outbox_stats()
    }
}

#[test]
#[should_panic(expected = "contract check store::ack_per_slot failed")]
fn the_suite_catches_a_slot_blind_store() {
    block_on(store_suite(&cfg(), |r| {
        std::future::ready(SlotBlind(MemoryStore::new(r)))
    }));
}

#[test]
#[should_panic(expected = "contract check broker::notify failed")]
fn the_suite_catches_a_broker_that_delivers_twice() {
    // Each node subscribes through a twin handle too and merges both queues, so every
    // subscribed event arrives twice.
    struct Doubler(
        crate::memory::MemoryBrokerNode,
        crate::memory::MemoryBrokerNode,
    );
    impl Broker for Doubler {
        fn subscribe(
            &self,
            client: &ClientId,
        ) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
            let _ = ready_now(self.1.subscribe(client));
            self.0.subscribe(client)
        }
        fn unsubscribe(
            &self,
            client: &ClientId,
        ) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
            self.0.unsubscribe(client)
        }
        fn notify(
            &self,
            client: &ClientId,
            last: MessageId,
        ) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
            self.0.notify(client, last)
        }
        fn claim(
            &self,
            client: &ClientId,
            slot: Slot,
            node: &NodeId,
        ) -> impl Future<Output = Result<Generation, crate::ports::BrokerError>> + Send {
            self.0.claim(client, slot, node)
        }
        fn ping(&self) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
            self.0.ping()
        }
        fn events(&self) -> BrokerEvents {
            // Both queues merged: a subscription shows up twice.
            use futures_core::Stream;
            use std::pin::Pin;
            use std::task::Context;
            struct Merge(BrokerEvents, BrokerEvents);
            impl Stream for Merge {
                type Item = BrokerEvent;
                fn poll_next(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                ) -> Poll<Option<BrokerEvent>> {
                    match self.0.as_mut().poll_next(cx) {
                        Poll::Ready(Some(ev)) => Poll::Ready(Some(ev)),
                        _ => self.1.as_mut().poll_next(cx),
                    }
                }
            }
            Box::pin(Merge(self.0.events(), self.1.events()))
        }
        fn claim_session(
            &self,
            client: &ClientId,
            slot: Slot,
            node: &NodeId,
            now_ms: u64,
        ) -> impl Future<Output = Result<Generation, crate::ports::BrokerError>> + Send {
            self.0.claim_session(client, slot, node, now_ms)
        }
        fn end_session(
            &self,
            client: &ClientId,
            slot: Slot,
            node: &NodeId,
            generation: Generation,
        ) -> impl Future<Output = Result<(), crate::ports::BrokerError>> + Send {
            self.0.end_session(client, slot, node, generation)
        }
        fn sessions(
            &self,
            client: &ClientId,
        ) -> impl Future<
            Output = Result<Vec<crate::ports::OnlineSession>, crate::ports::BrokerError>,
        > + Send {
            self.0.sessions(client)
        }
    }
    block_on(broker_suite(
        &cfg(),
        |n| {
            let bus = MemoryBroker::new();
            std::future::ready(
                (0..n)
                    .map(|_| Doubler(bus.node(), bus.node()))
                    .collect::<Vec<_>>(),
            )
        },
        |_| std::future::ready(()),
    ));
}
