use super::*;
use crate::identity::Identity;
use crate::ids::Generation;
use crate::io::{CloseReason, KickReason};
use crate::message::{Message, Payload};
use crate::ports::{BrokerError, StoreError};
use crate::push_id::PushId;
use crate::receipts::{Receipt, ReceiptKind};

fn c(s: &str) -> ClientId {
    ClientId::new(s).unwrap()
}

fn msg(id: u64) -> Message {
    Message {
        id: MessageId(id),
        from: "t".into(),
        channel: vec![],
        data: Payload::from_json("1").unwrap(),
        ts: 0,
        push: None,
    }
}

struct T {
    hub: Hub,
    now: Instant,
}

impl T {
    fn new(window: usize) -> T {
        let mut cfg = HubConfig::new(NodeId::new("n1").unwrap());
        cfg.window = window;
        cfg.load_limit = 4;
        #[allow(clippy::disallowed_methods, reason = "a test's base instant")]
        let now = Instant::now();
        T {
            hub: Hub::new(cfg),
            now,
        }
    }
    fn input(&mut self, i: Input) -> Vec<Output> {
        self.hub.handle(self.now, i);
        std::iter::from_fn(|| self.hub.poll_output()).collect()
    }
    fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        self.hub.handle_timeout(self.now);
        std::iter::from_fn(|| self.hub.poll_output()).collect()
    }
    /// Connects and completes subscribe + claim; returns the outputs after the claim.
    fn live(&mut self, conn: u64, client: &str, slot: i64, mode: Mode, gen_: u64) -> Vec<Output> {
        let out = self.connect(conn, client, slot, mode);
        let mut out = self.answer_broker(out);
        if let Some(req) = claim_req(&out) {
            out = self.input(Input::BrokerDone {
                req,
                result: Ok(BrokerReply::Claimed(Generation(gen_))),
            });
        }
        out
    }
    /// A connection of `client` on `slot` asks for a session.
    fn connect(&mut self, conn: u64, client: &str, slot: i64, mode: Mode) -> Vec<Output> {
        self.input(Input::Connect {
            conn: ConnId(conn),
            identity: Identity {
                client: c(client),
                slot: Slot::new(slot).unwrap(),
                mode,
            },
        })
    }
    /// The client acknowledges the batch `ack` on `conn`.
    fn ack(&mut self, conn: u64, ack: AckId) -> Vec<Output> {
        self.input(Input::Ack {
            conn: ConnId(conn),
            ack,
        })
    }
    /// The client on `conn` commits `n` messages.
    fn commit(&mut self, conn: u64, n: u64) -> Vec<Output> {
        self.input(Input::Commit {
            conn: ConnId(conn),
            n,
        })
    }
    /// The broker says `client`'s queue holds `last` (attached: `message`).
    fn notify(&mut self, client: &str, last: u64, message: Option<Message>) -> Vec<Output> {
        self.input(Input::Broker(BrokerEvent::Notify {
            client: c(client),
            last: MessageId(last),
            message,
        }))
    }
    /// The broker says `node` claimed `client`'s `slot` with `generation`.
    fn claim_seen(&mut self, client: &str, slot: i64, generation: u64, node: &str) -> Vec<Output> {
        self.input(Input::Broker(BrokerEvent::Claim {
            client: c(client),
            slot: Slot::new(slot).unwrap(),
            generation: Generation(generation),
            node: NodeId::new(node).unwrap(),
        }))
    }
    /// Answers the read in `out` with `batch`.
    fn answer_read(&mut self, out: &[Output], batch: Vec<Message>) -> Vec<Output> {
        let (req, _) = load_req(out).expect("a read");
        self.input(Input::StoreDone {
            req,
            result: Ok(StoreReply::Messages(batch)),
        })
    }
    /// Answers the read in `out` with plain messages of these ids.
    fn read(&mut self, out: &[Output], ids: &[u64]) -> Vec<Output> {
        self.answer_read(out, ids.iter().map(|i| msg(*i)).collect())
    }
    /// Answers Subscribe requests with success; returns the rest.
    fn answer_broker(&mut self, out: Vec<Output>) -> Vec<Output> {
        let mut rest = Vec::new();
        for o in out {
            match o {
                Output::Broker {
                    req,
                    op: BrokerOp::Subscribe { .. },
                } => rest.extend(self.input(Input::BrokerDone {
                    req,
                    result: Ok(BrokerReply::Subscribed),
                })),
                other => rest.push(other),
            }
        }
        rest
    }
}

/// The connections `out` kicks.
fn kicked(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Kick { conn, .. } => Some(conn.0),
            _ => None,
        })
        .collect()
}

fn claim_req(out: &[Output]) -> Option<RequestId> {
    out.iter().find_map(|o| match o {
        Output::Broker {
            req,
            op: BrokerOp::Claim { .. },
        } => Some(*req),
        _ => None,
    })
}

fn load_req(out: &[Output]) -> Option<(RequestId, MessageId)> {
    out.iter().find_map(|o| match o {
        Output::Store {
            req,
            op: StoreOp::Unacked { after, .. },
        } => Some((*req, *after)),
        _ => None,
    })
}

fn delivers(out: &[Output]) -> Vec<(Option<AckId>, Vec<u64>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Deliver { ack, messages, .. } => {
                Some((*ack, messages.iter().map(|m| m.id.0).collect()))
            }
            _ => None,
        })
        .collect()
}

fn messages(ids: &[u64]) -> Result<StoreReply, StoreError> {
    Ok(StoreReply::Messages(ids.iter().map(|i| msg(*i)).collect()))
}

#[test]
fn connect_subscribes_claims_then_reads_from_zero() {
    let mut t = T::new(2);
    let out = t.connect(1, "a", 0, Mode::Ack);
    assert!(matches!(
        out.as_slice(),
        [Output::Broker {
            op: BrokerOp::Subscribe { .. },
            ..
        }]
    ));
    let out = t.answer_broker(out);
    assert!(claim_req(&out).is_some());
    assert!(load_req(&out).is_none(), "no read before the claim");
    let req = claim_req(&out).unwrap();
    let out = t.input(Input::BrokerDone {
        req,
        result: Ok(BrokerReply::Claimed(Generation(1))),
    });
    assert_eq!(load_req(&out).map(|l| l.1), Some(MessageId::ZERO));
}

#[test]
fn ack_mode_respects_the_window_and_forwards_acks() {
    let mut t = T::new(2);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    let out = t.read(&out, &[1, 2, 3]);
    let d = delivers(&out);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].1, vec![1, 2], "window of 2");
    // Less than asked: drained, no further read.
    assert!(load_req(&out).is_none());
    let out = t.ack(1, d[0].0.unwrap());
    assert!(out.iter().any(|o| matches!(o, Output::Store { op: StoreOp::Ack { ids, .. }, .. } if ids == &[MessageId(1), MessageId(2)])));
    assert_eq!(delivers(&out)[0].1, vec![3]);
    // The same ack again is ignored.
    let again = t.ack(1, d[0].0.unwrap());
    assert!(again.is_empty());
    // Unknown ack id, unknown conn: ignored.
    assert!(t.ack(1, AckId(9999)).is_empty());
    assert!(t.ack(7, AckId(1)).is_empty());
}

#[test]
fn notify_reads_after_the_cursor() {
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    let out = t.read(&out, &[1]);
    assert_eq!(delivers(&out)[0].1, vec![1]);
    // Notified of something it already has: nothing.
    assert!(t.notify("a", 1, None).is_empty());
    let out = t.notify("a", 2, None);
    let (req, after) = load_req(&out).unwrap();
    assert_eq!(after, MessageId(1));
    // A notification while reading causes one more read.
    let none = t.notify("a", 3, None);
    assert!(load_req(&none).is_none());
    let out = t.input(Input::StoreDone {
        req,
        result: messages(&[1, 2]),
    });
    assert_eq!(
        delivers(&out)[0].1,
        vec![2],
        "ids at or below the cursor are dropped"
    );
    assert_eq!(load_req(&out).map(|l| l.1), Some(MessageId(2)));
}

#[test]
fn a_notified_next_message_is_delivered_without_a_read() {
    let mut t = T::new(2);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    let out = t.read(&out, &[1]);
    let (first_ack, ids) = delivers(&out).remove(0);
    assert_eq!(ids, vec![1]);
    // The next id, attached: delivered at once, no read.
    let out = t.notify("a", 2, Some(msg(2)));
    assert_eq!(delivers(&out).len(), 1);
    let (second_ack, ids) = delivers(&out).remove(0);
    assert_eq!(ids, vec![2]);
    assert!(load_req(&out).is_none(), "no read for a message in hand");
    // The window (2) is full: the next two are buffered (the buffer holds up to a window),
    // still without a read.
    let out = t.notify("a", 3, Some(msg(3)));
    assert!(out.is_empty(), "buffered until an ack makes room: {out:?}");
    let out = t.notify("a", 4, Some(msg(4)));
    assert!(out.is_empty(), "buffered: {out:?}");
    // The buffer is full: the next one is left to the store, read once there is room.
    let out = t.notify("a", 5, Some(msg(5)));
    assert!(out.is_empty(), "no read while the buffer is full: {out:?}");
    let out = t.ack(1, first_ack.expect("ack mode"));
    assert_eq!(
        delivers(&out)[0].1,
        vec![3],
        "room for one: from the buffer"
    );
    let (req, after) = load_req(&out).expect("5 was not taken: read it");
    assert_eq!(after, MessageId(4));
    let out = t.input(Input::StoreDone {
        req,
        result: messages(&[5]),
    });
    assert!(delivers(&out).is_empty(), "the window is full again");
    let out = t.ack(1, second_ack.expect("ack mode"));
    assert_eq!(delivers(&out)[0].1, vec![4]);
    assert!(load_req(&out).is_none(), "the store had nothing beyond 5");
    // An attached message past a gap (7 while the cursor is at 5) is not taken: 6 may
    // still be on its way, so the store is asked.
    let out = t.notify("a", 7, Some(msg(7)));
    let (_, after) = load_req(&out).expect("a read after the gap");
    assert_eq!(after, MessageId(5));
    assert!(delivers(&out).is_empty());
}

#[test]
fn store_failure_retries_with_backoff() {
    let mut t = T::new(8);
    let mut out = t.live(1, "a", 0, Mode::Ack, 1);
    // Each failed read is retried after twice the delay of the one before, not sooner.
    for delay in [100, 200].map(Duration::from_millis) {
        let (req, _) = load_req(&out).unwrap();
        let failed = t.input(Input::StoreDone {
            req,
            result: Err(StoreError::Unavailable("x".into())),
        });
        assert!(failed.is_empty());
        assert_eq!(t.hub.poll_timeout(), Some(t.now + delay));
        assert!(t.advance(delay / 2).is_empty());
        out = t.advance(delay / 2);
    }
    let out = t.read(&out, &[1]);
    assert_eq!(delivers(&out)[0].1, vec![1]);
    assert_eq!(t.hub.stats().store_errors, 2);
}

#[test]
fn failed_ack_writes_are_retried() {
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    let out = t.read(&out, &[1]);
    let ack = delivers(&out)[0].0.unwrap();
    let out = t.ack(1, ack);
    let req = out
        .iter()
        .find_map(|o| match o {
            Output::Store {
                req,
                op: StoreOp::Ack { .. },
            } => Some(*req),
            _ => None,
        })
        .unwrap();
    assert!(
        t.input(Input::StoreDone {
            req,
            result: Err(StoreError::Unavailable("x".into()))
        })
        .is_empty()
    );
    let out = t.advance(Duration::from_millis(100));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Store {
            op: StoreOp::Ack { .. },
            ..
        }
    )));
}

#[test]
fn commit_mode_follows_the_seed_protocol() {
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Commit, 1);
    assert_eq!(
        delivers(&out),
        vec![(None, vec![])],
        "the empty first message"
    );
    let out = t.read(&out, &[1, 2]);
    assert!(
        delivers(&out).is_empty(),
        "nothing until the client commits"
    );
    let out = t.commit(1, 0);
    assert_eq!(delivers(&out), vec![(None, vec![1])]);
    let out = t.commit(1, 1);
    assert!(out.iter().any(|o| matches!(o, Output::Store { op: StoreOp::Ack { ids, .. }, .. } if ids == &[MessageId(1)])));
    assert_eq!(delivers(&out), vec![(None, vec![2])]);
    // An oversized commit acks what is in flight and nothing more.
    let out = t.commit(1, 50);
    assert!(out.iter().any(|o| matches!(o, Output::Store { op: StoreOp::Ack { ids, .. }, .. } if ids == &[MessageId(2)])));
    assert!(delivers(&out).is_empty());
    // The next stored message goes out at once: a commit is owed.
    let out = t.notify("a", 3, None);
    let out = t.read(&out, &[3]);
    assert_eq!(delivers(&out), vec![(None, vec![3])]);
}

#[test]
fn newer_generation_kicks_older_local_and_remote() {
    let mut t = T::new(8);
    t.live(1, "a", 0, Mode::Ack, 1);
    let out = t.live(2, "a", 0, Mode::Ack, 2);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Kick {
            conn: ConnId(1),
            reason: KickReason::Replaced
        }
    )));
    assert!(!t.hub.has_session(ConnId(1)));
    // A claim from another node with a higher generation kicks session 2.
    let out = t.claim_seen("a", 0, 3, "n2");
    assert!(kicked(&out).contains(&2));
    assert_eq!(t.hub.stats().kicks, 2);
    // Other slots are independent.
    t.live(3, "a", 1, Mode::Ack, 1);
    assert!(t.hub.has_session(ConnId(3)));
}

#[test]
fn a_claim_kicks_only_its_own_slot() {
    let mut t = T::new(8);
    t.live(1, "a", 0, Mode::Ack, 1);
    t.live(2, "a", 1, Mode::Ack, 1);
    let out = t.input(Input::Broker(BrokerEvent::Claim {
        client: c("a"),
        slot: Slot::new(0).unwrap(),
        generation: Generation(2),
        node: NodeId::new("n2").unwrap(),
    }));
    let kicked: Vec<ConnId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Kick { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(kicked, vec![ConnId(1)]);
    assert!(t.hub.has_session(ConnId(2)));
}

#[test]
fn a_claim_below_one_seen_is_kicked_at_once() {
    let mut t = T::new(8);
    let out = t.connect(1, "a", 0, Mode::Ack);
    let out = t.answer_broker(out);
    let req = claim_req(&out).unwrap();
    t.claim_seen("a", 0, 5, "n2");
    let out = t.input(Input::BrokerDone {
        req,
        result: Ok(BrokerReply::Claimed(Generation(4))),
    });
    assert!(kicked(&out).contains(&1));
}

#[test]
fn claim_and_subscribe_failures_are_retried() {
    let mut t = T::new(8);
    let out = t.connect(1, "a", 0, Mode::Ack);
    let Output::Broker { req, .. } = &out[0] else {
        panic!()
    };
    let out = t.input(Input::BrokerDone {
        req: *req,
        result: Err(BrokerError::Unavailable("x".into())),
    });
    assert!(out.is_empty());
    let out = t.advance(Duration::from_millis(100));
    let out = t.answer_broker(out);
    let req = claim_req(&out).unwrap();
    assert!(
        t.input(Input::BrokerDone {
            req,
            result: Err(BrokerError::Unavailable("x".into()))
        })
        .is_empty()
    );
    let out = t.advance(Duration::from_millis(100));
    assert!(claim_req(&out).is_some());
}

#[test]
fn last_session_releases_the_subscription() {
    let mut t = T::new(8);
    t.live(1, "a", 0, Mode::Ack, 1);
    t.live(2, "a", 1, Mode::Ack, 1);
    let out = t.input(Input::Disconnect { conn: ConnId(1) });
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::Broker {
            op: BrokerOp::Unsubscribe { .. },
            ..
        }
    )));
    let out = t.input(Input::Disconnect { conn: ConnId(2) });
    let req = out
        .iter()
        .find_map(|o| match o {
            Output::Broker {
                req,
                op: BrokerOp::Unsubscribe { .. },
            } => Some(*req),
            _ => None,
        })
        .unwrap();
    // A session arriving while unsubscribing waits, then subscribes again.
    let out = t.connect(3, "a", 0, Mode::Ack);
    assert!(out.is_empty());
    let out = t.input(Input::BrokerDone {
        req,
        result: Ok(BrokerReply::Unsubscribed),
    });
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Broker {
            op: BrokerOp::Subscribe { .. },
            ..
        }
    )));
    // Disconnects of unknown connections are ignored.
    assert!(t.input(Input::Disconnect { conn: ConnId(99) }).is_empty());
}

fn wakes(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Wake { watch } => Some(watch.0),
            _ => None,
        })
        .collect()
}

fn broker_op(out: &[Output]) -> Option<(RequestId, BrokerOp)> {
    out.iter().find_map(|o| match o {
        Output::Broker { req, op } => Some((*req, op.clone())),
        _ => None,
    })
}

#[test]
fn watchers_share_the_subscription_and_are_woken() {
    let mut t = T::new(8);
    let watch = |n| Input::Watch {
        watch: WatchId(n),
        client: c("a"),
    };
    // The first watcher subscribes; it is woken once the subscription is in place.
    let out = t.input(watch(1));
    let (req, op) = broker_op(&out).expect("a subscribe");
    assert_eq!(op, BrokerOp::Subscribe { client: c("a") });
    assert!(wakes(&out).is_empty());
    let out = t.input(Input::BrokerDone {
        req,
        result: Ok(BrokerReply::Subscribed),
    });
    assert_eq!(wakes(&out), vec![1]);
    // A session and a second watcher share it: no second subscribe.
    t.live(1, "a", 0, Mode::Ack, 1);
    assert!(broker_op(&t.input(watch(2))).is_none());
    assert_eq!((t.hub.stats().sessions, t.hub.stats().watchers), (1, 2));
    // A notification wakes both watchers; a resync too.
    let out = t.notify("a", 1, None);
    assert_eq!(wakes(&out), vec![1, 2]);
    assert_eq!(
        wakes(&t.input(Input::Broker(BrokerEvent::Resync))),
        vec![1, 2]
    );
    // The subscription goes with its last holder, watcher or session.
    assert!(broker_op(&t.input(Input::Unwatch { watch: WatchId(1) })).is_none());
    assert!(broker_op(&t.input(Input::Disconnect { conn: ConnId(1) })).is_none());
    let out = t.input(Input::Unwatch { watch: WatchId(2) });
    let (_, op) = broker_op(&out).expect("an unsubscribe");
    assert_eq!(op, BrokerOp::Unsubscribe { client: c("a") });
    // Unknown and repeated unwatches change nothing.
    assert!(t.input(Input::Unwatch { watch: WatchId(2) }).is_empty());
}

#[test]
fn a_watcher_outlives_a_failed_subscribe() {
    let mut t = T::new(8);
    let out = t.input(Input::Watch {
        watch: WatchId(7),
        client: c("a"),
    });
    let (req, _) = broker_op(&out).unwrap();
    let out = t.input(Input::BrokerDone {
        req,
        result: Err(BrokerError::Unavailable("x".into())),
    });
    assert!(out.is_empty());
    let out = t.advance(Duration::from_millis(100));
    let (req, op) = broker_op(&out).expect("the subscribe is retried for the watcher");
    assert_eq!(op, BrokerOp::Subscribe { client: c("a") });
    let out = t.input(Input::BrokerDone {
        req,
        result: Ok(BrokerReply::Subscribed),
    });
    assert_eq!(wakes(&out), vec![7]);
}

#[test]
fn unacked_batches_time_out() {
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    t.read(&out, &[1]);
    let out = t.advance(Duration::from_secs(60));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Close {
            conn: ConnId(1),
            reason: CloseReason::AckTimeout
        }
    )));
    assert!(!t.hub.has_session(ConnId(1)));
}

#[test]
fn results_for_ended_sessions_are_ignored() {
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    let (req, _) = load_req(&out).unwrap();
    t.input(Input::Disconnect { conn: ConnId(1) });
    let out = t.input(Input::StoreDone {
        req,
        result: messages(&[1]),
    });
    assert!(delivers(&out).is_empty());
    assert!(
        t.input(Input::StoreDone {
            req,
            result: messages(&[1])
        })
        .is_empty()
    );
}

#[test]
fn resync_rereads_every_session() {
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    t.read(&out, &[1]);
    let out = t.input(Input::Broker(BrokerEvent::Resync));
    assert_eq!(load_req(&out).map(|l| l.1), Some(MessageId(1)));
}

#[test]
fn after_a_resync_live_sessions_renew_their_claims_and_a_newer_login_still_wins() {
    let mut t = T::new(8);
    t.live(1, "a", 0, Mode::Ack, 5);
    // The broker comes back empty (a restarted Redis counts from zero again).
    let out = t.input(Input::Broker(BrokerEvent::Resync));
    let renew = claim_req(&out).expect("the live session claims anew");
    // Its own renewed claim, echoed before the answer, does not kick it.
    let out = t.claim_seen("a", 0, 1, "n1");
    assert!(kicked(&out).is_empty());
    let out = t.input(Input::BrokerDone {
        req: renew,
        result: Ok(BrokerReply::Claimed(Generation(1))),
    });
    assert!(kicked(&out).is_empty());
    assert!(t.hub.has_session(ConnId(1)));
    // A login after the resync gets generation 2 and replaces the older session, instead
    // of being refused for being below the generation 5 seen before the reset.
    let out = t.live(2, "a", 0, Mode::Ack, 2);
    assert!(kicked(&out).contains(&1));
    assert!(t.hub.has_session(ConnId(2)));
}

#[test]
fn a_failed_renewal_is_retried_and_the_session_keeps_delivering() {
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Ack, 3);
    t.read(&out, &[]);
    let out = t.input(Input::Broker(BrokerEvent::Resync));
    let renew = claim_req(&out).unwrap();
    let (load, _) = load_req(&out).expect("the resync re-reads too");
    t.input(Input::BrokerDone {
        req: renew,
        result: Err(crate::BrokerError::Unavailable("down".into())),
    });
    // Still live: what the read finds is delivered while the claim is retried.
    let out = t.input(Input::StoreDone {
        req: load,
        result: messages(&[1]),
    });
    let batches: Vec<Vec<u64>> = delivers(&out).into_iter().map(|(_, ids)| ids).collect();
    assert_eq!(batches, vec![vec![1]]);
    let out = t.advance(Duration::from_secs(60));
    assert!(claim_req(&out).is_some(), "the renewal is retried");
}

#[test]
fn redeliveries_are_counted_per_slot() {
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    t.read(&out, &[1, 2]);
    // A newer session of the same slot (kicking the first) gets 1 and 2 again.
    let out = t.live(2, "a", 0, Mode::Ack, 2);
    t.read(&out, &[1, 2, 3]);
    let s = t.hub.stats();
    assert_eq!((s.deliveries, s.redeliveries), (5, 2));
}

/// The acknowledged ids of an ack, and what the session knows acknowledged up to.
fn ack_write(out: &[Output]) -> Option<(Vec<u64>, MessageId)> {
    out.iter().find_map(|o| match o {
        Output::Store {
            op: StoreOp::Ack { ids, through, .. },
            ..
        } => Some((ids.iter().map(|i| i.0).collect(), *through)),
        _ => None,
    })
}

#[test]
fn acks_carry_how_far_everything_is_acknowledged() {
    let mut t = T::new(2);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    let out = t.read(&out, &[3]);
    let (first, _) = delivers(&out).remove(0);
    let out = t.notify("a", 4, Some(msg(4)));
    let (second, _) = delivers(&out).remove(0);
    let out = t.notify("a", 5, Some(msg(5)));
    assert!(
        delivers(&out).is_empty(),
        "5 is buffered: the window is full"
    );
    // Out of order: 3 is still held, so only what lies below it is known acknowledged
    // (ids 1 and 2 were never loaded: acknowledged before, or holes).
    let out = t.ack(1, second.unwrap());
    assert_eq!(ack_write(&out), Some((vec![4], MessageId(2))));
    let (third, ids) = delivers(&out).remove(0);
    assert_eq!(ids, vec![5], "room for 5");
    // 3 now: 5 is still in flight, so everything up to 4.
    let out = t.ack(1, first.unwrap());
    assert_eq!(ack_write(&out), Some((vec![3], MessageId(4))));
    // Nothing held any more: everything up to the cursor.
    let out = t.ack(1, third.unwrap());
    assert_eq!(ack_write(&out), Some((vec![5], MessageId(5))));
}

// ---- the client view (issue 14) -----------------------------------------------------------

fn end_sessions(out: &[Output]) -> Vec<(String, u8, u64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Broker {
                op:
                    BrokerOp::EndSession {
                        client,
                        slot,
                        node,
                        generation,
                    },
                ..
            } => {
                assert_eq!(node.as_str(), "n1", "the Hub's own node");
                Some((client.to_string(), slot.get(), generation.0))
            }
            _ => None,
        })
        .collect()
}

// ---- Issue 14: receipts and recall ---------------------------------------------------------

/// `msg(id)` as a copy of `push`.
fn copy_of(id: u64, push: PushId) -> Message {
    Message {
        push: Some(push),
        ..msg(id)
    }
}

/// The receipts of the drain's one `StoreOp::Receipts`, as (kind, id, push) in order; it must
/// be the drain's last output.
fn receipts(out: &[Output]) -> Vec<(ReceiptKind, u64, PushId)> {
    let found: Vec<&Vec<Receipt>> = out
        .iter()
        .filter_map(|o| match o {
            Output::Store {
                op: StoreOp::Receipts { receipts },
                ..
            } => Some(receipts),
            _ => None,
        })
        .collect();
    assert!(found.len() <= 1, "one receipts call per drain: {out:?}");
    if !found.is_empty() {
        assert!(
            matches!(
                out.last(),
                Some(Output::Store {
                    op: StoreOp::Receipts { .. },
                    ..
                })
            ),
            "the receipts call comes last: {out:?}"
        );
    }
    found
        .into_iter()
        .flatten()
        .map(|r| {
            assert_eq!((r.client.as_str(), r.slot.get(), r.at_ms), ("a", 0, 0));
            (r.kind, r.id.0, r.push)
        })
        .collect()
}

#[test]
fn a_claimed_session_that_ends_leaves_the_registry_and_an_unclaimed_one_has_nothing_to_leave() {
    let mut t = T::new(4);
    t.live(1, "a", 2, Mode::Ack, 7);
    let out = t.input(Input::Disconnect { conn: ConnId(1) });
    assert_eq!(end_sessions(&out), vec![("a".into(), 2, 7)]);
    // A kicked session leaves too (the broker keeps the newer claim's entry).
    t.live(2, "b", 0, Mode::Ack, 3);
    let out = t.claim_seen("b", 0, 4, "n2");
    assert_eq!(end_sessions(&out), vec![("b".into(), 0, 3)]);
    // A session still waiting for its claim has no entry.
    let out = t.connect(3, "d", 1, Mode::Ack);
    t.answer_broker(out);
    let out = t.input(Input::Disconnect { conn: ConnId(3) });
    assert!(end_sessions(&out).is_empty(), "{out:?}");
}

#[test]
fn a_claim_answered_after_its_session_ended_leaves_the_registry() {
    let mut t = T::new(4);
    let out = t.connect(1, "a", 5, Mode::Ack);
    let out = t.answer_broker(out);
    let req = claim_req(&out).expect("a claim");
    let out = t.input(Input::Disconnect { conn: ConnId(1) });
    assert!(end_sessions(&out).is_empty(), "no generation yet: {out:?}");
    // The claim recorded the session online in the broker; its answer comes too late.
    let out = t.input(Input::BrokerDone {
        req,
        result: Ok(BrokerReply::Claimed(Generation(9))),
    });
    assert_eq!(end_sessions(&out), vec![("a".into(), 5, 9)]);
}

/// The request of the receipts call in `out`.
fn receipts_req(out: &[Output]) -> RequestId {
    out.iter()
        .find_map(|o| match o {
            Output::Store {
                req,
                op: StoreOp::Receipts { .. },
            } => Some(*req),
            _ => None,
        })
        .expect("a receipts call")
}

#[test]
fn deliveries_and_acks_of_named_copies_are_reported_one_call_at_a_time() {
    let mut ids = crate::PushIds::new(1);
    let (p, q) = (ids.next(1), ids.next(2));
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    let (req, _) = load_req(&out).unwrap();
    // Copy 2 predates push ids: no receipt for it.
    let batch = vec![copy_of(1, p), msg(2), copy_of(3, q)];
    let out = t.input(Input::StoreDone {
        req,
        result: Ok(StoreReply::Messages(batch)),
    });
    assert_eq!(delivers(&out)[0].1, vec![1, 2, 3]);
    use ReceiptKind::{Acked, Delivered};
    assert_eq!(receipts(&out), vec![(Delivered, 1, p), (Delivered, 3, q)]);
    let first = receipts_req(&out);
    let ack = delivers(&out)[0].0.unwrap();
    // While the first call is under way, the acks' receipts wait for it.
    let out = t.ack(1, ack);
    assert!(receipts(&out).is_empty(), "{out:?}");
    let out = t.input(Input::StoreDone {
        req: first,
        result: Ok(StoreReply::Recorded),
    });
    assert_eq!(receipts(&out), vec![(Acked, 1, p), (Acked, 3, q)]);
    // Recording them failed: logged, never retried.
    let out = t.input(Input::StoreDone {
        req: receipts_req(&out),
        result: Err(StoreError::Unavailable("down".into())),
    });
    assert!(out.is_empty(), "{out:?}");
    assert!(t.advance(Duration::from_secs(60)).is_empty());
}

#[test]
fn commits_report_acked_receipts() {
    let p = crate::PushIds::new(1).next(1);
    let mut t = T::new(8);
    let out = t.live(1, "a", 0, Mode::Commit, 1);
    t.answer_read(&out, vec![copy_of(1, p)]);
    let out = t.commit(1, 0);
    assert_eq!(receipts(&out), vec![(ReceiptKind::Delivered, 1, p)]);
    t.input(Input::StoreDone {
        req: receipts_req(&out),
        result: Ok(StoreReply::Recorded),
    });
    let out = t.commit(1, 1);
    assert_eq!(receipts(&out), vec![(ReceiptKind::Acked, 1, p)]);
}

#[test]
fn a_recall_drops_held_copies_and_later_reads_and_notifications_of_them() {
    let mut ids = crate::PushIds::new(1);
    let (p, q) = (ids.next(1), ids.next(2));
    let mut t = T::new(1);
    let out = t.live(1, "a", 0, Mode::Ack, 1);
    let (req, _) = load_req(&out).unwrap();
    // Window 1: copy 1 goes out, 2 (of p) and 3 (of q) wait in the buffer.
    let out = t.input(Input::StoreDone {
        req,
        result: Ok(StoreReply::Messages(vec![
            copy_of(1, p),
            copy_of(2, p),
            copy_of(3, q),
        ])),
    });
    assert_eq!(delivers(&out)[0].1, vec![1]);
    let ack = delivers(&out)[0].0.unwrap();
    let out = t.input(Input::Broker(BrokerEvent::Recall {
        client: c("a"),
        push: p,
    }));
    assert!(delivers(&out).is_empty(), "{out:?}");
    // The copy in flight may still be acked; the held copy of p is gone, q's comes next.
    let out = t.ack(1, ack);
    assert!(out.iter().any(|o| matches!(o, Output::Store { op: StoreOp::Ack { ids, .. }, .. } if ids == &[MessageId(1)])));
    assert_eq!(delivers(&out)[0].1, vec![3]);
    let ack = delivers(&out)[0].0.unwrap();
    let out = t.ack(1, ack);
    // A notification carrying a copy of p is not delivered: the session reads instead, and
    // a read answered after the recall that still has a copy of p drops it too.
    let out2 = t.notify("a", 4, Some(copy_of(4, p)));
    assert!(
        delivers(&out).is_empty() && delivers(&out2).is_empty(),
        "{out2:?}"
    );
    let (req, after) = load_req(&out)
        .or_else(|| load_req(&out2))
        .expect("a read instead");
    assert_eq!(after, MessageId(3));
    let out = t.input(Input::StoreDone {
        req,
        result: Ok(StoreReply::Messages(vec![copy_of(4, p), msg(5)])),
    });
    assert_eq!(delivers(&out)[0].1, vec![5]);
}
