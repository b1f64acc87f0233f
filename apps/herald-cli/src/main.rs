//! `herald-cli`: talk to a Herald server from a shell.
//!
//! - `push`: send a message to recipients (`POST /push`).
//! - `history`: list a client's recent messages (`GET /queues/:id`).
//! - `watch`: wait for the oldest message a slot has not acknowledged (`GET /watch/:id`).
//! - `tail`: connect as a client over Socket.IO (WebSocket), print and acknowledge messages.
//! - `client`: a client's sessions online and per-slot backlog (`GET /clients/:id`).
//! - `status`: where each copy of a push stands (`GET /push/:push_id`, every page).
//! - `recall`: recall a push (`DELETE /push/:push_id`).
//! - `webhook-listen`: receive webhooks, verify their signature, print each event.
//!
//! Settings come from flags or the same environment variables the server reads
//! (`HERALD_API_KEY`, `HERALD_SECRET`), so one shell setup serves both. Help never shows the
//! values of those two (clap would print `[env: HERALD_API_KEY=<the key>]`).

use std::process::ExitCode;

mod listen;
mod tail;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::value::RawValue;

/// No `Debug`: it may hold the API key and the secret.
#[derive(Parser)]
#[command(
    name = "herald-cli",
    version,
    about = "Push to, and read from, a Herald server."
)]
struct Cli {
    /// Base URL of the REST API
    #[arg(
        long,
        global = true,
        env = "HERALD_CLI_API",
        default_value = "http://127.0.0.1:3000"
    )]
    api: String,
    /// Publish API key, sent as `Authorization: Bearer <key>` (from the environment: the first
    /// of a comma-separated list)
    #[arg(
        long = "api-key",
        global = true,
        env = "HERALD_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send one message to one or more recipients.
    Push {
        /// Recipients, comma-separated client ids.
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// The message's JSON data.
        #[arg(long)]
        data: String,
        /// The sender's name (`send_id`).
        #[arg(long, default_value = "herald-cli")]
        from: String,
        /// Topics, comma-separated.
        #[arg(long, value_delimiter = ',')]
        channel: Vec<String>,
        /// Time to live in seconds (default: the server's retention).
        #[arg(long)]
        ttl: Option<u64>,
        /// `Idempotency-Key`: a retry with the same key and message stores nothing and
        /// prints the first answer.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show a client's messages stored since a time.
    History {
        /// The client id.
        #[arg(long)]
        client: String,
        /// Unix seconds (default: the server's, five minutes ago).
        #[arg(long)]
        since: Option<u64>,
        /// How many at most (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Only messages with a greater id: continues an answer that said `"more":true`.
        #[arg(long)]
        after: Option<u64>,
    },
    /// Connect as a client, print each message as a JSON line and acknowledge it.
    Tail {
        /// The client id to connect as.
        #[arg(long)]
        client: String,
        /// The slot (0..=15).
        #[arg(long, default_value_t = 0)]
        slot: u8,
        /// Base URL of the Socket.IO connector
        #[arg(
            long,
            env = "HERALD_CLI_CONNECTOR",
            default_value = "http://127.0.0.1:3001"
        )]
        connector: String,
        /// The client auth secret
        #[arg(long, env = "HERALD_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// A file holding the secret (a single node's generated one)
        #[arg(long, default_value = "herald-data/secret")]
        secret_file: std::path::PathBuf,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Wait for the oldest message a slot has not acknowledged.
    Watch {
        /// The client id.
        #[arg(long)]
        client: String,
        /// The slot (0..=15).
        #[arg(long, default_value_t = 0)]
        slot: u8,
        /// How long to wait, milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout: u64,
    },
    /// Show a client's sessions online (slot, node, since) and, per slot, how many messages
    /// it has not acknowledged, the oldest one's time and the last id it acknowledged.
    Client {
        /// The client id.
        id: String,
    },
    // ---- Issue 14 (receipts) ----
    /// Show where each copy of a push stands for one slot (every page, one JSON line each).
    Status {
        /// The push id `push` printed.
        push_id: String,
        /// The slot (0..=15).
        #[arg(long, default_value_t = 0)]
        slot: u8,
        /// Entries per page (1..=1000).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Recall a push: no session delivers its unacknowledged copies any more.
    Recall {
        /// The push id `push` printed.
        push_id: String,
    },
    /// Receive webhooks: verify each request's signature (401 otherwise), print each event as
    /// a JSON line, answer 200.
    WebhookListen {
        /// The server's `webhook.secret`
        #[arg(long, env = "HERALD_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The port to listen on (0: any free port, shown on stderr).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Largest accepted distance between a signature's time and now, seconds.
        #[arg(long, default_value_t = 300)]
        tolerance: u64,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// A `POST /push` body; `data` is sent exactly as given (a parsed value would round big
/// numbers to `f64`).
#[derive(serde::Serialize)]
struct PushBody<'a> {
    send_id: &'a str,
    recv_id: &'a [String],
    channel: &'a [String],
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
}

/// Sends a request and returns the JSON answer as the server wrote it (byte for byte);
/// non-2xx answers are errors carrying the body.
async fn call(cli: &Cli, mut req: surf::RequestBuilder) -> anyhow::Result<String> {
    if let Some(key) = cli.api_key.as_deref().and_then(|k| k.split(',').next()) {
        req = req.header("Authorization", format!("Bearer {}", key.trim()));
    }
    let mut res = req.await.map_err(|e| anyhow::anyhow!("{}: {e}", cli.api))?;
    let status = res.status();
    let body = res
        .body_string()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?;
    serde_json::from_str::<&RawValue>(&body)
        .with_context(|| format!("the server answered {status} with non-JSON: {body}"))?;
    if !status.is_success() {
        bail!("the server answered {status}: {body}");
    }
    Ok(body)
}

/// `<api>/<route>/<client>?<query>`, the client id percent-encoded as one path segment.
fn client_url(
    api: &str,
    route: &str,
    client: &str,
    query: &[(&str, String)],
) -> anyhow::Result<surf::Url> {
    let mut url = surf::Url::parse(api).with_context(|| format!("--api {api:?} is not a URL"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--api {api:?} cannot be a base URL"))?
        .pop_if_empty()
        .extend([route, client]);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let base = cli.api.trim_end_matches('/');
    let answer = match &cli.command {
        Command::Push {
            to,
            data,
            from,
            channel,
            ttl,
            idempotency_key,
        } => {
            let data: &RawValue = serde_json::from_str(data).context("--data is not valid JSON")?;
            let body = serde_json::to_string(&PushBody {
                send_id: from,
                recv_id: to,
                channel,
                data,
                ttl: *ttl,
            })?;
            let mut req = surf::post(format!("{base}/push"))
                .body_string(body)
                .content_type("application/json");
            if let Some(key) = idempotency_key {
                req = req.header("Idempotency-Key", key.as_str());
            }
            call(cli, req).await?
        }
        Command::History {
            client,
            since,
            limit,
            after,
        } => {
            let mut query = Vec::new();
            if let Some(s) = since {
                query.push(("since", s.to_string()));
            }
            if let Some(l) = limit {
                query.push(("limit", l.to_string()));
            }
            if let Some(a) = after {
                query.push(("after", a.to_string()));
            }
            call(
                cli,
                surf::get(client_url(&cli.api, "queues", client, &query)?),
            )
            .await?
        }
        Command::Tail {
            client,
            slot,
            connector,
            secret,
            secret_file,
            count,
        } => {
            let secret = match secret {
                Some(s) => s.clone(),
                None => std::fs::read_to_string(secret_file)
                    .with_context(|| {
                        format!("no --secret and cannot read {}", secret_file.display())
                    })?
                    .trim()
                    .to_owned(),
            };
            return tail::run(connector, client, *slot, &secret, *count).await;
        }
        Command::Watch {
            client,
            slot,
            timeout,
        } => {
            let query = [
                ("channel", slot.to_string()),
                ("timeout", timeout.to_string()),
            ];
            call(
                cli,
                surf::get(client_url(&cli.api, "watch", client, &query)?),
            )
            .await?
        }
        Command::Client { id } => {
            call(cli, surf::get(client_url(&cli.api, "clients", id, &[])?)).await?
        }
        Command::Status {
            push_id,
            slot,
            limit,
        } => return status(cli, push_id, *slot, *limit).await,
        Command::Recall { push_id } => {
            call(
                cli,
                surf::delete(client_url(&cli.api, "push", push_id, &[])?),
            )
            .await?
        }
        Command::WebhookListen {
            secret,
            port,
            host,
            tolerance,
            count,
        } => {
            let tolerance = std::time::Duration::from_secs(*tolerance);
            return listen::run(secret, host, *port, tolerance, *count).await;
        }
    };
    #[allow(clippy::print_stdout, reason = "a command-line tool's output")]
    {
        println!("{answer}");
    }
    Ok(())
}

/// `status`: every page of a push's status, one answer per line, following `next`.
async fn status(cli: &Cli, push_id: &str, slot: u8, limit: u32) -> anyhow::Result<()> {
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("slot", slot.to_string()), ("limit", limit.to_string())];
        if let Some(a) = &after {
            query.push(("after", a.clone()));
        }
        let url = client_url(&cli.api, "push", push_id, &query)?;
        let answer = call(cli, surf::get(url)).await?;
        #[allow(clippy::print_stdout, reason = "a command-line tool's output")]
        {
            println!("{answer}");
        }
        let page: serde_json::Value = serde_json::from_str(&answer)?;
        match page.get("next").and_then(serde_json::Value::as_str) {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(()),
        }
    }
}

#[async_std::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr, reason = "a command-line tool's error report")]
            {
                eprintln!("herald-cli: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
