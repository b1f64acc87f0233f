//! `herald`: the push server. See `herald --help` and docs/configuration.md.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use herald::config::{BrokerChoice, Config, Flags, StoreChoice, redact_url as redact};
use herald::metered::Metered;
use herald::metrics::Metrics;
use herald::{connect, driver, http, secret, shutdown};
use herald_broker_redis::{RedisBroker, RedisBrokerConfig, RedisBrokerError};
use herald_core::auth::AuthConfig;
use herald_core::{Broker, MemoryBroker, MessageStore, NodeId, Retention};
use herald_runtime::AsyncStd;
use herald_socketio::SocketIo;
use herald_store_embedded::{EmbeddedConfig, EmbeddedError, EmbeddedStore};
use herald_store_mongo::{MongoConfig, MongoStore};

fn main() -> ExitCode {
    let flags = Flags::parse();
    if flags.print_keys {
        #[allow(clippy::print_stdout, reason = "the binary's own output")]
        {
            if flags.markdown {
                print!("{}", herald::config::keys_markdown());
            } else {
                print!("{}", herald::config::describe_keys());
            }
        }
        return ExitCode::SUCCESS;
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let (config, warnings) = match Config::load(&flags, &env) {
        Ok(c) => c,
        Err(e) => {
            #[allow(
                clippy::print_stderr,
                reason = "logging is not set up before the config"
            )]
            {
                eprintln!("herald: {e}");
            }
            return ExitCode::from(2);
        }
    };
    herald::logging::init(config.log_format, config.log_level);
    for w in warnings {
        log::warn!("{w}");
    }
    // A data directory this start makes (store files, a generated secret) is removed again
    // when the node stops before it started serving: a retry then starts clean.
    let new_data_dir = (!config.data_dir.exists()).then(|| config.data_dir.clone());
    match async_std::task::block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("herald: {e:#}");
            if let Some(dir) = new_data_dir.filter(|_| !STARTED.load(Ordering::SeqCst)) {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => log::info!("removed {}, made by this start", dir.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => log::warn!("could not remove {}: {e}", dir.display()),
                }
            }
            // The log goes to stdout: whoever started the binary also sees why it stopped.
            #[allow(clippy::print_stderr, reason = "the binary's own fatal error")]
            {
                eprintln!("herald: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Set once the node serves: from then on its data directory holds data, whatever happens.
static STARTED: AtomicBool = AtomicBool::new(false);

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| NodeId::new(s).is_ok())
        .unwrap_or_else(|| "herald".to_owned())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let secret = match &config.secret {
        Some(s) => s.clone(),
        None => {
            let (s, created) = secret::load_or_create(&config.data_dir)?;
            let path = secret::path(&config.data_dir);
            if created {
                log::info!("generated a client auth secret in {}", path.display());
            } else {
                log::info!("using the client auth secret in {}", path.display());
            }
            s
        }
    };
    let mut auth = AuthConfig::new(secret.into_bytes());
    auth.hmac = config.hmac_auth;
    auth.jwt = config.jwt_auth;
    auth.legacy = config.legacy_auth;
    auth.max_skew = config.max_skew;
    auth.max_future_skew = config.max_future_skew;

    // The default node id: host name and connector port (the process id when the port is 0).
    let provisional =
        config
            .node_id
            .clone()
            .unwrap_or_else(|| match config.connector_listen.port() {
                0 => format!("{}_pid{}", host_name(), std::process::id()),
                port => format!("{}_{port}", host_name()),
            });
    let node_id = NodeId::new(&provisional).map_err(|e| anyhow::anyhow!("node_id: {e}"))?;

    let retention = Retention {
        cap: config.retention_cap,
        ttl: config.retention_ttl,
    };
    let store_text;
    let broker_text;
    match (&config.store, &config.broker) {
        (StoreChoice::Embedded(dir), BrokerChoice::InProcess) => {
            let store = EmbeddedStore::open(
                EmbeddedConfig::new(dir)
                    .retention(retention)
                    .recover_damaged_log(config.recover_damaged_log)
                    .receipts_max_copies(config.receipts_max_copies)
                    .idempotency_max_keys(config.idempotency_max_keys),
            )
            .map_err(|e| {
                let hint = match e {
                    EmbeddedError::Damaged { .. } => {
                        ". To start anyway, once: --recover-damaged-log (or \
                         HERALD_STORE_RECOVER_DAMAGED_LOG=true, or store.recover_damaged_log = \
                         true); see docs/operations.md, \"A damaged log\""
                    }
                    _ => "",
                };
                anyhow::anyhow!(
                    "cannot open the embedded store in {}: {e}{hint}",
                    dir.display()
                )
            })?;
            store_text = format!("embedded:{}", dir.display());
            serve_in_process(config, auth, node_id, store, store_text).await
        }
        (StoreChoice::Mongo(url), broker) => {
            let mongo = MongoConfig::new(url.clone())
                .retention(retention)
                .known_counters(config.mongo_known_counters)
                .settle(config.mongo_settle);
            let store = MongoStore::connect(mongo, Arc::new(AsyncStd))
                .await
                .map_err(|e| anyhow::anyhow!("store.mongo: cannot use {}: {e}", redact(url)))?;
            store_text = format!("mongodb:{}", redact(url));
            match broker {
                BrokerChoice::InProcess => {
                    serve_in_process(config, auth, node_id, store, store_text).await
                }
                BrokerChoice::Redis(redis_url) => {
                    let cfg = RedisBrokerConfig::from_url(redis_url)
                        .map_err(|e| match e {
                            // The error names the URL, which may carry a password.
                            RedisBrokerError::InvalidUrl { reason, .. } => anyhow::anyhow!(
                                "broker.redis: invalid Redis URL {:?}: {reason}",
                                redact(redis_url)
                            ),
                            other => anyhow::anyhow!("broker.redis: {other}"),
                        })?
                        .with_max_pending(
                            config.broker_max_pending,
                            config.broker_max_pending_bytes,
                        )
                        .with_connection_timeout(config.broker_connect_timeout)
                        .with_response_timeout(config.broker_response_timeout)
                        .with_reconnect_max(config.broker_reconnect_max)
                        .with_node_ttl(config.broker_node_ttl);
                    let broker = RedisBroker::connect(cfg, node_id.clone(), Arc::new(AsyncStd))
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!("broker.redis: cannot use {}: {e}", redact(redis_url))
                        })?;
                    broker_text = format!("redis:{}", redact(redis_url));
                    let stats = broker.stats();
                    serve(
                        config,
                        auth,
                        node_id,
                        store,
                        broker,
                        store_text,
                        BrokerInfo {
                            text: broker_text,
                            redis: Some(stats),
                        },
                    )
                    .await
                }
            }
        }
        (StoreChoice::Embedded(_), BrokerChoice::Redis(_)) => {
            anyhow::bail!(
                "store.mongo: with Redis (several nodes) the queues must be shared: set --mongo"
            )
        }
    }
}

/// The broker as the start-up line shows it, and the Redis broker's counters for metrics and
/// `/healthy`.
struct BrokerInfo {
    /// `in-process` or `redis:<redacted URL>`.
    text: String,
    /// Set with Redis.
    redis: Option<Arc<herald_broker_redis::BrokerStats>>,
}

/// Runs the node on `store` and `broker` until SIGTERM or SIGINT.
/// [`serve`] with the in-process broker (one node).
async fn serve_in_process<S: MessageStore>(
    config: Config,
    auth: AuthConfig,
    node_id: NodeId,
    store: S,
    store_text: String,
) -> anyhow::Result<()> {
    let info = BrokerInfo {
        text: "in-process".to_owned(),
        redis: None,
    };
    serve(
        config,
        auth,
        node_id,
        store,
        MemoryBroker::new().node(),
        store_text,
        info,
    )
    .await
}

async fn serve<S: MessageStore, B: Broker>(
    config: Config,
    auth: AuthConfig,
    node_id: NodeId,
    store: S,
    broker: B,
    store_text: String,
    broker_info: BrokerInfo,
) -> anyhow::Result<()> {
    // Graceful stop on SIGTERM or SIGINT, caught from before the listeners are bound: a
    // signal that comes as soon as a port accepts (an orchestrator's quick stop, a test) must
    // not kill the process without its shutdown.
    let mut signals = signal_hook_async_std::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    let metrics = Arc::new(Metrics::default());
    let BrokerInfo {
        text: broker_text,
        redis,
    } = broker_info;
    if let Some(stats) = redis {
        let _ = metrics.redis.set(stats);
    }
    // Every call of the ports, from the engine, the REST API or retention, is metered here.
    let store = Arc::new(Metered::new(store, metrics.clone()));
    let broker = Arc::new(Metered::new(broker, metrics.clone()));
    let (io, incoming) = SocketIo::new(http::socketio_config(&config), Arc::new(AsyncStd));
    let node = driver::start_engine(&config, &node_id, store.clone(), broker, metrics.clone());
    let listeners = http::listen(&config, &node, &io, node_id.as_str()).await?;
    async_std::task::spawn(connect::accept_connections(
        incoming,
        Arc::new(auth),
        node.clone(),
    ));
    if config.role.serves_api() && node.webhooks.enabled() {
        async_std::task::spawn(herald::webhook::run_sender(
            node.webhooks.clone(),
            store.clone(),
            node_id.clone(),
        ));
        async_std::task::spawn(herald::webhook::run_expiry_reporter(
            node.webhooks.clone(),
            store.clone(),
        ));
    }
    async_std::task::spawn(driver::retention(
        store.clone(),
        metrics,
        config.retention_every,
    ));

    let show =
        |a: Option<std::net::SocketAddr>| a.map_or("-".to_owned(), |a| format!("http://{a}"));
    STARTED.store(true, Ordering::SeqCst);
    log::info!(
        "herald started: role={} node={} api={} connector={} store={} broker={}",
        config.role.as_str(),
        node_id,
        show(listeners.api),
        show(listeners.connector),
        store_text,
        broker_text
    );

    let signal = signals.next().await;
    let name = match signal {
        Some(signal_hook::consts::SIGTERM) => "SIGTERM".to_owned(),
        Some(signal_hook::consts::SIGINT) => "SIGINT".to_owned(),
        Some(other) => format!("signal {other}"),
        None => "the end of the signal stream".to_owned(),
    };
    log::info!("{name} received: stopping");
    shutdown::stop(listeners.tasks, &io, &node.inflight, config.shutdown).await;
    log::info!("herald stopped");
    Ok(())
}
