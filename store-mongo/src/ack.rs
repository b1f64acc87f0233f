//! Acknowledgements: every acknowledgement one node has queued while the previous batch was
//! written is written together, per `(client, slot)`:
//! - what the session knows to be acknowledged up to some id (`through`, see
//!   [`herald_core::MessageStore::ack_through`]) moves the slot's mark in the client's counter
//!   document (`$max` on `m.<slot>`), all of them in one `update` command: a small document
//!   found by `_id`, about a quarter of what marking the copies costs;
//! - ids above it (acknowledged out of order) set the slot's bit on their copies in `messages`
//!   (`$bit` or on `a`), in a second `update` command only when there are any.
//!
//! At most [`ACK_CHUNK`] statements per command. Each caller is answered once the commands
//! that carry its acknowledgements have answered, so an acknowledgement is durable before the
//! session's cursor moves.

use std::collections::HashMap;
use std::future::IntoFuture;

use herald_core::{ClientId, Slot, StoreError};
use mongodb::bson::{Document, doc};

use crate::append::write_errors;
use crate::{MongoStore, unavailable};

/// Most `(client, slot)` statements in one `update` command.
pub(crate) const ACK_CHUNK: usize = 1_000;

/// One acknowledgement waiting to be written.
pub(crate) struct AckReq {
    /// Whose messages.
    pub(crate) client: ClientId,
    /// Which slot acknowledges.
    pub(crate) slot: Slot,
    /// The ids acknowledged.
    pub(crate) ids: Vec<i64>,
    /// Every id up to this one is acknowledged by the slot (0: nothing known; with no ids,
    /// the request only records that the slot read the queue).
    pub(crate) through: i64,
}

/// One `(client, slot)` of a batch: what it acknowledges up to, and every id above that.
#[derive(Debug, PartialEq, Eq)]
struct Group<'a> {
    client: &'a ClientId,
    slot: Slot,
    through: i64,
    ids: Vec<i64>,
}

/// The `(client, slot)` groups of a batch, and the group of each request. A group's `through`
/// is the highest of its requests'; its ids are those above it.
fn groups(reqs: &[AckReq]) -> (Vec<Group<'_>>, Vec<usize>) {
    let mut at: HashMap<(&ClientId, u8), usize> = HashMap::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut of_req = Vec::with_capacity(reqs.len());
    for r in reqs {
        let g = *at.entry((&r.client, r.slot.get())).or_insert_with(|| {
            groups.push(Group {
                client: &r.client,
                slot: r.slot,
                through: 0,
                ids: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].through = groups[g].through.max(r.through);
        groups[g].ids.extend_from_slice(&r.ids);
        of_req.push(g);
    }
    for g in &mut groups {
        let through = g.through;
        g.ids.retain(|&id| id > through);
    }
    (groups, of_req)
}

/// The field of a client's counter document holding `slot`'s mark: every id up to it is
/// acknowledged by the slot.
pub(crate) fn mark_field(slot: Slot) -> String {
    format!("m.{}", slot.get())
}

impl MongoStore {
    /// Writes a batch of acknowledgements; one answer per request, in order.
    pub(crate) async fn commit_acks(&self, reqs: Vec<AckReq>) -> Vec<Result<(), StoreError>> {
        let (groups, of_req) = groups(&reqs);
        let mut answers: Vec<Result<(), StoreError>> = vec![Ok(()); groups.len()];
        // Per command: the groups it carries, in statement order.
        // Every group moves (or creates) its slot's mark, even to 0: the mark says the slot
        // read or acknowledged the queue, for the client view (`MessageStore::slots`).
        let through: Vec<usize> = (0..groups.len()).collect();
        let marks: Vec<usize> = (0..groups.len())
            .filter(|&g| !groups[g].ids.is_empty())
            .collect();
        let upserts = through.chunks(ACK_CHUNK).map(|chunk| {
            let statements: Vec<Document> = chunk
                .iter()
                .map(|&g| {
                    let Group {
                        client,
                        slot,
                        through,
                        ..
                    } = &groups[g];
                    // No upsert: a client with a message has a counter (and a mark without
                    // one would make its first take expect n = 0 in vain).
                    doc! {
                        "q": {"_id": client.as_str()},
                        "u": {"$max": {mark_field(*slot): *through}},
                    }
                })
                .collect();
            (chunk, self.counters.name(), statements)
        });
        let bits = marks.chunks(ACK_CHUNK).map(|chunk| {
            let statements: Vec<Document> = chunk
                .iter()
                .map(|&g| {
                    let Group {
                        client, slot, ids, ..
                    } = &groups[g];
                    doc! {
                        "q": {"c": client.as_str(), "i": {"$in": ids}},
                        "u": {"$bit": {"a": {"or": i32::from(slot.bit())}}},
                        "multi": true,
                    }
                })
                .collect();
            (chunk, self.messages.name(), statements)
        });
        let commands: Vec<_> = upserts.chain(bits).collect();
        let replies =
            futures::future::join_all(commands.iter().map(|(_, collection, statements)| {
                self.db
                    .run_command(doc! {
                        "update": *collection,
                        "updates": statements,
                        "ordered": false,
                    })
                    .into_future()
            }))
            .await;
        for ((chunk, collection, _), reply) in commands.iter().zip(replies) {
            let mut fail = |g: usize, e: StoreError| {
                if answers[g].is_ok() {
                    answers[g] = Err(e);
                }
            };
            match reply {
                Ok(reply) if reply.get_document("writeConcernError").is_err() => {
                    for (index, _, message) in write_errors(&reply) {
                        if let Some(&g) = chunk.get(index) {
                            fail(
                                g,
                                StoreError::Unavailable(format!("ack ({collection}): {message}")),
                            );
                        }
                    }
                }
                Ok(reply) => {
                    let why = format!("ack ({collection}): {:?}", reply.get("writeConcernError"));
                    for &g in *chunk {
                        fail(g, StoreError::Unavailable(why.clone()));
                    }
                }
                Err(e) => {
                    let e = unavailable(e);
                    for &g in *chunk {
                        fail(g, e.clone());
                    }
                }
            }
        }
        of_req.into_iter().map(|g| answers[g].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_of_one_client_and_slot_share_a_statement() {
        let a = ClientId::new("a").unwrap();
        let b = ClientId::new("b").unwrap();
        let s = |n| Slot::new(n).unwrap();
        let req = |client: &ClientId, slot, ids: &[i64], through| AckReq {
            client: client.clone(),
            slot: s(slot),
            ids: ids.to_vec(),
            through,
        };
        let reqs = [
            req(&a, 0, &[1, 2], 2),
            req(&b, 0, &[5, 7], 5),
            req(&a, 1, &[1], 0),
            req(&a, 0, &[3, 6], 3),
        ];
        let (groups, of_req) = groups(&reqs);
        let group = |client, slot, through, ids: &[i64]| Group {
            client,
            slot: s(slot),
            through,
            ids: ids.to_vec(),
        };
        assert_eq!(
            groups,
            vec![
                group(&a, 0, 3, &[6]),
                group(&b, 0, 5, &[7]),
                group(&a, 1, 0, &[1]),
            ]
        );
        assert_eq!(of_req, vec![0, 1, 2, 0]);
    }
}
