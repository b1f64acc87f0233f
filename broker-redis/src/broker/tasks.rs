//! The broker's background tasks on the application's runtime: the pump (subscriber pushes
//! into events, reconnection, following the master) and the publisher (the queue to Redis).

use super::link::publish_all;
use super::*;

/// What the pump reacts to.
pub(super) enum Signal {
    /// A push of the subscriber connection of the link of this generation.
    Push(u64, PushInfo),
    /// The master may have moved (Sentinel): look again.
    Recheck,
    /// Every link is gone: the broker was dropped.
    End,
}

/// Turns pushes of the subscriber connection into events, and reconnects (following the
/// master with Sentinel), until the broker is dropped.
pub(super) async fn pump(
    mut signals: impl futures::Stream<Item = Signal> + Unpin,
    inner: Weak<Inner>,
    runtime: Arc<dyn Runtime>,
    node: NodeId,
) {
    while let Some(signal) = signals.next().await {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let current = strong.link();
        match signal {
            Signal::End => return,
            Signal::Push(generation, _) if generation != current.generation => {}
            Signal::Push(_, push) => match push.kind {
                PushKind::Message | PushKind::SMessage => match message(&push.data) {
                    Ok(event) => {
                        // A closed receiver only means nobody listens (any more).
                        let _ = strong.events.unbounded_send(event);
                    }
                    Err(why) => {
                        log::warn!("node {node}: dropped a malformed broker message: {why}");
                    }
                },
                PushKind::Disconnection => {
                    log::warn!("node {node}: redis subscriber connection lost; reconnecting");
                    strong
                        .stats
                        .down(Part::Subscriber, "the subscriber connection was lost");
                    drop((strong, current));
                    if !recover(&inner, &runtime, &node).await {
                        return;
                    }
                }
                _ => {}
            },
            Signal::Recheck => {
                let Topology::Sentinel(topology) = &strong.config.topology else {
                    continue;
                };
                strong.recheck_queued.store(false, Relaxed);
                let found = sentinel::find_master(topology, strong.timeouts()).await;
                let moved = match &found {
                    Ok(addr) => current.master.as_ref() != Some(addr),
                    Err(why) => {
                        log::debug!("node {node}: sentinel recheck: {why}");
                        false
                    }
                };
                if let (true, Ok((host, port))) = (moved, &found) {
                    log::warn!("node {node}: the master moved to {host}:{port}; following it");
                    strong
                        .stats
                        .down(Part::Subscriber, "the master moved (Sentinel failover)");
                    drop((strong, current));
                    if !recover(&inner, &runtime, &node).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Gets the subscriber back: with Sentinel first to the master it names now (a new link when
/// it moved), then subscribes every channel again, retrying with backoff until Redis answers;
/// then emits [`BrokerEvent::Resync`]. Returns false when the broker was dropped meanwhile.
async fn recover(inner: &Weak<Inner>, runtime: &Arc<dyn Runtime>, node: &NodeId) -> bool {
    let mut delay = match inner.upgrade() {
        Some(inner) => inner.config.reconnect_min,
        None => return false,
    };
    loop {
        let Some(strong) = inner.upgrade() else {
            return false;
        };
        let max = strong.config.reconnect_max;
        let attempt = async {
            if let Topology::Sentinel(topology) = &strong.config.topology {
                let addr = sentinel::find_master(topology, strong.timeouts())
                    .await
                    .map_err(|e| e.to_string())?;
                let current = strong.link();
                if current.master.as_ref() != Some(&addr) {
                    let generation = strong.next_generation.fetch_add(1, Relaxed);
                    let link = open_link(&strong.config, generation, &strong.pushes, runtime)
                        .await
                        .map_err(|e| e.to_string())?;
                    log::warn!(
                        "node {node}: following the master from {:?} to {:?}",
                        current.master,
                        link.master
                    );
                    if current.master.is_some() {
                        strong.stats.failovers.fetch_add(1, Relaxed);
                    }
                    *lock(&strong.link) = Arc::new(link);
                }
            }
            let link = strong.link();
            link.subscriber
                .query::<String>(&redis::cmd("PING"))
                .await
                .map_err(|e| e.to_string())?;
            link.subscriber
                .subscribe(vec![keys::RESYNC_CHANNEL.to_string()])
                .await
                .map_err(|e| e.to_string())?;
            for client in strong.clients() {
                link.subscriber
                    .subscribe(channels(&client))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Result::<(), String>::Ok(())
        }
        .await;
        match attempt {
            Ok(()) => {
                strong.stats.up(Part::Subscriber);
                strong.stats.reconnects.fetch_add(1, Relaxed);
                log::info!("node {node}: redis subscriber connection back; resync");
                let _ = strong.events.unbounded_send(BrokerEvent::Resync);
                return true;
            }
            Err(e) => {
                drop(strong);
                log::debug!("node {node}: redis not back yet ({e}); retrying in {delay:?}");
                runtime.sleep(delay).await;
                delay = (delay * 2).min(max);
            }
        }
    }
}

/// Sends queued notifications in order, one batch at a time, until the broker is dropped.
/// A failed batch is counted and owes a resync; so does a dropped notification. The lost
/// notifications were meant for sessions on any node, so the resync is announced to every
/// node on [`keys::RESYNC_CHANNEL`] once Redis takes it (after the queued batches, or at once
/// when nothing is queued); until then it is retried with backoff.
pub(super) async fn publisher(
    mut wake: UnboundedReceiver<()>,
    inner: Weak<Inner>,
    runtime: Arc<dyn Runtime>,
    node: NodeId,
) {
    while wake.next().await.is_some() {
        let mut delay = match inner.upgrade() {
            Some(inner) => inner.config.reconnect_min,
            None => return,
        };
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let mut batch = lock(&strong.queue).take_batch();
            let link = strong.link();
            let announce = batch.is_empty();
            if announce {
                // Cleared before sending: a drop meanwhile owes another announcement.
                if !strong.owed_resync.swap(false, Relaxed) {
                    break;
                }
                batch.push((keys::RESYNC_CHANNEL.to_string(), node.as_str().to_string()));
            }
            let result = publish_all(&link, &batch).await;
            if !announce {
                strong.release(&batch);
                if result.is_err() {
                    strong.stats.failed.fetch_add(batch.len() as u64, Relaxed);
                }
            }
            match result {
                Ok(()) => {
                    strong.stats.up(Part::Publisher);
                    delay = strong.config.reconnect_min;
                    if announce {
                        log::info!("node {node}: redis answers again; every node resyncs");
                    }
                }
                Err(e) => {
                    log::debug!("node {node}: notifications not sent ({e}); retry in {delay:?}");
                    strong.owed_resync.store(true, Relaxed);
                    strong.stats.down(Part::Publisher, &e.to_string());
                    strong.failed();
                    let max = strong.config.reconnect_max;
                    drop((strong, link));
                    runtime.sleep(delay).await;
                    delay = (delay * 2).min(max);
                }
            }
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
