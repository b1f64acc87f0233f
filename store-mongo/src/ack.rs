//! Acknowledgements: every acknowledgement one node has queued while the previous batch was
//! written goes in one `update` command, one statement per `(client, slot)` (`$bit` or on
//! the slot's bit of the ids acknowledged), at most [`ACK_CHUNK`] statements per command.
//! Each caller is answered once the command that carries its ids has answered, so an
//! acknowledgement is as durable as before it was batched when the session's cursor moves.

use std::collections::HashMap;

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
}

/// One `(client, slot)` of a batch and every id it acknowledges.
type Group<'a> = (&'a ClientId, Slot, Vec<i64>);

/// The `(client, slot)` groups of a batch, with every id acknowledged for each, and the group
/// of each request.
fn groups(reqs: &[AckReq]) -> (Vec<Group<'_>>, Vec<usize>) {
    let mut at: HashMap<(&ClientId, u8), usize> = HashMap::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut of_req = Vec::with_capacity(reqs.len());
    for r in reqs {
        let g = *at.entry((&r.client, r.slot.get())).or_insert_with(|| {
            groups.push((&r.client, r.slot, Vec::new()));
            groups.len() - 1
        });
        groups[g].2.extend_from_slice(&r.ids);
        of_req.push(g);
    }
    (groups, of_req)
}

impl MongoStore {
    /// Writes a batch of acknowledgements; one answer per request, in order.
    pub(crate) async fn commit_acks(&self, reqs: Vec<AckReq>) -> Vec<Result<(), StoreError>> {
        let (groups, of_req) = groups(&reqs);
        let mut answers: Vec<Result<(), StoreError>> = vec![Ok(()); groups.len()];
        for (c, chunk) in groups.chunks(ACK_CHUNK).enumerate() {
            let base = c * ACK_CHUNK;
            let statements: Vec<Document> = chunk
                .iter()
                .map(|(client, slot, ids)| {
                    doc! {
                        "q": {"c": client.as_str(), "i": {"$in": ids}},
                        "u": {"$bit": {"a": {"or": i32::from(slot.bit())}}},
                        "multi": true,
                    }
                })
                .collect();
            let reply = self
                .db
                .run_command(doc! {
                    "update": self.messages.name(),
                    "updates": statements,
                    "ordered": false,
                })
                .await;
            match reply {
                Ok(reply) if reply.get_document("writeConcernError").is_err() => {
                    for (index, _, message) in write_errors(&reply) {
                        if let Some(a) = answers.get_mut(base + index) {
                            *a = Err(StoreError::Unavailable(format!("ack: {message}")));
                        }
                    }
                }
                Ok(reply) => {
                    let why = format!("ack: {:?}", reply.get("writeConcernError"));
                    answers[base..base + chunk.len()].fill(Err(StoreError::Unavailable(why)));
                }
                Err(e) => answers[base..base + chunk.len()].fill(Err(unavailable(e))),
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
        let req = |client: &ClientId, slot, ids: &[i64]| AckReq {
            client: client.clone(),
            slot: s(slot),
            ids: ids.to_vec(),
        };
        let reqs = [
            req(&a, 0, &[1, 2]),
            req(&b, 0, &[5]),
            req(&a, 1, &[1]),
            req(&a, 0, &[3]),
        ];
        let (groups, of_req) = groups(&reqs);
        assert_eq!(
            groups,
            vec![
                (&a, s(0), vec![1, 2, 3]),
                (&b, s(0), vec![5]),
                (&a, s(1), vec![1])
            ]
        );
        assert_eq!(of_req, vec![0, 1, 2, 0]);
    }
}
