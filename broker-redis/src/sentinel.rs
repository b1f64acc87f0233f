//! Finding the master through Sentinel, and hearing when Sentinel moves it.
//!
//! The lookup asks the sentinels in the configured order with `SENTINEL
//! get-master-addr-by-name <name>` and trusts an answer only when the server there says
//! `ROLE` master: a sentinel that has not yet seen a failover names the old master, which
//! comes back as a replica. The watcher subscribes to `+switch-master` on one sentinel at a
//! time and asks the broker to look again on every switch of its master and every time it
//! (re)connects, since a switch may have happened while it was not listening.

use std::time::Duration;

use futures::StreamExt;
use futures_channel::mpsc::{UnboundedSender, unbounded};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushKind, Value};

use crate::config::SentinelTopology;
use herald_core::Runtime;

/// The channel Sentinel announces a new master on: `<name> <old ip> <old port> <new ip>
/// <new port>`.
const SWITCH_MASTER: &str = "+switch-master";

/// Connects to `url` within the timeouts, pushes (if any) going to `pushes`.
pub(crate) async fn connect(
    url: &str,
    timeouts: (Duration, Duration),
    pushes: Option<UnboundedSender<redis::PushInfo>>,
) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let mut config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.0))
        .set_response_timeout(Some(timeouts.1));
    if let Some(tx) = pushes {
        config = config.set_push_sender(tx);
    }
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The address of the master now: the first sentinel that names a server that says it is
/// master.
///
/// # Errors
/// What each sentinel answered, when none named a master.
pub(crate) async fn find_master(
    topology: &SentinelTopology,
    timeouts: (Duration, Duration),
) -> Result<(String, u16), String> {
    let mut seen = Vec::new();
    for sentinel in &topology.sentinels {
        let shown = sentinel.rsplit('@').next().unwrap_or(sentinel);
        match ask(sentinel, topology, timeouts).await {
            Ok(addr) => return Ok(addr),
            Err(why) => seen.push(format!("{shown}: {why}")),
        }
    }
    Err(format!(
        "no sentinel named a master {:?}: {}",
        topology.master_name,
        seen.join("; ")
    ))
}

/// One sentinel's answer, checked with the server it names.
async fn ask(
    sentinel: &str,
    topology: &SentinelTopology,
    timeouts: (Duration, Duration),
) -> Result<(String, u16), String> {
    let mut conn = connect(sentinel, timeouts, None)
        .await
        .map_err(|e| e.to_string())?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&topology.master_name)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let (host, port) = addr.ok_or("does not know this master")?;
    let mut master = connect(&topology.master_url(&host, port), timeouts, None)
        .await
        .map_err(|e| format!("names {host}:{port}, unreachable: {e}"))?;
    let role: Vec<Value> = redis::cmd("ROLE")
        .query_async(&mut master)
        .await
        .map_err(|e| format!("names {host}:{port}, which did not answer ROLE: {e}"))?;
    match role.first() {
        Some(Value::BulkString(b)) if b == b"master" => Ok((host, port)),
        Some(Value::SimpleString(s)) if s == "master" => Ok((host, port)),
        other => Err(format!(
            "names {host}:{port}, which is not master (ROLE {other:?})"
        )),
    }
}

/// Listens for `+switch-master` of `topology`'s master on one sentinel after another and
/// sends a unit on `recheck` for each (and after each (re)connection). Ends once `recheck`
/// is closed (the broker is gone).
pub(crate) async fn watch(
    topology: SentinelTopology,
    timeouts: (Duration, Duration),
    backoff: (Duration, Duration),
    recheck: UnboundedSender<()>,
    runtime: std::sync::Arc<dyn Runtime>,
) {
    let mut delay = backoff.0;
    let mut next = 0;
    while !recheck.is_closed() {
        let sentinel = &topology.sentinels[next % topology.sentinels.len()];
        next += 1;
        let (tx, mut pushes) = unbounded();
        let subscribed = async {
            let url = crate::broker::with_resp3(sentinel);
            let mut conn = connect(&url, timeouts, Some(tx)).await?;
            conn.subscribe(SWITCH_MASTER).await?;
            redis::RedisResult::Ok(conn)
        }
        .await;
        let conn = match subscribed {
            Ok(conn) => conn,
            Err(e) => {
                log::debug!("sentinel watcher: {e}; trying the next sentinel in {delay:?}");
                runtime.sleep(delay).await;
                delay = (delay * 2).min(backoff.1);
                continue;
            }
        };
        delay = backoff.0;
        // Whatever happened while nobody listened: look again.
        let _ = recheck.unbounded_send(());
        loop {
            // Wake now and then to notice that the broker is gone.
            let tick = runtime.sleep(backoff.1);
            let push = futures::future::select(pushes.next(), tick).await;
            let push = match push {
                futures::future::Either::Left((push, _)) => push,
                futures::future::Either::Right(((), _)) => {
                    if recheck.is_closed() {
                        return;
                    }
                    continue;
                }
            };
            match push {
                Some(p) if p.kind == PushKind::Message => {
                    if switch_of(&p.data, &topology.master_name) {
                        log::info!("sentinel: {SWITCH_MASTER} of {}", topology.master_name);
                        let _ = recheck.unbounded_send(());
                    }
                }
                Some(p) if p.kind != PushKind::Disconnection => {}
                _ => break,
            }
        }
        drop(conn);
    }
}

/// Whether a `[channel, payload]` message announces a new master named `name`.
fn switch_of(data: &[Value], name: &str) -> bool {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    match data {
        [channel, payload] => {
            text(channel) == SWITCH_MASTER
                && text(payload).split(' ').next().is_some_and(|n| n == name)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_switch_of_our_master_counts() {
        let msg = |c: &str, p: &str| {
            vec![
                Value::BulkString(c.as_bytes().to_vec()),
                Value::BulkString(p.as_bytes().to_vec()),
            ]
        };
        assert!(switch_of(
            &msg(SWITCH_MASTER, "m 127.0.0.1 1 127.0.0.1 2"),
            "m"
        ));
        assert!(!switch_of(
            &msg(SWITCH_MASTER, "mm 127.0.0.1 1 127.0.0.1 2"),
            "m"
        ));
        assert!(!switch_of(&msg("+sdown", "m 127.0.0.1 1"), "m"));
        assert!(!switch_of(&[], "m"));
    }
}
