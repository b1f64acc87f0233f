//! herald-bench: a load generator for Herald and for the Socket.IO servers it is compared with.
//!
//! It speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself ([`client`]): HMAC connect auth
//! as DESIGN.md defines it, answers to the server's pings, and an ack (`43<id>[]`) for every
//! batch the server asks one for (Herald does; the peers don't). Pushes go through Herald's
//! REST API, `POST /push`, over a small keep-alive HTTP/1.1 pool ([`http`]).
//!
//! Each scenario ([`scenario`]) prints one JSON line:
//! - `idle`: connect N clients, hold them, report the connect rate, the failures and the
//!   server's resident memory per connection (from `/proc/<pid>/status`);
//! - `push`: an open-loop generator of `POST /push` requests with B recipients each at R
//!   requests/s; delivered messages/s, end-to-end latency from a timestamp in `data`, loss;
//! - `fanout`: one push to every connected client, K rounds; time until all received;
//! - `bound`: the MongoDB server's own rates for the writes a push and an acknowledgement
//!   need ([`db`]), so that Herald's figures on it read as a share of that bound.
//!
//! With `--mongo`, every report also counts the database operations of the run (`db_ops`).
//!
//! Connections are spread over several 127.0.0.x source addresses (bound before connecting),
//! so that tens of thousands of them to one port do not run out of ephemeral ports, and the
//! process raises its own file-descriptor limit ([`sys`]).

pub mod client;
pub mod db;
pub mod http;
pub mod scenario;
pub mod stats;
pub mod sys;
