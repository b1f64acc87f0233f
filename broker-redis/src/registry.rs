//! The registry of sessions online, for the client view (`GET /clients/<id>`):
//! - `herald:o:{c}`: a hash, field = slot, value = `<node>:<generation>:<since_ms>`, written
//!   by the claim script in the same step as the generation (so the entry of a slot is always
//!   its highest generation's), removed when that session ends only if the value is still its
//!   own (a newer claim's entry stays). Same hash tag as the client's other keys.
//! - `herald:node:<node>`: the node's liveness, `SET` to the time the node's broker started
//!   (Unix ms) with an expiry of [`RedisBrokerConfig::node_ttl`], beaten every third of it.
//!   Entries of a node whose key is gone (it died: its sessions ended without a word), or
//!   older than the node's start (it restarted under the same id), are not shown, and are
//!   removed when read.
//!
//! [`RedisBrokerConfig::node_ttl`]: crate::RedisBrokerConfig::node_ttl

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_core::OnlineSession;
use herald_core::ids::{ClientId, Generation, NodeId, Slot};
use redis::RedisResult;

use crate::broker::Conn;
use herald_core::Runtime;

/// The claim, and the session's registry entry, in one step: INCR the generation, announce
/// the claim (payload `<slot>:<generation>:<node>`), set the slot's entry.
const CLAIM_SCRIPT: &str = r"
local generation = redis.call('INCR', KEYS[1])
redis.call(ARGV[1], ARGV[2], ARGV[3] .. ':' .. generation .. ':' .. ARGV[4])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4] .. ':' .. generation .. ':' .. ARGV[5])
return generation
";

/// Removes the slot's entry (field ARGV[1]) if it starts with ARGV[2] (`<node>:<generation>:`,
/// or a whole value).
const END_SCRIPT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// `herald:o:{c}`: the sessions of `client` online, by slot.
pub(crate) fn online_key(client: &ClientId) -> String {
    format!("herald:o:{{{}}}", client.as_str())
}

/// `herald:node:<node>`: the node's liveness.
pub(crate) fn node_key(node: &NodeId) -> String {
    format!("herald:node:{}", node.as_str())
}

/// Decodes one entry of `herald:o:{c}` (field, value); `None` when malformed.
fn decode(field: &str, value: &str) -> Option<OnlineSession> {
    let slot = Slot::new(field.parse().ok()?).ok()?;
    let mut parts = value.rsplitn(3, ':');
    let since_ms = parts.next()?.parse().ok()?;
    let generation = Generation(parts.next()?.parse().ok()?);
    let node = NodeId::new(parts.next()?).ok()?;
    Some(OnlineSession {
        slot,
        node,
        generation,
        since_ms,
    })
}

/// Takes the next generation of `(client, slot)`, announces it and records the session.
pub(crate) async fn claim(
    commands: &Conn,
    client: &ClientId,
    slot: Slot,
    node: &NodeId,
    now_ms: u64,
) -> RedisResult<u64> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(CLAIM_SCRIPT)
        .arg(2)
        .arg(crate::keys::generation_key(client, slot))
        .arg(online_key(client))
        .arg(commands.publish_command())
        .arg(crate::keys::claim_channel(client))
        .arg(slot.get())
        .arg(node.as_str())
        .arg(now_ms);
    commands.query(&cmd).await
}

/// Removes the entry of `(client, slot)` if its value starts with `prefix`.
async fn remove_if(
    commands: &Conn,
    client: &ClientId,
    slot: Slot,
    prefix: &str,
) -> RedisResult<()> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(END_SCRIPT)
        .arg(1)
        .arg(online_key(client))
        .arg(slot.get())
        .arg(prefix);
    commands.query::<i64>(&cmd).await.map(drop)
}

/// The session `(client, slot)` of `node` with `generation` ended.
pub(crate) async fn end(
    commands: &Conn,
    client: &ClientId,
    slot: Slot,
    node: &NodeId,
    generation: Generation,
) -> RedisResult<()> {
    let prefix = format!("{}:{}:", node.as_str(), generation.0);
    remove_if(commands, client, slot, &prefix).await
}

/// The sessions of `client` whose node is alive, by slot; entries of dead nodes are removed
/// (if unchanged meanwhile).
pub(crate) async fn sessions(
    commands: &Conn,
    client: &ClientId,
) -> RedisResult<Vec<OnlineSession>> {
    let entries: HashMap<String, String> = commands
        .query(redis::cmd("HGETALL").arg(online_key(client)))
        .await?;
    let mut starts: HashMap<NodeId, Option<u64>> = HashMap::new();
    let mut online = Vec::new();
    for (field, value) in &entries {
        let Some(session) = decode(field, value) else {
            log::warn!(
                "malformed entry {field:?} = {value:?} in {}",
                online_key(client)
            );
            continue;
        };
        let started = match starts.get(&session.node) {
            Some(started) => *started,
            None => {
                // One key per node (nodes' keys are in different cluster slots).
                let started: Option<u64> = commands
                    .query(redis::cmd("GET").arg(node_key(&session.node)))
                    .await?;
                starts.insert(session.node.clone(), started);
                started
            }
        };
        if started.is_some_and(|s| session.since_ms >= s) {
            online.push(session);
        } else {
            log::debug!(
                "{client} slot {}: node {} is gone",
                session.slot,
                session.node
            );
            remove_if(commands, client, session.slot, value).await?;
        }
    }
    online.sort_by_key(|s| s.slot);
    Ok(online)
}

/// Unix milliseconds now.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One liveness beat: `herald:node:<node>` = `started_ms`, expiring after `ttl`.
async fn beat(commands: &Conn, node: &NodeId, started_ms: u64, ttl: Duration) -> RedisResult<()> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    commands
        .query::<()>(
            redis::cmd("SET")
                .arg(node_key(node))
                .arg(started_ms)
                .arg("PX")
                .arg(ttl_ms),
        )
        .await
}

/// Starts this node's liveness: a first beat now (a failure is logged), then
/// [`heartbeat`] in the background on `runtime`.
pub(crate) async fn start_liveness(
    commands: impl Fn() -> Option<Conn> + Send + 'static,
    node: &NodeId,
    ttl: Duration,
    runtime: &Arc<dyn Runtime>,
) {
    let started_ms = unix_ms();
    if let Some(conn) = commands()
        && let Err(e) = beat(&conn, node, started_ms, ttl).await
    {
        log::warn!("node {node}: first liveness beat failed: {e}");
    }
    let task = heartbeat(commands, node.clone(), started_ms, ttl, runtime.clone());
    runtime.spawn(Box::pin(task));
}

/// Beats every third of `ttl` on the connection `commands()` gives, until it gives none (the
/// broker was dropped). A failed beat is logged; the next one tries again.
async fn heartbeat(
    commands: impl Fn() -> Option<Conn>,
    node: NodeId,
    started_ms: u64,
    ttl: Duration,
    runtime: Arc<dyn Runtime>,
) {
    loop {
        runtime.sleep(ttl / 3).await;
        let Some(conn) = commands() else {
            return;
        };
        if let Err(e) = beat(&conn, &node, started_ms, ttl).await {
            log::warn!("node {node}: liveness beat failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_and_bad_ones_are_refused() {
        let s = decode("3", "node-1:17:1764000000000").unwrap();
        assert_eq!(s.slot.get(), 3);
        assert_eq!(s.node.as_str(), "node-1");
        assert_eq!(s.generation, Generation(17));
        assert_eq!(s.since_ms, 1_764_000_000_000);
        for (field, value) in [
            ("16", "n:1:2"),
            ("x", "n:1:2"),
            ("0", "n:1"),
            ("0", ":1:2"),
            ("0", "n:x:2"),
            ("0", "n:1:x"),
        ] {
            assert!(decode(field, value).is_none(), "{field} = {value}");
        }
    }
}
