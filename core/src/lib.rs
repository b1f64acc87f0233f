//! # herald-core
//!
//! Herald's engine, sans-IO: the types, the rules and the state machines of a push server
//! with durable, ordered, acknowledged per-client queues. It owns no runtime, no socket, no
//! thread and no clock; every input carries the time, and everything that needs I/O leaves
//! as an output for the caller (a transport, an app) to carry out.
//!
//! - [`ids`], [`message`], [`identity`]: validated identifiers, messages, who a session is.
//! - [`auth`]: connect authentication (HMAC, JWT HS256, the seed's legacy headers).
//! - [`push`]: validation of a `POST /push` body; [`publish`](mod@publish): the whole publish
//!   path of one push (validation, append, notifications, outcome).
//! - [`ports`]: the [`MessageStore`] and [`Broker`] traits adapters implement;
//!   [`memory`]: in-memory implementations of both.
//! - [`hub`]: the [`Hub`], every session of one node; [`io`]: its inputs and outputs.
//! - [`webhook`]: webhook events, their deterministic ids and their signature.
//!
//! ## The run loop
//!
//! A transport authenticates a connection, then feeds the Hub; after **every** input it
//! drains the outputs, carries them out, and feeds their results back; between inputs it
//! sleeps until [`Hub::poll_timeout`] and then calls [`Hub::handle_timeout`].
//!
//! ```no_run
//! use std::time::Instant;
//! use herald_core::{Hub, HubConfig, Input, NodeId, Output};
//!
//! fn next_input() -> Option<Input> { None } // the transport's events and I/O results
//! let mut hub = Hub::new(HubConfig::new(NodeId::new("node-1").unwrap()));
//! while let Some(input) = next_input() {
//!     hub.handle(Instant::now(), input);
//!     while let Some(output) = hub.poll_output() {
//!         match output {
//!             Output::Deliver { conn, ack, messages } => { /* emit `message` [messages] with ack id */ }
//!             Output::Kick { conn, reason } => { /* emit `kicked`, then close */ }
//!             Output::Close { conn, reason } => { /* close */ }
//!             Output::Wake { watch } => { /* wake the watcher: it reads the store again */ }
//!             Output::Store { req, op } => { /* run op on the store, feed Input::StoreDone { req, .. } */ }
//!             Output::Broker { req, op } => { /* run op on the broker, feed Input::BrokerDone { req, .. } */ }
//!         }
//!     }
//!     if let Some(at) = hub.poll_timeout() {
//!         // sleep until `at` (or until the next input), then:
//!         hub.handle_timeout(Instant::now());
//!     }
//! }
//! ```
//!
//! Broker events ([`BrokerEvent`]) of the node's [`Broker::events`] stream are inputs too
//! ([`Input::Broker`]). `core/examples/line_driver.rs` is a complete driver in one loop.

pub mod auth;
pub mod books;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
#[cfg(any(test, feature = "contract"))]
pub mod contract_clients;
#[cfg(any(test, feature = "contract"))]
pub mod contract_outbox;
#[cfg(any(test, feature = "contract"))]
pub mod contract_receipts;
pub mod hub;
pub mod identity;
pub mod ids;
pub mod io;
pub mod memory;
pub mod message;
pub mod outbox;
pub mod ports;
pub mod publish;
pub mod push;
pub mod push_id;
pub mod receipts;
pub mod runtime;
pub mod webhook;

pub use hub::{Hub, HubConfig, HubStats};
pub use identity::{Identity, Mode};
pub use ids::{ClientId, Generation, IdError, MessageId, NodeId, Slot};
pub use io::{
    AckId, BrokerOp, BrokerReply, CloseReason, ConnId, Input, KickReason, Output, RequestId,
    StoreOp, StoreReply, WatchId,
};
pub use memory::{MemoryBroker, MemoryBrokerNode, MemoryStore};
pub use message::{Message, NewMessage, Payload, PayloadError};
pub use outbox::OutboxIndex;
pub use ports::{
    AppendResult, Broker, BrokerError, BrokerEvent, BrokerEvents, MessageStore, OnlineSession,
    Retention, RetentionReport, SlotBacklog, StoreError,
};
pub use publish::{Published, publish};
pub use push_id::{PushId, PushIdError, PushIds};
pub use receipts::{
    CopyState, CopyStatus, IdempotencyClaim, IdempotencyTimes, PushStatus, RecallReport, Receipt,
    ReceiptKind,
};
pub use runtime::{Runtime, Task};
pub use webhook::{Event, EventId, EventKind, OutboxAdded, OutboxEntry, OutboxStats};
