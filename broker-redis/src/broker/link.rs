//! The connections of a link: the command connection and the subscriber connection to a
//! server, a cluster, or the master Sentinel names; publishing notifications in as few
//! round trips as Redis allows.

use super::*;

/// A connection to a standalone server or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// Reconnects by itself on the next command after a drop.
    Single(ConnectionManager),
    /// Routes by key slot; reconnects per node.
    Cluster(ClusterConnection),
}

impl Conn {
    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    pub(super) async fn subscribe(&self, channels: Vec<String>) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => c.subscribe(channels).await,
            Conn::Cluster(mut c) => c.ssubscribe(channels).await,
        }
    }

    pub(super) async fn unsubscribe(&self, channels: Vec<String>) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => c.unsubscribe(channels).await,
            Conn::Cluster(mut c) => c.sunsubscribe(channels).await,
        }
    }

    pub(super) async fn pipeline(&self, pipe: &redis::Pipeline) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }

    /// `PUBLISH` for a server, `SPUBLISH` (sharded) for a cluster.
    pub(crate) fn publish_command(&self) -> &'static str {
        match self {
            Conn::Single(_) => "PUBLISH",
            Conn::Cluster(_) => "SPUBLISH",
        }
    }
}

/// The connections in use. A Sentinel failover replaces the whole link; standalone and
/// cluster connections reconnect by themselves and keep theirs.
pub(super) struct Link {
    /// Commands: PUBLISH, the claim script, PING.
    pub(super) commands: Conn,
    /// The one subscriber connection of this node (RESP3; pushes go to the pump).
    pub(super) subscriber: Conn,
    /// Pushes of this link's subscriber carry this number; those of older links are ignored.
    pub(super) generation: u64,
    /// The master's address (Sentinel), to tell a failover from a reconnection.
    pub(super) master: Option<(String, u16)>,
}

/// Opens the connections of a link: to the server, the cluster, or the master Sentinel
/// names now. The subscriber's pushes go to `pushes` tagged with `generation`.
pub(super) async fn open_link(
    config: &RedisBrokerConfig,
    generation: u64,
    pushes: &UnboundedSender<(u64, PushInfo)>,
    runtime: &Arc<dyn Runtime>,
) -> Result<Link, RedisBrokerError> {
    let (push_tx, mut push_rx) = unbounded::<PushInfo>();
    let forward = pushes.clone();
    runtime.spawn(Box::pin(async move {
        while let Some(push) = push_rx.next().await {
            if forward.unbounded_send((generation, push)).is_err() {
                return;
            }
        }
    }));
    let cluster_push = push_tx.clone();
    let single = |url: String| async move {
        let client = redis::Client::open(with_resp3(&url))?;
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
        Result::<_, RedisBrokerError>::Ok((Conn::Single(commands), Conn::Single(subscriber)))
    };
    let (commands, subscriber, master) = match &config.topology {
        Topology::Standalone(url) => {
            let (c, s) = single(url.clone()).await?;
            (c, s, None)
        }
        Topology::Sentinel(topology) => {
            let timeouts = (config.connection_timeout, config.response_timeout);
            let (host, port) = sentinel::find_master(topology, timeouts)
                .await
                .map_err(RedisBrokerError::NoMaster)?;
            let (c, s) = single(topology.master_url(&host, port)).await?;
            (c, s, Some((host, port)))
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
                .push_sender(cluster_push)
                .build()?
                .get_async_connection()
                .await?;
            (Conn::Cluster(commands), Conn::Cluster(subscriber), None)
        }
    };
    Ok(Link {
        commands,
        subscriber,
        generation,
        master,
    })
}

/// Publishes `(channel, payload)` pairs on `link` with as few round trips as Redis allows:
/// one pipeline on a server; on a cluster, where a pipeline must stay within one hash slot,
/// one pipeline per slot, all slots at once.
pub(super) async fn publish_all(link: &Link, notes: &[(String, String)]) -> RedisResult<()> {
    let commands = &link.commands;
    let publish = commands.publish_command();
    let pipelines: Vec<redis::Pipeline> = match commands {
        Conn::Single(_) => vec![pipeline_of(publish, notes.iter())],
        Conn::Cluster(_) => {
            let mut by_slot: HashMap<HashSlot, Vec<&(String, String)>> = HashMap::new();
            for note in notes {
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
    sent.await.into_iter().collect()
}

/// Most payload bytes in one notification pipeline: queued notifications are sent in
/// pipelines of about this size, one after the other, so that neither this node nor the
/// subscribers' output buffers in Redis (32 MB hard limit for pub/sub clients by default)
/// hold a large push at once.
pub(super) const PIPELINE_BYTES: usize = 1 << 20;

/// One pipeline publishing every `(channel, payload)`; the replies (receiver counts) are
/// ignored.
pub(super) fn pipeline_of<'a>(
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
pub(crate) fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}
