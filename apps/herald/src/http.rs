//! The node's listeners: the tide apps (REST API, Socket.IO connector, or both on one port)
//! bound and served by our HTTP/1.1 driver, with limits derived from the configuration and
//! the file-descriptor budget.

use std::net::SocketAddr;
use std::sync::Arc;

use herald_core::{Broker, ClientId, MessageStore};
use herald_socketio::http1::{self, HttpLimits, SharedLimit};
use herald_socketio::{ServerConfig, SocketIo};

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::driver::Node;

/// The listeners of a node and what they serve.
pub struct Listeners {
    /// The REST API's bound address, when served.
    pub api: Option<SocketAddr>,
    /// The connector's bound address, when served.
    pub connector: Option<SocketAddr>,
    /// The accept loops; cancel them to stop accepting.
    pub tasks: Vec<async_std::task::JoinHandle<()>>,
}

/// Builds the tide apps and binds them (one listener when both addresses are equal).
///
/// # Errors
/// When an address cannot be bound.
pub async fn listen<S: MessageStore, B: Broker>(
    config: &Config,
    node: &Arc<Node<S, B>>,
    io: &SocketIo,
    node_name: &str,
) -> anyhow::Result<Listeners> {
    let state = Arc::new(ApiState {
        store: node.store.clone(),
        broker: node.broker.clone(),
        watch: {
            let node = node.clone();
            Arc::new(move |client: &ClientId| node.watch(client))
        },
        metrics: node.metrics.clone(),
        inflight: node.inflight.clone(),
        engine_counts: {
            let node = node.clone();
            Arc::new(move || node.engine_counts())
        },
        keys: config.api_keys.clone(),
        max_body: config.api_max_body,
        max_answer: config.api_max_answer,
        max_listed_errors: config.api_max_listed_errors,
        node: node_name.to_owned(),
        push_ids: crate::api::node_push_ids()?,
        idempotency: config.api_idempotency,
        webhooks: node.webhooks.clone(),
    });
    let mut listeners = Listeners {
        api: None,
        connector: None,
        tasks: Vec::new(),
    };
    let shared = SharedLimit::new(ConnectionBudget::derive(raise_nofile()).total);
    if config.single_port() {
        let mut app = tide::with_state(state);
        api::json_errors(&mut app);
        api::routes(&mut app);
        io.mount(&mut app);
        let max_body = config.api_max_body.max(config.max_payload);
        let limits = http_limits(config, max_body, 1, &shared);
        let (addr, task) = bind(app, config.api_listen, limits).await?;
        listeners.api = Some(addr);
        listeners.connector = Some(addr);
        listeners.tasks.push(task);
        return Ok(listeners);
    }
    let count = usize::from(config.role.serves_api()) + usize::from(config.role.serves_connector());
    if config.role.serves_api() {
        let mut app = tide::with_state(state.clone());
        api::json_errors(&mut app);
        api::routes(&mut app);
        let limits = http_limits(config, config.api_max_body, count, &shared);
        let (addr, task) = bind(app, config.api_listen, limits).await?;
        listeners.api = Some(addr);
        listeners.tasks.push(task);
    }
    if config.role.serves_connector() {
        let mut app = tide::with_state(state);
        app.with(io.cors_layer());
        api::json_errors(&mut app);
        api::health(&mut app);
        io.mount(&mut app);
        let limits = http_limits(config, config.max_payload, count, &shared);
        let (addr, task) = bind(app, config.connector_listen, limits).await?;
        listeners.connector = Some(addr);
        listeners.tasks.push(task);
    }
    Ok(listeners)
}

async fn bind<State: Clone + Send + Sync + 'static>(
    mut app: tide::Server<State>,
    addr: SocketAddr,
    limits: HttpLimits,
) -> anyhow::Result<(SocketAddr, async_std::task::JoinHandle<()>)> {
    app.with(crate::logging::AccessLog);
    let listener = async_std::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let served = http1::serve(listener, app, limits, Arc::new(herald_runtime::AsyncStd));
    let task = async_std::task::spawn(served);
    Ok((bound, task))
}

/// The HTTP limits of a listener whose largest body is `max_body`, with `listeners` sharing
/// the file descriptors through `shared`.
fn http_limits(
    config: &Config,
    max_body: usize,
    listeners: usize,
    shared: &Arc<SharedLimit>,
) -> HttpLimits {
    HttpLimits {
        max_head: config.http_max_head,
        max_body,
        head_timeout: config.http_head_timeout,
        body_timeout: config.http_body_timeout,
        idle_timeout: config.http_idle_timeout,
        write_timeout: config.http_write_timeout,
        max_connections: config
            .http_max_connections
            .unwrap_or_else(|| ConnectionBudget::derive(raise_nofile()).per_listener(listeners)),
        shared: Some(shared.clone()),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (once per process) and returns it.
fn raise_nofile() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("cannot raise RLIMIT_NOFILE: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    })
}

/// How many connections the file-descriptor limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnectionBudget {
    /// Connections of all listeners together: the limit less a reserve for the store, the
    /// broker, logs and the process itself (64 and 1/64 of the limit).
    total: usize,
    /// What one listener always leaves to the others (1/64 of the total, at least 16), so a
    /// flood on the Socket.IO port never takes the REST API's `/healthy` with it.
    headroom: usize,
}

impl ConnectionBudget {
    fn derive(nofile: u64) -> ConnectionBudget {
        let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
        let total = nofile.saturating_sub(64 + nofile / 64).max(1);
        ConnectionBudget {
            total,
            headroom: (total / 64).max(16),
        }
    }

    /// The limit of one of `listeners` listeners.
    fn per_listener(self, listeners: usize) -> usize {
        if listeners <= 1 {
            return self.total;
        }
        self.total
            .saturating_sub(self.headroom * (listeners - 1))
            .max(1)
    }
}

/// The Socket.IO server configuration of a node.
pub fn socketio_config(config: &Config) -> ServerConfig {
    ServerConfig {
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        max_payload: config.max_payload,
        connect_timeout: config.connect_timeout,
        queue_bytes: config.max_queue_bytes,
        close_timeout: config.close_timeout,
        cors_origins: config.cors_origins.clone(),
        cors_max_age: config.cors_max_age,
        ..ServerConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_leaves_room_for_the_process_and_the_other_listener() {
        // prlimit --nofile=256: the descriptors a node uses at rest (about 20) and the REST
        // API's room stay free while the Socket.IO port is full.
        let b = ConnectionBudget::derive(256);
        assert_eq!((b.total, b.headroom), (188, 16));
        assert_eq!(b.per_listener(2), 172);
        assert_eq!(b.per_listener(1), 188);
        // 20,000 (the benchmark machine): 19,000 idle WebSockets or 1,000 pushers fit.
        let b = ConnectionBudget::derive(20_000);
        assert!(b.per_listener(2) >= 19_000 && b.total < 20_000 - 300);
        assert_eq!(ConnectionBudget::derive(0).per_listener(2), 1);
    }
}
