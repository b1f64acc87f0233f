//! The broker half of the contract suite: [`broker_suite`] and its checks of a [`Broker`], with
//! bounded waiting on event streams.

use std::future::{Future, poll_fn};
use std::task::Poll;
use std::time::Duration;

use super::{ContractConfig, check, ok, slot};
use crate::ids::{Generation, MessageId, NodeId};
use crate::message::{Message, Payload};
use crate::ports::{Broker, BrokerEvent, BrokerEvents};

/// Runs every broker check. `make(n)` builds `n` node handles on one fresh, shared bus (called
/// once per check); `sleep(d)` returns a future that completes after `d` on the caller's
/// runtime (a ready future for a synchronous broker).
///
/// [`BrokerEvent::Resync`] events are skipped wherever they come: a real broker may reconnect.
///
/// # Panics
/// When a check fails, with a message naming it.
pub async fn broker_suite<B, F, Fut, Z, ZFut>(cfg: &ContractConfig, mut make: F, sleep: Z)
where
    B: Broker,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Vec<B>>,
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    let w = Waiter { cfg, sleep: &sleep };
    let (b, _e) = nodes(&mut make, 1).await;
    broker_ping(&b).await;
    let (b, mut e) = nodes(&mut make, 3).await;
    broker_notify(&w, &b, &mut e).await;
    let (b, _e) = nodes(&mut make, 2).await;
    broker_claim_generations(cfg, &b).await;
    let (b, mut e) = nodes(&mut make, 3).await;
    broker_claim_events(&w, &b, &mut e).await;
    let (b, _e) = nodes(&mut make, 1).await;
    broker_events_once(&w, &b).await;
}

/// `n` node handles on a fresh bus, and their event streams (taken at once).
async fn nodes<B, F, Fut>(make: &mut F, n: usize) -> (Vec<B>, Vec<BrokerEvents>)
where
    B: Broker,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Vec<B>>,
{
    let handles = make(n).await;
    assert_eq!(
        handles.len(),
        n,
        "contract suite: the broker factory built {} nodes, asked for {n}",
        handles.len()
    );
    let events = handles.iter().map(|b| b.events()).collect();
    (handles, events)
}

/// Bounded waiting on event streams with the caller's sleep.
struct Waiter<'a, Z> {
    /// Timeout, settle time and step.
    cfg: &'a ContractConfig,
    /// The caller's sleep.
    sleep: &'a Z,
}

/// What one look at a stream found.
enum Look {
    /// An event (never `Resync`).
    Event(BrokerEvent),
    /// The stream ended.
    Ended,
    /// Nothing yet.
    Nothing,
}

/// Takes what the stream has ready now, skipping `Resync`.
async fn look(events: &mut BrokerEvents) -> Look {
    poll_fn(|cx| {
        loop {
            return match events.as_mut().poll_next(cx) {
                Poll::Ready(Some(BrokerEvent::Resync)) => continue,
                Poll::Ready(Some(ev)) => Poll::Ready(Look::Event(ev)),
                Poll::Ready(None) => Poll::Ready(Look::Ended),
                Poll::Pending => Poll::Ready(Look::Nothing),
            };
        }
    })
    .await
}

impl<Z, ZFut> Waiter<'_, Z>
where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    /// Looks at `events` until an event comes, the stream ends, or `limit` has passed.
    async fn wait(&self, events: &mut BrokerEvents, limit: Duration) -> Look {
        let step = self.cfg.poll_step.max(Duration::from_millis(1));
        let mut waited = Duration::ZERO;
        loop {
            match look(events).await {
                Look::Nothing => {}
                found => return found,
            }
            if waited >= limit {
                return Look::Nothing;
            }
            (self.sleep)(step).await;
            waited += step;
        }
    }

    /// The next event, waiting up to the timeout.
    async fn expect(
        &self,
        check: &str,
        node: usize,
        events: &mut BrokerEvents,
        want: &str,
    ) -> BrokerEvent {
        match self.wait(events, self.cfg.timeout).await {
            Look::Event(ev) => ev,
            Look::Ended => panic!(
                "contract check {check} failed: node {node}'s event stream ended while waiting for {want}"
            ),
            Look::Nothing => panic!(
                "contract check {check} failed: node {node} got no event within {:?}, expected {want}",
                self.cfg.timeout
            ),
        }
    }

    /// Waits the settle time and checks that no event came.
    async fn expect_none(&self, check: &str, node: usize, events: &mut BrokerEvents, why: &str) {
        match self.wait(events, self.cfg.settle).await {
            Look::Event(ev) => panic!(
                "contract check {check} failed: node {node} got {ev:?}, expected nothing ({why})"
            ),
            Look::Ended => {
                panic!("contract check {check} failed: node {node}'s event stream ended ({why})")
            }
            Look::Nothing => {}
        }
    }
}

/// `ping` answers.
async fn broker_ping<B: Broker>(nodes: &[B]) {
    for n in nodes {
        ok("broker::ping", "ping", n.ping().await);
    }
}

/// Notify reaches every subscribed node (the notifier's own included) exactly once, and no
/// other node; subscribing twice is the same as once; unsubscribe stops delivery.
async fn broker_notify<B: Broker, Z, ZFut>(
    w: &Waiter<'_, Z>,
    nodes: &[B],
    events: &mut [BrokerEvents],
) where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    const C: &str = "broker::notify";
    let [n0, n1, n2] = nodes else {
        unreachable!("three nodes were built")
    };
    let [e0, e1, e2] = events else {
        unreachable!("three nodes were built")
    };
    let a = w.cfg.client("-notify-a");
    let other = w.cfg.client("-notify-other");
    ok(C, "subscribe", n0.subscribe(&a).await);
    ok(C, "subscribe again", n0.subscribe(&a).await);
    ok(C, "subscribe", n1.subscribe(&a).await);
    ok(C, "subscribe", n2.subscribe(&other).await);
    ok(
        C,
        "unsubscribe of a client never subscribed",
        n2.unsubscribe(&a).await,
    );

    ok(C, "notify", n0.notify(&a, MessageId(7)).await);
    let want = BrokerEvent::Notify {
        client: a.clone(),
        last: MessageId(7),
        message: None,
    };
    for (i, e) in [(0, &mut *e0), (1, &mut *e1)] {
        let got = w.expect(C, i, e, "Notify(a, 7)").await;
        check!(C, got == want, "node {i} got {got:?}, expected {want:?}");
    }
    w.expect_none(C, 0, e0, "subscribing twice must deliver once")
        .await;
    w.expect_none(C, 2, e2, "node 2 is not subscribed to a")
        .await;

    ok(C, "unsubscribe", n1.unsubscribe(&a).await);
    ok(C, "notify", n2.notify(&a, MessageId(8)).await);
    let got = w.expect(C, 0, e0, "Notify(a, 8)").await;
    let want = BrokerEvent::Notify {
        client: a.clone(),
        last: MessageId(8),
        message: None,
    };
    check!(C, got == want, "node 0 got {got:?}, expected {want:?}");
    w.expect_none(C, 1, e1, "node 1 unsubscribed from a").await;
    w.expect_none(C, 2, e2, "node 2 notified a but is not subscribed to it")
        .await;

    ok(C, "notify", n0.notify(&other, MessageId(1)).await);
    let got = w.expect(C, 2, e2, "Notify(other, 1)").await;
    let want = BrokerEvent::Notify {
        client: other.clone(),
        last: MessageId(1),
        message: None,
    };
    check!(C, got == want, "node 2 got {got:?}, expected {want:?}");
    w.expect_none(C, 0, e0, "node 0 is not subscribed to other")
        .await;

    // A notification with the message attached: the same event, the message carried intact
    // or dropped (a broker may always send the id alone).
    let msg = Message {
        id: MessageId(2),
        from: "contract".into(),
        channel: vec!["topic".into()],
        data: Payload::from_json(r#"{"n":[1,"two"]}"#).expect("valid JSON"),
        ts: 1_700_000_000_123,
        push: None,
    };
    ok(C, "notify_message", n1.notify_message(&other, &msg).await);
    let got = w
        .expect(C, 2, e2, "Notify(other, 2) with its message")
        .await;
    let carried = match &got {
        BrokerEvent::Notify {
            client,
            last,
            message,
        } if client == &other && *last == MessageId(2) => message.as_ref(),
        _ => {
            check!(C, false, "node 2 got {got:?}, expected Notify(other, 2)");
            None
        }
    };
    if let Some(m) = carried {
        check!(
            C,
            *m == msg,
            "the message arrived as {m:?}, sent as {msg:?}"
        );
    }
    w.expect_none(C, 0, e0, "node 0 is not subscribed to other")
        .await;

    // The notifications of one push, sent together: each reaches its client's subscribers.
    let notes = [
        (
            a.clone(),
            Message {
                id: MessageId(9),
                ..msg.clone()
            },
        ),
        (
            other.clone(),
            Message {
                id: MessageId(3),
                ..msg.clone()
            },
        ),
    ];
    ok(C, "notify_messages", n1.notify_messages(&notes).await);
    for (i, e, (client, m)) in [(0, &mut *e0, &notes[0]), (2, &mut *e2, &notes[1])] {
        let got = w.expect(C, i, e, "Notify of notify_messages").await;
        let fits = match &got {
            BrokerEvent::Notify {
                client: c,
                last,
                message,
            } => c == client && *last == m.id && message.as_ref().is_none_or(|x| x == m),
            _ => false,
        };
        check!(
            C,
            fits,
            "node {i} got {got:?}, expected Notify({client}, {})",
            m.id
        );
        w.expect_none(C, i, e, "one notification per client").await;
    }
}

/// Claims take generations strictly increasing per `(client, slot)`, starting at 1 for a
/// fresh pair, independent per slot and per client.
async fn broker_claim_generations<B: Broker>(cfg: &ContractConfig, nodes: &[B]) {
    const C: &str = "broker::claim_generations";
    let [n0, n1] = nodes else {
        unreachable!("two nodes were built")
    };
    let a = cfg.client("-gen-a");
    let b = cfg.client("-gen-b");
    let id0 = node_id("node-0");
    let id1 = node_id("node-1");
    let mut last = Generation(0);
    for round in 0..4 {
        let (n, id) = if round % 2 == 0 {
            (n0, &id0)
        } else {
            (n1, &id1)
        };
        let g = ok(C, "claim", n.claim(&a, slot(0), id).await);
        check!(
            C,
            g > last,
            "claim {round} of (a, 0) got {g}, not above {last}"
        );
        if round == 0 {
            check!(
                C,
                g == Generation(1),
                "first claim of a fresh (a, 0) got {g}, expected 1"
            );
        }
        last = g;
    }
    let g = ok(C, "claim", n1.claim(&a, slot(5), &id1).await);
    check!(
        C,
        g == Generation(1),
        "first claim of (a, 5) after claims of (a, 0) got {g}, expected 1"
    );
    let g = ok(C, "claim", n0.claim(&b, slot(0), &id0).await);
    check!(
        C,
        g == Generation(1),
        "first claim of (b, 0) after claims of a got {g}, expected 1"
    );
    let g = ok(C, "claim", n0.claim(&a, slot(0), &id0).await);
    check!(
        C,
        g > last,
        "claim of (a, 0) after other pairs got {g}, not above {last}"
    );
}

/// A claim's event reaches every subscribed node, the claimer's own included, with the slot,
/// generation and node of the claim; unsubscribed nodes get nothing.
async fn broker_claim_events<B: Broker, Z, ZFut>(
    w: &Waiter<'_, Z>,
    nodes: &[B],
    events: &mut [BrokerEvents],
) where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    const C: &str = "broker::claim_events";
    let [n0, n1, n2] = nodes else {
        unreachable!("three nodes were built")
    };
    let [e0, e1, e2] = events else {
        unreachable!("three nodes were built")
    };
    let a = w.cfg.client("-claimev-a");
    ok(C, "subscribe", n0.subscribe(&a).await);
    ok(C, "subscribe", n1.subscribe(&a).await);
    let id1 = node_id("node-1");
    let g1 = ok(C, "claim", n1.claim(&a, slot(2), &id1).await);
    let g2 = ok(C, "claim", n0.claim(&a, slot(2), &node_id("node-0")).await);
    let g3 = ok(C, "claim", n2.claim(&a, slot(9), &node_id("node-2")).await);
    let want = [
        BrokerEvent::Claim {
            client: a.clone(),
            slot: slot(2),
            generation: g1,
            node: id1.clone(),
        },
        BrokerEvent::Claim {
            client: a.clone(),
            slot: slot(2),
            generation: g2,
            node: node_id("node-0"),
        },
        BrokerEvent::Claim {
            client: a.clone(),
            slot: slot(9),
            generation: g3,
            node: node_id("node-2"),
        },
    ];
    for (i, e) in [(0, &mut *e0), (1, &mut *e1)] {
        let mut got = Vec::new();
        for _ in 0..want.len() {
            got.push(w.expect(C, i, e, "a claim of a").await);
        }
        // Claims of different slots may be reordered by a sharded broker; sort to compare.
        let key = |ev: &BrokerEvent| match ev {
            BrokerEvent::Claim {
                slot, generation, ..
            } => (slot.get(), generation.0),
            _ => (u8::MAX, u64::MAX),
        };
        got.sort_by_key(key);
        let mut sorted = want.to_vec();
        sorted.sort_by_key(key);
        check!(
            C,
            got == sorted,
            "node {i} got {got:?}, expected {sorted:?}"
        );
        w.expect_none(C, i, e, "three claims make three events")
            .await;
    }
    w.expect_none(C, 2, e2, "node 2 claimed but is not subscribed to a")
        .await;
}

/// The first `events()` took the stream; a later call gets a stream that ends.
async fn broker_events_once<B: Broker, Z, ZFut>(w: &Waiter<'_, Z>, nodes: &[B])
where
    Z: Fn(Duration) -> ZFut,
    ZFut: Future<Output = ()>,
{
    const C: &str = "broker::events_once";
    let n0 = &nodes[0];
    let mut second = n0.events();
    match w.wait(&mut second, w.cfg.timeout).await {
        Look::Ended => {}
        Look::Event(ev) => {
            panic!("contract check {C} failed: the second events() stream yielded {ev:?}")
        }
        Look::Nothing => panic!(
            "contract check {C} failed: the second events() stream did not end within {:?}",
            w.cfg.timeout
        ),
    }
}

fn node_id(s: &str) -> NodeId {
    NodeId::new(s).unwrap_or_else(|e| panic!("contract suite: {e}"))
}
