//! The broker: one command connection, one subscriber connection, one task that turns pushes
//! from the subscriber connection into events and resubscribes after a reconnection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use herald_core::Message;
use herald_core::ids::{ClientId, Generation, MessageId, NodeId, Slot};
use herald_core::ports::{Broker, BrokerError, BrokerEvent, BrokerEvents};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot as HashSlot;
use redis::{ProtocolVersion, PushInfo, PushKind, RedisResult, Value};

use crate::config::{RedisBrokerConfig, Topology};
use crate::error::{RedisBrokerError, unavailable};
use crate::keys;

/// INCR the generation and announce the claim in one step, so that a generation is never
/// taken without being announced. The channel shares the key's hash tag (same cluster slot).
const CLAIM_SCRIPT: &str = r"
local generation = redis.call('INCR', KEYS[1])
redis.call(ARGV[1], ARGV[2], ARGV[3] .. ':' .. generation .. ':' .. ARGV[4])
return generation
";

/// A connection to a standalone server or to a cluster.
#[derive(Clone)]
enum Conn {
    /// Reconnects by itself on the next command after a drop.
    Single(ConnectionManager),
    /// Routes by key slot; reconnects per node.
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    async fn subscribe(&self, channels: Vec<String>) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => c.subscribe(channels).await,
            Conn::Cluster(mut c) => c.ssubscribe(channels).await,
        }
    }

    async fn unsubscribe(&self, channels: Vec<String>) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => c.unsubscribe(channels).await,
            Conn::Cluster(mut c) => c.sunsubscribe(channels).await,
        }
    }

    async fn pipeline(&self, pipe: &redis::Pipeline) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }

    /// `PUBLISH` for a server, `SPUBLISH` (sharded) for a cluster.
    fn publish_command(&self) -> &'static str {
        match self {
            Conn::Single(_) => "PUBLISH",
            Conn::Cluster(_) => "SPUBLISH",
        }
    }
}

/// What the broker handle and its push task share.
struct Inner {
    /// Commands: PUBLISH, the claim script, PING.
    commands: Conn,
    /// The one subscriber connection of this node (RESP3; pushes go to the push task).
    subscriber: Conn,
    /// The clients this node subscribed to, to subscribe again after a reconnection.
    clients: Mutex<HashSet<ClientId>>,
    /// Backoff between reconnection attempts.
    reconnect_min: Duration,
    /// The longest wait between reconnection attempts.
    reconnect_max: Duration,
}

impl Inner {
    fn clients(&self) -> Vec<ClientId> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// A [`Broker`] over Redis for one node. See the crate documentation for the keys and
/// channels.
pub struct RedisBroker {
    /// Shared with the push task (which holds it weakly, so dropping the broker stops it).
    inner: Arc<Inner>,
    /// The event stream, until [`Broker::events`] takes it.
    events: Mutex<Option<UnboundedReceiver<BrokerEvent>>>,
    /// The node this handle belongs to (for logs).
    node: NodeId,
}

impl RedisBroker {
    /// Publishes a notify payload (`<id>` or the message's JSON) on `client`'s channel.
    async fn publish_notify(&self, client: &ClientId, payload: String) -> Result<(), BrokerError> {
        let commands = &self.inner.commands;
        let mut cmd = redis::cmd(commands.publish_command());
        cmd.arg(keys::notify_channel(client)).arg(payload);
        commands.query::<i64>(&cmd).await.map_err(unavailable)?;
        Ok(())
    }

    /// Publishes `(channel, payload)` pairs with as few round trips as Redis allows: one
    /// pipeline per [`PIPELINE_BYTES`] of payload on a server; on a cluster, where a pipeline
    /// must stay within one hash slot, one pipeline per slot, all slots at once.
    async fn publish_all(&self, notes: Vec<(String, String)>) -> Result<(), BrokerError> {
        let commands = &self.inner.commands;
        let publish = commands.publish_command();
        let mut first_error = None;
        for chunk in chunks_by_bytes(notes, PIPELINE_BYTES) {
            let pipelines: Vec<redis::Pipeline> = match commands {
                Conn::Single(_) => vec![pipeline_of(publish, chunk.iter())],
                Conn::Cluster(_) => {
                    let mut by_slot: HashMap<HashSlot, Vec<&(String, String)>> = HashMap::new();
                    for note in &chunk {
                        by_slot
                            .entry(HashSlot::for_key(&note.0))
                            .or_default()
                            .push(note);
                    }
                    by_slot
                        .into_values()
                        .map(|notes| pipeline_of(publish, notes.into_iter()))
                        .collect()
                }
            };
            let sent = futures::future::join_all(pipelines.iter().map(|p| commands.pipeline(p)));
            for result in sent.await {
                if let Err(e) = result {
                    first_error.get_or_insert(unavailable(e));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Connects to Redis (both connections) and starts the task that delivers events.
    ///
    /// # Errors
    /// When Redis cannot be reached within the connection timeout.
    pub async fn connect(
        config: RedisBrokerConfig,
        node: NodeId,
    ) -> Result<RedisBroker, RedisBrokerError> {
        let (push_tx, push_rx) = unbounded::<PushInfo>();
        let (commands, subscriber) = match &config.topology {
            Topology::Standalone(url) => {
                let client = redis::Client::open(with_resp3(url))?;
                let base = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connection_timeout))
                    .set_response_timeout(Some(config.response_timeout))
                    .set_number_of_retries(2);
                let commands = client
                    .get_connection_manager_with_config(base.clone())
                    .await?;
                let subscriber = client
                    .get_connection_manager_with_config(
                        base.set_push_sender(push_tx).set_automatic_resubscription(),
                    )
                    .await?;
                (Conn::Single(commands), Conn::Single(subscriber))
            }
            Topology::Cluster(nodes) => {
                let builder = || {
                    ClusterClientBuilder::new(nodes.clone())
                        .use_protocol(ProtocolVersion::RESP3)
                        .connection_timeout(config.connection_timeout)
                        .response_timeout(config.response_timeout)
                };
                let commands = builder().build()?.get_async_connection().await?;
                let subscriber = builder()
                    .push_sender(push_tx)
                    .build()?
                    .get_async_connection()
                    .await?;
                (Conn::Cluster(commands), Conn::Cluster(subscriber))
            }
        };
        let inner = Arc::new(Inner {
            commands,
            subscriber,
            clients: Mutex::new(HashSet::new()),
            reconnect_min: config.reconnect_min,
            reconnect_max: config.reconnect_max,
        });
        let (events_tx, events_rx) = unbounded();
        async_std::task::spawn(pump(
            push_rx,
            Arc::downgrade(&inner),
            events_tx,
            node.clone(),
        ));
        log::info!(
            "node {node}: redis broker connected ({:?})",
            config.topology
        );
        Ok(RedisBroker {
            inner,
            events: Mutex::new(Some(events_rx)),
            node,
        })
    }
}

/// Most payload bytes in one notification pipeline: a push to many recipients of a large
/// message is sent in pipelines of about this size, one after the other, so that neither this
/// node nor the subscribers' output buffers in Redis (32 MB hard limit for pub/sub clients
/// by default) hold the whole push at once.
pub(crate) const PIPELINE_BYTES: usize = 1 << 20;

/// Splits `notes` in order into runs of at most `budget` payload bytes (at least one each).
fn chunks_by_bytes(notes: Vec<(String, String)>, budget: usize) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    let mut used = 0;
    for note in notes {
        let size = note.0.len() + note.1.len();
        match out.last_mut() {
            Some(last) if used + size <= budget => last.push(note),
            _ => {
                used = 0;
                out.push(vec![note]);
            }
        }
        used += size;
    }
    out
}

/// One pipeline publishing every `(channel, payload)`; the replies (receiver counts) are
/// ignored.
fn pipeline_of<'a>(
    publish: &str,
    notes: impl Iterator<Item = &'a (String, String)>,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for (channel, payload) in notes {
        pipe.cmd(publish).arg(channel).arg(payload).ignore();
    }
    pipe
}

/// Asks for RESP3 (needed for pushes on a multiplexed connection) unless the URL says.
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// The channels of one client.
fn channels(client: &ClientId) -> Vec<String> {
    vec![keys::notify_channel(client), keys::claim_channel(client)]
}

impl Broker for RedisBroker {
    async fn subscribe(&self, client: &ClientId) -> Result<(), BrokerError> {
        let added = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(client.clone());
        let result = self.inner.subscriber.subscribe(channels(client)).await;
        if let Err(e) = result {
            if added {
                self.inner
                    .clients
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(client);
            }
            return Err(unavailable(e));
        }
        Ok(())
    }

    async fn unsubscribe(&self, client: &ClientId) -> Result<(), BrokerError> {
        let known = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(client);
        if known {
            self.inner
                .subscriber
                .unsubscribe(channels(client))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn notify(&self, client: &ClientId, last: MessageId) -> Result<(), BrokerError> {
        self.publish_notify(client, last.0.to_string()).await
    }

    async fn notify_message(
        &self,
        client: &ClientId,
        message: &Message,
    ) -> Result<(), BrokerError> {
        let payload = keys::notify_payload(message).unwrap_or_else(|| message.id.0.to_string());
        self.publish_notify(client, payload).await
    }

    async fn notify_messages(&self, notes: &[(ClientId, Message)]) -> Result<(), BrokerError> {
        let notes = notes
            .iter()
            .map(|(client, message)| {
                let payload =
                    keys::notify_payload(message).unwrap_or_else(|| message.id.0.to_string());
                (keys::notify_channel(client), payload)
            })
            .collect();
        self.publish_all(notes).await
    }

    async fn claim(
        &self,
        client: &ClientId,
        slot: Slot,
        node: &NodeId,
    ) -> Result<Generation, BrokerError> {
        let commands = &self.inner.commands;
        // EVAL with the script text: short, and no script cache to lose on a restart.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM_SCRIPT)
            .arg(1)
            .arg(keys::generation_key(client, slot))
            .arg(commands.publish_command())
            .arg(keys::claim_channel(client))
            .arg(slot.get())
            .arg(node.as_str());
        let generation: u64 = commands.query(&cmd).await.map_err(unavailable)?;
        Ok(Generation(generation))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.inner
            .commands
            .query::<String>(&redis::cmd("PING"))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn events(&self) -> BrokerEvents {
        let taken = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match taken {
            Some(rx) => rx.boxed(),
            None => {
                log::warn!("node {}: broker events were already taken", self.node);
                futures::stream::empty().boxed()
            }
        }
    }
}

/// Turns pushes of the subscriber connection into events until the broker is dropped.
async fn pump(
    mut pushes: UnboundedReceiver<PushInfo>,
    inner: Weak<Inner>,
    events: UnboundedSender<BrokerEvent>,
    node: NodeId,
) {
    while let Some(push) = pushes.next().await {
        match push.kind {
            PushKind::Message | PushKind::SMessage => match message(&push.data) {
                Ok(event) => {
                    // A closed receiver only means nobody listens (any more).
                    let _ = events.unbounded_send(event);
                }
                Err(why) => log::warn!("node {node}: dropped a malformed broker message: {why}"),
            },
            PushKind::Disconnection => {
                log::warn!("node {node}: redis subscriber connection lost; reconnecting");
                if !resubscribe(&inner, &node).await {
                    return;
                }
                log::info!("node {node}: redis subscriber connection back; resync");
                let _ = events.unbounded_send(BrokerEvent::Resync);
            }
            _ => {}
        }
    }
}

/// Decodes the `[channel, payload]` of a message push.
fn message(data: &[Value]) -> Result<BrokerEvent, String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| "not UTF-8".to_string()),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(format!("unexpected value {other:?}")),
    };
    match data {
        [channel, payload] => keys::decode(&text(channel)?, &text(payload)?),
        other => Err(format!("expected [channel, payload], got {other:?}")),
    }
}

/// Subscribes to every channel again, retrying with backoff until Redis answers. Returns false
/// when the broker was dropped meanwhile.
async fn resubscribe(inner: &Weak<Inner>, node: &NodeId) -> bool {
    let mut delay = match inner.upgrade() {
        Some(inner) => inner.reconnect_min,
        None => return false,
    };
    loop {
        let Some(strong) = inner.upgrade() else {
            return false;
        };
        let max = strong.reconnect_max;
        let attempt = async {
            strong
                .subscriber
                .query::<String>(&redis::cmd("PING"))
                .await?;
            for client in strong.clients() {
                strong.subscriber.subscribe(channels(&client)).await?;
            }
            RedisResult::Ok(())
        }
        .await;
        drop(strong);
        match attempt {
            Ok(()) => return true,
            Err(e) => {
                log::debug!("node {node}: redis not back yet ({e}); retrying in {delay:?}");
                async_std::task::sleep(delay).await;
                delay = (delay * 2).min(max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_chunked_by_payload_bytes_in_order() {
        let note = |n: usize| (format!("c{n}"), "x".repeat(n));
        let notes = vec![note(3), note(4), note(2), note(20), note(1)];
        let chunks = chunks_by_bytes(notes, 12);
        let sizes: Vec<Vec<usize>> = chunks
            .iter()
            .map(|c| c.iter().map(|n| n.1.len()).collect())
            .collect();
        // 5 + 6 fit in 12; 4 starts anew; 22 is alone though over; 3 after it.
        assert_eq!(sizes, vec![vec![3, 4], vec![2], vec![20], vec![1]]);
        assert!(chunks_by_bytes(Vec::new(), 12).is_empty());
    }
}
