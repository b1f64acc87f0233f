//! # herald-core
//!
//! Herald's engine, sans-IO: the types, the rules and the state machines of a push server
//! with durable, ordered, acknowledged per-client queues. It owns no runtime, no socket, no
//! thread and no clock; every input carries the time, and everything that needs I/O leaves
//! as an output for the caller (an adapter or an app) to carry out.
//!
//! - [`ids`] and [`message`]: validated identifiers and messages.
//! - [`ports`]: the [`MessageStore`](ports::MessageStore) and [`Broker`](ports::Broker)
//!   traits that adapters implement.

pub mod auth;
pub mod hub;
pub mod identity;
pub mod ids;
pub mod io;
pub mod memory;
pub mod message;
pub mod ports;
pub mod push;

pub use hub::{Hub, HubConfig, HubStats};
pub use identity::{Identity, Mode};
pub use ids::{ClientId, Generation, IdError, MessageId, NodeId, Slot};
pub use io::{
    AckId, BrokerOp, BrokerReply, CloseReason, ConnId, Input, KickReason, Output, RequestId,
    StoreOp, StoreReply,
};
pub use memory::{MemoryBroker, MemoryBrokerNode, MemoryStore};
pub use message::{Message, NewMessage, Payload, PayloadError};
pub use ports::{
    AppendResult, Broker, BrokerError, BrokerEvent, BrokerEvents, MessageStore, Retention,
    RetentionReport, StoreError,
};
