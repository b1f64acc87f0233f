//! `herald-bench`: load generator for Herald and comparable Socket.IO servers. Each run prints
//! one JSON line on stdout; see `herald-bench --help` and docs/benchmarks.md.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use herald_bench::scenario::{self, PushArgs, Setup};

/// Load generator for Herald and comparable Socket.IO servers (one JSON line per run).
#[derive(Parser, Debug)]
#[command(name = "herald-bench", version)]
struct Cli {
    /// Socket.IO server to connect clients to (repeat for several nodes: round-robin).
    #[arg(long = "url", default_value = "http://127.0.0.1:3000", global = true)]
    urls: Vec<String>,
    /// REST API for `POST /push` (repeatable); default: the --url addresses.
    #[arg(long = "api", global = true)]
    apis: Vec<String>,
    /// HMAC secret for connect auth (Herald); without it clients send only `client_id`.
    #[arg(long, global = true)]
    secret: Option<String>,
    /// Source addresses 127.0.0.2.. to spread connections over (0 = kernel's choice).
    #[arg(long, default_value_t = 16, global = true)]
    sources: u8,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200, global = true)]
    concurrency: usize,
    /// Server process id(s) whose resident memory is reported (repeatable, summed).
    #[arg(long = "server-pid", global = true)]
    server_pids: Vec<u32>,
    /// The server's name in the report.
    #[arg(long, default_value = "server", global = true)]
    label: String,
    /// Seconds without progress after which missing messages count as lost.
    #[arg(long, default_value_t = 5.0, global = true)]
    drain: f64,
    /// The MongoDB server the Herald nodes use (`mongodb://...`): the report counts the
    /// database operations of the run (`db_ops`); `bound` measures this server.
    #[arg(long, global = true)]
    mongo: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Connect N clients and hold them: connect rate, failures, server RSS per connection.
    Idle {
        /// Clients to connect.
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// Seconds to hold them (answering pings) before measuring.
        #[arg(long, default_value_t = 10.0)]
        hold: f64,
    },
    /// Open-loop `POST /push`, B recipients per request at R requests/s, for S seconds.
    Push {
        /// Clients to connect (at least --batch).
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// Recipients per request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Requests per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of load.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Keep-alive HTTP connections carrying the requests.
        #[arg(long, default_value_t = 64)]
        http_conns: usize,
    },
    /// K rounds of one push to all C clients: time until all received.
    Fanout {
        /// Clients to connect.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Rounds.
        #[arg(long, default_value_t = 5)]
        rounds: u64,
    },
    /// The MongoDB server's own bound (needs --mongo): `insert_many` of B copies, Herald's
    /// append round trips for B recipients, an acknowledgement `update` of B statements.
    Bound {
        /// Copies per call.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Seconds per measured call kind.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
}

/// `http://host:port[/...]` or `host:port` → the first address it resolves to.
fn address(url: &str) -> anyhow::Result<SocketAddr> {
    let hostport = url
        .trim_start_matches("http://")
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    hostport
        .to_socket_addrs()
        .with_context(|| format!("expected http://host:port, found {url:?}"))?
        .next()
        .with_context(|| format!("{url:?} resolves to no address"))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    femme::with_level(log::LevelFilter::Warn);
    match async_std::task::block_on(run(cli)) {
        Ok(line) => {
            #[allow(clippy::print_stdout, reason = "the report is the binary's output")]
            {
                println!("{line}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("herald-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<serde_json::Value> {
    let limit = herald_bench::sys::raise_nofile(1 << 20)?;
    let connectors = cli
        .urls
        .iter()
        .map(|u| address(u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let apis = if cli.apis.is_empty() {
        connectors.clone()
    } else {
        cli.apis
            .iter()
            .map(|u| address(u))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if cli.drain <= 0.0 {
        bail!("--drain must be positive, found {}", cli.drain);
    }
    let setup = Setup {
        connectors,
        apis,
        secret: cli.secret,
        sources: cli.sources,
        concurrency: cli.concurrency,
        server_pids: cli.server_pids,
        label: cli.label,
        prefix: format!(
            "bench-{}-{}",
            std::process::id(),
            herald_bench::sys::unix_us() / 1000 % 1_000_000_000
        ),
        drain: Duration::from_secs_f64(cli.drain),
        db: match &cli.mongo {
            Some(url) => Some(herald_bench::db::client(url).await?),
            None => None,
        },
    };
    let needed = match &cli.scenario {
        Scenario::Idle { conns, .. }
        | Scenario::Push { conns, .. }
        | Scenario::Fanout { conns, .. } => *conns as u64 + 256,
        Scenario::Bound { .. } => 256,
    };
    if limit < needed {
        bail!("{needed} file descriptors needed, the limit is {limit}: raise `ulimit -Hn`");
    }
    let mut report = match cli.scenario {
        Scenario::Idle { conns, hold } => {
            scenario::idle(&setup, conns, Duration::from_secs_f64(hold)).await?
        }
        Scenario::Push {
            conns,
            batch,
            rate,
            secs,
            http_conns,
        } => {
            if rate <= 0.0 || secs <= 0.0 {
                bail!("--rate and --secs must be positive, found {rate} and {secs}");
            }
            let args = PushArgs {
                conns,
                batch,
                rate,
                secs,
                http_conns,
            };
            scenario::push(&setup, args).await?
        }
        Scenario::Fanout { conns, rounds } => scenario::fanout(&setup, conns, rounds).await?,
        Scenario::Bound { batch, secs } => {
            let Some(url) = &cli.mongo else {
                bail!("bound measures a MongoDB server: --mongo mongodb://... is required");
            };
            if secs <= 0.0 {
                bail!("--secs must be positive, found {secs}");
            }
            herald_bench::db::bound(url, batch, Duration::from_secs_f64(secs), &setup.label).await?
        }
    };
    report["nofile_limit"] = limit.into();
    Ok(report)
}
