//! Herald's own container image and the compose cluster, driven through the `docker` and
//! compose command-line tools exactly as an operator would (`docker run`, `docker stop`,
//! `docker compose up`), not through the engine API.
//!
//! Images come from the environment:
//! - `HERALD_IT_HERALD_IMAGE`: a Herald image to test as it is (one built by the Dockerfile,
//!   say). When unset, [`herald_image`] builds `herald-test/herald:it` with
//!   `scripts/images/build-herald.sh` from the `herald` binary the tests run ([`herald_bin`]).
//! - `HERALD_IT_LB_IMAGE`: the load balancer of the compose cluster (default
//!   [`DEFAULT_LB_IMAGE`], built by `scripts/setup/55-deploy.sh`); the official `haproxy:2.6`
//!   works as well.
//! - `HERALD_IT_COMPOSE`: the compose command, words separated by spaces (default
//!   `docker compose` when that plugin answers, else `docker-compose`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::image_from_env;
use crate::process::herald_bin;
use crate::wait::wait_until;

/// The load balancer image used when `HERALD_IT_LB_IMAGE` is not set.
pub const DEFAULT_LB_IMAGE: &str = "herald-test/haproxy:2.6";

/// The tag [`herald_image`] builds.
const BUILT_IMAGE: &str = "herald-test/herald:it";

/// The workspace's root folder (the Dockerfile, `deploy/`, `scripts/`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("it/ sits in the workspace")
        .to_path_buf()
}

/// What a command printed on stdout, or an error with its stderr when it failed.
fn checked(what: &str, out: std::io::Result<Output>) -> anyhow::Result<String> {
    let out = out.with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `docker <args>` and returns its trimmed stdout.
///
/// # Errors
/// When docker cannot run or exits with a failure (its stderr is in the error).
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    checked(
        &format!("docker {}", args.join(" ")),
        Command::new("docker").args(args).output(),
    )
}

/// The Herald image to test: `HERALD_IT_HERALD_IMAGE`, or `herald-test/herald:it` built once
/// per test process by `scripts/images/build-herald.sh --binary <the tested binary>`.
///
/// # Panics
/// When the build fails.
pub fn herald_image() -> String {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            if let Ok(image) = std::env::var("HERALD_IT_HERALD_IMAGE") {
                return Ok(image);
            }
            let script = workspace_dir().join("scripts/images/build-herald.sh");
            let bin = herald_bin();
            checked(
                "scripts/images/build-herald.sh",
                Command::new("bash")
                    .arg(&script)
                    .arg("--binary")
                    .arg(&bin)
                    .arg(BUILT_IMAGE)
                    .output(),
            )
            .map(|_| BUILT_IMAGE.to_owned())
            .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The load balancer image of the compose cluster (`HERALD_IT_LB_IMAGE`).
pub fn lb_image() -> String {
    image_from_env("HERALD_IT_LB_IMAGE", DEFAULT_LB_IMAGE)
}

/// A unique name for this process's containers, volumes and projects.
pub fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "herald-it-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named Docker volume, removed on drop.
pub struct Volume {
    /// The volume's name.
    pub name: String,
}

impl Volume {
    /// Creates a new, empty named volume.
    ///
    /// # Errors
    /// When docker refuses.
    pub fn create(tag: &str) -> anyhow::Result<Volume> {
        let name = unique_name(tag);
        docker(&["volume", "create", &name])?;
        Ok(Volume { name })
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.name]);
    }
}

/// A container started with `docker run -d`, removed (with `-f`) on drop.
pub struct Container {
    /// The container's name.
    pub name: String,
}

impl Container {
    /// `docker run -d --name <unique> <args...>`: `args` holds the options, the image and its
    /// arguments.
    ///
    /// # Errors
    /// When docker refuses to start it.
    pub fn run(tag: &str, args: &[&str]) -> anyhow::Result<Container> {
        let name = unique_name(tag);
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend_from_slice(args);
        // Named first: a container created but not started is still removed on drop.
        let container = Container { name: name.clone() };
        docker(&all)?;
        Ok(container)
    }

    /// The host port published for `port/tcp` (published on `127.0.0.1`).
    ///
    /// # Errors
    /// When that port is not published.
    pub fn host_port(&self, port: u16) -> anyhow::Result<u16> {
        let out = docker(&["port", &self.name, &format!("{port}/tcp")])?;
        parse_port(&out)
    }

    /// `docker inspect -f <format>` of this container.
    ///
    /// # Errors
    /// When the container is gone.
    pub fn inspect(&self, format: &str) -> anyhow::Result<String> {
        docker(&["inspect", "-f", format, &self.name])
    }

    /// Everything the container wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// The port of the first `host:port` line of `docker port` / `compose port` output.
fn parse_port(out: &str) -> anyhow::Result<u16> {
    out.lines()
        .find_map(|l| l.trim().rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        .with_context(|| format!("no published port in {out:?}"))
}

/// The compose command: `HERALD_IT_COMPOSE`, else `docker compose` when the plugin answers,
/// else `docker-compose` (Debian 12's package, scripts/setup/55-deploy.sh).
fn compose_command() -> Vec<String> {
    static CMD: OnceLock<Vec<String>> = OnceLock::new();
    CMD.get_or_init(|| {
        if let Ok(cmd) = std::env::var("HERALD_IT_COMPOSE") {
            return cmd.split_whitespace().map(str::to_owned).collect();
        }
        let plugin = Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if plugin {
            vec!["docker".into(), "compose".into()]
        } else {
            vec!["docker-compose".into()]
        }
    })
    .clone()
}

/// A compose project of `deploy/compose.yaml`, taken down with its volumes on drop (with a
/// one-second stop timeout: a test's cluster has nothing left to keep).
pub struct Compose {
    /// The project name (`-p`): its containers and volumes carry it.
    pub project: String,
    /// Variables the compose file reads (images, ports, secret, API key).
    env: Vec<(String, String)>,
}

impl Compose {
    /// A project of `deploy/compose.yaml` with `env` for its variables (nothing started yet).
    pub fn new(tag: &str, env: &[(&str, &str)]) -> Compose {
        Compose {
            project: unique_name(tag),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Runs the compose command with `args` on this project.
    ///
    /// # Errors
    /// When the command fails (its output is in the error).
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let cmd = compose_command();
        let file = workspace_dir().join("deploy/compose.yaml");
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        checked(&format!("{} {}", cmd.join(" "), args.join(" ")), c.output())
    }

    /// The host port published for `port` of `service`.
    ///
    /// # Errors
    /// When it is not published.
    pub fn host_port(&self, service: &str, port: u16) -> anyhow::Result<u16> {
        parse_port(&self.run(&["port", service, &port.to_string()])?)
    }

    /// Every service's log so far (for failure messages).
    pub fn logs(&self) -> String {
        self.run(&["logs", "--no-color"])
            .unwrap_or_else(|e| format!("{e:#}"))
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--timeout", "1"]);
    }
}

/// Waits (up to `within`) until `GET <url>/healthy` answers 200, through curl.
pub fn wait_healthy(url: &str, within: Duration) -> bool {
    wait_until(within, || {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2"])
            .arg(format!("{url}/healthy"))
            .output()
            .is_ok_and(|o| o.stdout == b"200")
    })
}
