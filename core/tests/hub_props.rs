//! Property tests: random input sequences against one Hub, including duplicated, late,
//! unknown and failed inputs. Whatever happens: no panic, outputs only name live
//! connections, delivered ids strictly increase per connection, and no more than the window
//! (one in commit mode) is in flight.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use herald_core::{
    AckId, BrokerError, BrokerEvent, BrokerOp, BrokerReply, ClientId, ConnId, Generation, Hub,
    HubConfig, Identity, Input, Message, MessageId, Mode, NodeId, Output, Payload, RequestId, Slot,
    StoreError, StoreOp, StoreReply,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Action {
    Connect {
        conn: u64,
        client: u8,
        slot: u8,
        commit: bool,
    },
    Disconnect {
        conn: u64,
    },
    AckOutstanding {
        conn: u64,
        pick: usize,
    },
    AckBogus {
        conn: u64,
        ack: u64,
    },
    Commit {
        conn: u64,
        n: u64,
    },
    FinishStore {
        pick: usize,
        ok: bool,
        count: usize,
        garbage: bool,
        keep: bool,
    },
    FinishBroker {
        pick: usize,
        ok: bool,
        generation: u64,
        keep: bool,
    },
    Notify {
        client: u8,
        last: u64,
    },
    Claim {
        client: u8,
        slot: u8,
        generation: u64,
    },
    Resync,
    Advance {
        ms: u64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0..8u64, 0..3u8, 0..2u8, any::<bool>()).prop_map(|(conn, client, slot, commit)| {
            Action::Connect {
                conn,
                client,
                slot,
                commit,
            }
        }),
        (0..8u64).prop_map(|conn| Action::Disconnect { conn }),
        (0..8u64, any::<usize>()).prop_map(|(conn, pick)| Action::AckOutstanding { conn, pick }),
        (0..8u64, any::<u64>()).prop_map(|(conn, ack)| Action::AckBogus { conn, ack }),
        (0..8u64, 0..4u64).prop_map(|(conn, n)| Action::Commit { conn, n }),
        (
            any::<usize>(),
            prop::bool::weighted(0.8),
            0..6usize,
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.05)
        )
            .prop_map(|(pick, ok, count, garbage, keep)| Action::FinishStore {
                pick,
                ok,
                count,
                garbage,
                keep
            }),
        (
            any::<usize>(),
            prop::bool::weighted(0.8),
            1..6u64,
            prop::bool::weighted(0.05)
        )
            .prop_map(|(pick, ok, generation, keep)| Action::FinishBroker {
                pick,
                ok,
                generation,
                keep
            }),
        (0..3u8, 0..40u64).prop_map(|(client, last)| Action::Notify { client, last }),
        (0..3u8, 0..2u8, 1..8u64).prop_map(|(client, slot, generation)| Action::Claim {
            client,
            slot,
            generation
        }),
        Just(Action::Resync),
        (0..70_000u64).prop_map(|ms| Action::Advance { ms }),
    ]
}

fn client(n: u8) -> ClientId {
    ClientId::new(&format!("c{n}")).unwrap()
}

fn msg(id: u64) -> Message {
    Message {
        id: MessageId(id),
        from: "p".into(),
        channel: vec![],
        data: Payload::from_json("true").unwrap(),
        ts: 0,
        push: None,
    }
}

struct Model {
    window: usize,
    /// Connections the caller considers live (connected, not ended by either side).
    live: HashSet<ConnId>,
    used: HashSet<ConnId>,
    modes: HashMap<ConnId, Mode>,
    last_id: HashMap<ConnId, MessageId>,
    /// Ack mode: outstanding batches (ack id, size); commit mode: sizes of uncommitted.
    outstanding: HashMap<ConnId, Vec<(Option<AckId>, usize)>>,
    store_reqs: Vec<(RequestId, StoreOp)>,
    broker_reqs: Vec<(RequestId, BrokerOp)>,
}

impl Model {
    fn absorb(&mut self, hub: &mut Hub) -> Result<(), TestCaseError> {
        while let Some(out) = hub.poll_output() {
            match out {
                Output::Deliver {
                    conn,
                    ack,
                    messages,
                } => {
                    prop_assert!(self.live.contains(&conn), "delivery to dead {conn:?}");
                    let mode = self.modes[&conn];
                    prop_assert_eq!(ack.is_some(), mode == Mode::Ack, "ack id iff ack mode");
                    let last = self.last_id.entry(conn).or_default();
                    for m in &messages {
                        prop_assert!(m.id > *last, "{conn:?}: id {} after {}", m.id, last);
                        *last = m.id;
                    }
                    if !messages.is_empty() {
                        let o = self.outstanding.entry(conn).or_default();
                        o.push((ack, messages.len()));
                        let in_flight: usize = o.iter().map(|(_, n)| n).sum();
                        let max = if mode == Mode::Ack { self.window } else { 1 };
                        prop_assert!(in_flight <= max, "{conn:?}: {in_flight} in flight > {max}");
                    }
                }
                Output::Kick { conn, .. } | Output::Close { conn, .. } => {
                    prop_assert!(self.live.remove(&conn), "end of dead {conn:?}");
                }
                Output::Wake { watch } => prop_assert!(false, "{watch:?} woken: nobody watches"),
                Output::Store { req, op } => self.store_reqs.push((req, op)),
                Output::Broker { req, op } => self.broker_reqs.push((req, op)),
            }
        }
        Ok(())
    }
}

fn run(actions: Vec<Action>, window: usize) -> Result<(), TestCaseError> {
    let mut cfg = HubConfig::new(NodeId::new("p").unwrap());
    cfg.window = window;
    cfg.load_limit = 3;
    let mut hub = Hub::new(cfg);
    #[allow(clippy::disallowed_methods, reason = "a test's base instant")]
    let mut now = Instant::now();
    let mut m = Model {
        window,
        live: HashSet::new(),
        used: HashSet::new(),
        modes: HashMap::new(),
        last_id: HashMap::new(),
        outstanding: HashMap::new(),
        store_reqs: Vec::new(),
        broker_reqs: Vec::new(),
    };
    for a in actions {
        match a {
            Action::Connect {
                conn,
                client: c,
                slot,
                commit,
            } => {
                let conn = ConnId(conn);
                if m.used.insert(conn) {
                    let mode = if commit { Mode::Commit } else { Mode::Ack };
                    m.live.insert(conn);
                    m.modes.insert(conn, mode);
                    let identity = Identity {
                        client: client(c),
                        slot: Slot::new(slot.into()).unwrap(),
                        mode,
                    };
                    hub.handle(now, Input::Connect { conn, identity });
                }
            }
            Action::Disconnect { conn } => {
                let conn = ConnId(conn);
                m.live.remove(&conn);
                hub.handle(now, Input::Disconnect { conn });
            }
            Action::AckOutstanding { conn, pick } => {
                let conn = ConnId(conn);
                if let Some(o) = m.outstanding.get_mut(&conn).filter(|o| !o.is_empty()) {
                    let i = pick % o.len();
                    if let (Some(ack), _) = o[i] {
                        o.remove(i);
                        hub.handle(now, Input::Ack { conn, ack });
                    }
                }
            }
            Action::AckBogus { conn, ack } => hub.handle(
                now,
                Input::Ack {
                    conn: ConnId(conn),
                    ack: AckId(ack),
                },
            ),
            Action::Commit { conn, n } => {
                let conn = ConnId(conn);
                if let Some(o) = m.outstanding.get_mut(&conn)
                    && m.modes.get(&conn) == Some(&Mode::Commit)
                {
                    let mut left = n as usize;
                    while left > 0 && !o.is_empty() {
                        left = left.saturating_sub(o.remove(0).1);
                    }
                }
                hub.handle(now, Input::Commit { conn, n });
            }
            Action::FinishStore {
                pick,
                ok,
                count,
                garbage,
                keep,
            } => {
                if !m.store_reqs.is_empty() {
                    let i = pick % m.store_reqs.len();
                    let (req, op) = if keep {
                        m.store_reqs[i].clone()
                    } else {
                        m.store_reqs.remove(i)
                    };
                    let result = if !ok {
                        Err(StoreError::Unavailable("prop".into()))
                    } else {
                        match op {
                            StoreOp::Unacked { after, limit, .. } => {
                                let start = if garbage {
                                    after.0.saturating_sub(2)
                                } else {
                                    after.0 + 1
                                };
                                Ok(StoreReply::Messages(
                                    (start..start + count.min(limit) as u64).map(msg).collect(),
                                ))
                            }
                            StoreOp::Ack { .. } => Ok(StoreReply::Acked),
                            StoreOp::Receipts { .. } => Ok(StoreReply::Recorded),
                        }
                    };
                    hub.handle(now, Input::StoreDone { req, result });
                }
            }
            Action::FinishBroker {
                pick,
                ok,
                generation,
                keep,
            } => {
                if !m.broker_reqs.is_empty() {
                    let i = pick % m.broker_reqs.len();
                    let (req, op) = if keep {
                        m.broker_reqs[i].clone()
                    } else {
                        m.broker_reqs.remove(i)
                    };
                    let result = if !ok {
                        Err(BrokerError::Unavailable("prop".into()))
                    } else {
                        Ok(match op {
                            BrokerOp::Subscribe { .. } => BrokerReply::Subscribed,
                            BrokerOp::Unsubscribe { .. } => BrokerReply::Unsubscribed,
                            BrokerOp::Claim { .. } => BrokerReply::Claimed(Generation(generation)),
                            BrokerOp::EndSession { .. } => BrokerReply::SessionEnded,
                        })
                    };
                    hub.handle(now, Input::BrokerDone { req, result });
                }
            }
            Action::Notify { client: c, last } => hub.handle(
                now,
                Input::Broker(BrokerEvent::Notify {
                    client: client(c),
                    last: MessageId(last),
                    message: None,
                }),
            ),
            Action::Claim {
                client: c,
                slot,
                generation,
            } => hub.handle(
                now,
                Input::Broker(BrokerEvent::Claim {
                    client: client(c),
                    slot: Slot::new(slot.into()).unwrap(),
                    generation: Generation(generation),
                    node: NodeId::new("other").unwrap(),
                }),
            ),
            Action::Resync => hub.handle(now, Input::Broker(BrokerEvent::Resync)),
            Action::Advance { ms } => {
                now += Duration::from_millis(ms);
                hub.handle_timeout(now);
            }
        }
        m.absorb(&mut hub)?;
        if let Some(t) = hub.poll_timeout() {
            prop_assert!(t >= now, "a due timer was left unfired");
        }
    }
    prop_assert_eq!(
        hub.stats().sessions as usize,
        m.live.iter().filter(|c| hub.has_session(**c)).count()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_inputs_keep_the_invariants(
        actions in proptest::collection::vec(action(), 1..200),
        window in 1..5usize,
    ) {
        run(actions, window)?;
    }
}
