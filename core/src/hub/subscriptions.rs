//! The broker subscriptions of this node: one per client, held by its sessions and its
//! watchers, taken for the first holder and released after the last.

use std::time::Instant;

use std::collections::BTreeSet;

use super::session::Phase;
use super::timers::Timer;
use super::{Hub, Purpose};
use crate::ids::ClientId;
use crate::io::{BrokerOp, ConnId, Output, WatchId};

/// The broker subscription of one client on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sub {
    Unsubscribed,
    Subscribing,
    /// The last attempt failed; a retry timer is set.
    Retrying,
    Subscribed,
    /// Unsubscribe under way; `resubscribe` = a session arrived meanwhile.
    Unsubscribing {
        resubscribe: bool,
    },
}

/// What this node holds for one client: the holders of its broker subscription (sessions
/// and watchers) and the subscription's state.
#[derive(Debug)]
pub(super) struct ClientEntry {
    /// Its sessions on this node, in order (a client has one or a few: a list costs an
    /// idle connection less than a set).
    pub(super) conns: Vec<ConnId>,
    /// Its watchers on this node (ordered: they are woken in a fixed order).
    pub(super) watchers: BTreeSet<WatchId>,
    pub(super) sub: Sub,
    /// Consecutive failed subscribe attempts, for backoff.
    pub(super) failures: u32,
}

impl ClientEntry {
    pub(super) fn new() -> ClientEntry {
        ClientEntry {
            conns: Vec::new(),
            watchers: BTreeSet::new(),
            sub: Sub::Unsubscribed,
            failures: 0,
        }
    }

    /// Nothing on this node needs the subscription any more.
    pub(super) fn unused(&self) -> bool {
        self.conns.is_empty() && self.watchers.is_empty()
    }
}

impl Hub {
    pub(super) fn watch(&mut self, watch: WatchId, client: ClientId) {
        if self.watches.contains_key(&watch) {
            log::warn!("watch of {watch} which already watches: ignored");
            return;
        }
        self.watches.insert(watch, client.clone());
        self.clients
            .entry(client.clone())
            .or_insert_with(ClientEntry::new)
            .watchers
            .insert(watch);
        // Already subscribed: every notification from now on reaches the watcher.
        // Otherwise the watcher is woken once the subscription starts.
        self.hold(client);
    }

    /// Makes sure `client`'s subscription is (or is being) taken, for a holder just added to
    /// its entry. True when it is in place already.
    pub(super) fn hold(&mut self, client: ClientId) -> bool {
        let Some(entry) = self.clients.get_mut(&client) else {
            return false;
        };
        match entry.sub {
            Sub::Subscribed => return true,
            Sub::Unsubscribed => {
                entry.sub = Sub::Subscribing;
                self.request_broker(
                    BrokerOp::Subscribe {
                        client: client.clone(),
                    },
                    Purpose::Subscribe { client },
                );
            }
            Sub::Unsubscribing { .. } => entry.sub = Sub::Unsubscribing { resubscribe: true },
            Sub::Subscribing | Sub::Retrying => {}
        }
        false
    }

    /// After a holder of `client`'s subscription left: releases the subscription when nothing
    /// on this node needs it any more.
    pub(super) fn let_go(&mut self, client: &ClientId) {
        let Some(entry) = self.clients.get_mut(client) else {
            return;
        };
        if !entry.unused() {
            return;
        }
        match entry.sub {
            Sub::Subscribed => {
                self.release(client.clone());
                return;
            }
            Sub::Unsubscribing { .. } => entry.sub = Sub::Unsubscribing { resubscribe: false },
            // Finishes (or is dropped) when its result or timer comes.
            Sub::Subscribing | Sub::Retrying | Sub::Unsubscribed => {}
        }
        if entry.sub == Sub::Retrying || entry.sub == Sub::Unsubscribed {
            self.clients.remove(client);
            self.claims.forget(client);
        }
    }

    /// Tells every watcher of `client` to read again.
    pub(super) fn wake(&mut self, client: &ClientId) {
        if let Some(e) = self.clients.get(client) {
            for &watch in &e.watchers {
                self.outputs.push_back(Output::Wake { watch });
            }
        }
    }

    pub(super) fn release(&mut self, client: ClientId) {
        if let Some(e) = self.clients.get_mut(&client) {
            e.sub = Sub::Unsubscribing { resubscribe: false };
        }
        self.request_broker(
            BrokerOp::Unsubscribe {
                client: client.clone(),
            },
            Purpose::Unsubscribe { client },
        );
    }

    pub(super) fn subscribe_done(&mut self, now: Instant, client: ClientId, ok: bool) {
        let Some(entry) = self.clients.get_mut(&client) else {
            return;
        };
        if !ok {
            entry.failures += 1;
            entry.sub = Sub::Retrying;
            let n = entry.failures;
            log::warn!("subscribe of {client} failed, retrying");
            let delay = self.backoff(n);
            self.set_timer(now, delay, Timer::RetrySubscribe { client });
            return;
        }
        entry.failures = 0;
        entry.sub = Sub::Subscribed;
        if entry.unused() {
            self.release(client);
            return;
        }
        // Pushes stored before the subscription started were not notified to this node.
        self.wake(&client);
        let Some(entry) = self.clients.get(&client) else {
            return;
        };
        let conns = entry.conns.clone();
        for conn in conns {
            if self
                .sessions
                .get(&conn)
                .is_some_and(|s| s.phase == Phase::Subscribing)
            {
                self.request_claim(conn, false);
            }
        }
    }

    pub(super) fn unsubscribe_done(&mut self, client: ClientId, ok: bool) {
        if !ok {
            // A stale subscription only brings events nobody needs; they are ignored.
            log::warn!("unsubscribe of {client} failed; its events will be ignored");
        }
        let Some(entry) = self.clients.get_mut(&client) else {
            return;
        };
        match entry.sub {
            Sub::Unsubscribing { resubscribe: true } if !entry.unused() => {
                self.resubscribe(client);
            }
            _ => {
                if entry.unused() {
                    self.clients.remove(&client);
                    self.claims.forget(&client);
                } else {
                    self.resubscribe(client);
                }
            }
        }
    }

    pub(super) fn resubscribe(&mut self, client: ClientId) {
        if let Some(e) = self.clients.get_mut(&client) {
            e.sub = Sub::Subscribing;
        }
        self.request_broker(
            BrokerOp::Subscribe {
                client: client.clone(),
            },
            Purpose::Subscribe { client },
        );
    }
}
