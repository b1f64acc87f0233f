//! Claim fencing: each session claims the newest generation of its `(client, slot)`; a
//! session below the highest generation seen is kicked; a broker resync starts a new epoch
//! (see the module docs of [`crate::hub`]).

use std::time::Instant;

use super::session::Phase;
use super::{Hub, Pending};
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
        let epoch = self.epoch;
        self.request_broker(
            BrokerOp::Claim { client, slot, node },
            Pending::Claim {
                conn,
                sid,
                renew,
                epoch,
            },
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
        let Some(s) = self.session_mut(conn, sid) else {
            return;
        };
        let key = (s.client.clone(), s.slot);
        let high = self.highest.get(&key).copied().unwrap_or_default();
        if generation < high {
            log::info!(
                "{} slot {} claimed generation {generation} but {high} exists: kicked",
                key.0,
                key.1
            );
            self.kick(conn);
            return;
        }
        let s = self.sessions.get_mut(&conn).expect("checked above");
        s.generation = Some(generation);
        if renew {
            self.highest.insert(key.clone(), generation);
            self.kick_older(&key, generation);
            return;
        }
        s.phase = Phase::Live;
        s.failures = 0;
        let commit_mode = s.mode == Mode::Commit;
        self.highest.insert(key.clone(), generation);
        self.kick_older(&key, generation);
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
        let Some(conns) = self.by_slot.get(key) else {
            return;
        };
        let older: Vec<ConnId> = conns
            .iter()
            .copied()
            .filter(|c| {
                self.sessions
                    .get(c)
                    .and_then(|s| s.generation)
                    .is_some_and(|g| g < generation)
            })
            .collect();
        for conn in older {
            self.kick(conn);
        }
    }

    pub(super) fn forget_generations(&mut self, client: &ClientId) {
        for n in 0..Slot::COUNT {
            let slot = Slot::new(i64::from(n)).expect("in range");
            self.highest.remove(&(client.clone(), slot));
        }
    }
}
