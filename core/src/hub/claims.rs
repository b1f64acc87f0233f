//! Claim fencing: each session claims the newest generation of its `(client, slot)`; a
//! session below the highest generation seen is kicked; a broker resync starts a new epoch
//! (see the module docs of [`crate::hub`]).

use std::collections::HashMap;
use std::time::Instant;

use super::session::Phase;
use super::{Hub, Purpose};
use crate::identity::Mode;
use crate::ids::{ClientId, Generation, Slot};
use crate::io::{BrokerOp, ConnId, Output};

impl Hub {
    /// Claims a generation for a session: a new one (`renew` false) waits for it before it
    /// delivers; a live one renewing its claim (`renew` true) keeps delivering meanwhile, and
    /// holds no generation until the answer, so that its own renewed claim, echoed by the
    /// broker, does not kick it.
    pub(super) fn request_claim(&mut self, conn: ConnId, renew: bool) {
        let node = self.config.node.clone();
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if renew {
            s.generation = None;
        } else {
            s.phase = Phase::Claiming;
        }
        let (client, slot, sid) = (s.client.clone(), s.slot, s.sid);
        let epoch = self.claims.epoch;
        let key = (client.clone(), slot);
        self.request_broker(
            BrokerOp::Claim { client, slot, node },
            Purpose::Claim {
                conn,
                sid,
                renew,
                epoch,
                key,
            },
        );
    }

    /// The claim of `key` with `generation` by this node no longer holds a session: its entry
    /// in the broker's registry of sessions online goes (if still its own).
    pub(super) fn end_claim(&mut self, key: (ClientId, Slot), generation: Generation) {
        let (client, slot) = key;
        self.request_broker(
            BrokerOp::EndSession {
                client,
                slot,
                node: self.config.node.clone(),
                generation,
            },
            Purpose::EndSession,
        );
    }

    pub(super) fn claimed(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: u64,
        generation: Generation,
        renew: bool,
    ) {
        let Some(s) = self.sessions.get_mut(&conn).filter(|s| s.sid == sid) else {
            return;
        };
        let key = (s.client.clone(), s.slot);
        let high = self.claims.highest(&key);
        if generation < high {
            log::info!(
                "{} slot {} claimed generation {generation} but {high} exists: kicked",
                key.0,
                key.1
            );
            // Held, so that its end removes the entry its claim recorded (if still its own).
            s.generation = Some(generation);
            self.kick(conn);
            return;
        }
        s.generation = Some(generation);
        if !renew {
            s.phase = Phase::Live;
            s.failures = 0;
        }
        let commit_mode = s.mode == Mode::Commit;
        self.claims.seen(&key, generation);
        self.kick_older(&key, generation);
        if renew {
            return;
        }
        if commit_mode {
            // The seed's protocol: an empty `message` right after connect.
            self.outputs.push_back(Output::Deliver {
                conn,
                ack: None,
                messages: Vec::new(),
            });
        }
        self.progress(now, conn);
    }

    /// Kicks local sessions of `key` whose generation is below `generation`.
    pub(super) fn kick_older(&mut self, key: &(ClientId, Slot), generation: Generation) {
        let Some(entry) = self.clients.get(&key.0) else {
            return;
        };
        let older: Vec<ConnId> = entry
            .conns
            .iter()
            .copied()
            .filter(|c| {
                self.sessions
                    .get(c)
                    .filter(|s| s.slot == key.1)
                    .and_then(|s| s.generation)
                    .is_some_and(|g| g < generation)
            })
            .collect();
        for conn in older {
            self.kick(conn);
        }
    }
}

/// The generations seen per `(client, slot)`, and the epoch they belong to.
#[derive(Debug, Default)]
pub(super) struct Claims {
    /// The highest generation seen of each `(client, slot)` in this epoch, from claims of any
    /// node: a local session below it is kicked.
    highest: HashMap<(ClientId, Slot), Generation>,
    /// How many broker resyncs this Hub has seen; claims are tagged with it, and a claim
    /// answered in an older epoch is asked again.
    pub(super) epoch: u64,
}

impl Claims {
    /// The highest generation seen of `key` (zero when none).
    pub(super) fn highest(&self, key: &(ClientId, Slot)) -> Generation {
        self.highest.get(key).copied().unwrap_or_default()
    }

    /// A claim of `key` with `generation` was seen (here or on another node).
    pub(super) fn seen(&mut self, key: &(ClientId, Slot), generation: Generation) {
        let high = self.highest.entry(key.clone()).or_default();
        if generation > *high {
            *high = generation;
        }
    }

    /// The broker may have lost its state: generations seen before mean nothing now.
    pub(super) fn resync(&mut self) {
        self.highest.clear();
        self.epoch += 1;
    }

    /// No session of `client` is left on this node: its generations are not needed.
    pub(super) fn forget(&mut self, client: &ClientId) {
        for n in 0..Slot::COUNT {
            let slot = Slot::new(i64::from(n)).expect("in range");
            self.highest.remove(&(client.clone(), slot));
        }
    }
}
