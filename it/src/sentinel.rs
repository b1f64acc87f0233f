//! A Redis master, its replica and three sentinels: `redis-server` and `redis-sentinel`
//! processes on loopback ports, for failover tests; and one standalone server to pause.
//!
//! Processes on the host for the same reason as [`crate::RedisCluster`]: Sentinel hands its
//! clients the address each server announces, which must be one the tests reach. Sentinel is
//! tuned to act fast (a master counts as down after 1 s without an answer; quorum 2 of 3), so
//! a failover takes a few seconds. Everything is inspected with `redis-cli`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cluster::{cli, unique, wait_for_log};
use crate::wait::try_wait_until;

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "herald";

/// How long the servers and sentinels may take to start and to find each other.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A master, a replica and three sentinels; dropping it stops every process and removes
/// their files.
pub struct RedisSentinel {
    /// The data servers by port (`None` once killed).
    servers: Vec<(u16, Option<Child>)>,
    /// The sentinels and their ports.
    sentinels: Vec<(u16, Child)>,
    /// Logs and config files; removed on drop.
    dir: PathBuf,
}

impl RedisSentinel {
    /// Starts a master, a replica of it and three sentinels monitoring it, and waits until
    /// the replica is in sync and every sentinel knows the replica and the two other
    /// sentinels (so that a failover can be agreed on).
    ///
    /// Blocking: call it at the start of a test.
    ///
    /// # Errors
    /// When `redis-server`, `redis-sentinel` or `redis-cli` is missing
    /// (`scripts/setup/30-redis.sh` installs them) or the set-up is not ready within 60 s.
    pub fn start() -> anyhow::Result<RedisSentinel> {
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-sentinel-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut set = RedisSentinel {
            servers: Vec::new(),
            sentinels: Vec::new(),
            dir,
        };
        let master = set.start_server(None, None)?;
        set.start_server(None, Some(master))?;
        for _ in 0..3 {
            set.start_sentinel(master)?;
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let replica = set.servers[1].0;
        wait(deadline, "the replica in sync", || {
            Ok(cli(replica, &["info", "replication"])?.contains("master_link_status:up"))
        })?;
        for (port, _) in &set.sentinels {
            wait(deadline, "every sentinel to know the others", || {
                let info = cli(*port, &["sentinel", "master", MASTER_NAME])?;
                Ok(field(&info, "num-other-sentinels") == Some("2")
                    && field(&info, "num-slaves") == Some("1"))
            })?;
        }
        log::info!("redis sentinel ready: {}", set.url());
        Ok(set)
    }

    /// `redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/herald`, the form herald's
    /// Redis broker takes.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The port of the master as the first sentinel that answers names it.
    ///
    /// # Errors
    /// When no sentinel answers.
    pub fn master_port(&self) -> anyhow::Result<u16> {
        let mut last = None;
        for (port, _) in &self.sentinels {
            match cli(*port, &["sentinel", "get-master-addr-by-name", MASTER_NAME]) {
                Ok(out) => {
                    if let Some(p) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                        return Ok(p);
                    }
                    last = Some(anyhow::anyhow!("sentinel {port} answered {out:?}"));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no sentinel")))
    }

    /// The ports of the data servers (the first was the master at start).
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers.iter().map(|(p, _)| *p).collect()
    }

    /// `kill -9` of the server on `port`.
    ///
    /// # Errors
    /// When no live server has that port.
    pub fn kill(&mut self, port: u16) -> anyhow::Result<()> {
        let entry = self
            .servers
            .iter_mut()
            .find(|(p, _)| *p == port)
            .context("no such server")?;
        let mut child = entry.1.take().context("already killed")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Pauses (`SIGSTOP`) or resumes (`SIGCONT`) the server on `port`: it keeps its
    /// connections open and answers nothing meanwhile.
    ///
    /// # Errors
    /// When no live server has that port or `kill` fails.
    pub fn signal(&self, port: u16, signal: &str) -> anyhow::Result<()> {
        let child = self
            .servers
            .iter()
            .find(|(p, _)| *p == port)
            .and_then(|(_, c)| c.as_ref())
            .context("no live server on that port")?;
        send_signal(child, signal)
    }

    /// Starts the server on `port` again (after [`RedisSentinel::kill`]), empty and without
    /// a master of its own: Sentinel makes it a replica of the present master.
    ///
    /// # Errors
    /// When it does not start.
    pub fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        self.start_server(Some(port), None).map(drop)
    }

    /// Asks a sentinel for a manual failover (`SENTINEL FAILOVER`): the replica is promoted
    /// and the master demoted while both keep running.
    ///
    /// # Errors
    /// When the sentinel refuses.
    pub fn failover(&self) -> anyhow::Result<()> {
        let (port, _) = self.sentinels.first().context("no sentinel")?;
        let out = cli(*port, &["sentinel", "failover", MASTER_NAME])?;
        if !out.trim().eq_ignore_ascii_case("ok") {
            bail!("SENTINEL FAILOVER answered {out:?}");
        }
        Ok(())
    }

    /// Polls until the sentinels name a master other than `old`, and returns its port.
    ///
    /// # Errors
    /// When no other master is named within `limit`.
    pub fn until_master_moves(&self, old: u16, limit: Duration) -> anyhow::Result<u16> {
        let deadline = Instant::now() + limit;
        let mut now = old;
        wait(deadline, "a new master", || {
            now = self.master_port().unwrap_or(old);
            Ok(now != old)
        })?;
        Ok(now)
    }

    /// Polls until the server on `port` is a replica in sync with its master.
    ///
    /// # Errors
    /// When it is not within `limit`.
    pub fn until_replica(&self, port: u16, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        wait(deadline, "the server to be a replica in sync", || {
            let info = cli(port, &["info", "replication"]).unwrap_or_default();
            Ok(info.contains("role:slave") && info.contains("master_link_status:up"))
        })
    }

    /// Starts a data server (on `port`, or a free one), a replica of `master` if given.
    fn start_server(&mut self, port: Option<u16>, master: Option<u16>) -> anyhow::Result<u16> {
        let (port, child) = spawn_server(&self.dir, port, master)?;
        match self.servers.iter_mut().find(|(p, _)| *p == port) {
            Some(entry) => entry.1 = Some(child),
            None => self.servers.push((port, Some(child))),
        }
        Ok(port)
    }

    /// Starts a sentinel monitoring the master on `master`.
    fn start_sentinel(&mut self, master: u16) -> anyhow::Result<()> {
        let mut last = String::new();
        for _ in 0..10 {
            let port = crate::free_port()?;
            let conf = self.dir.join(format!("sentinel-{port}.conf"));
            let log = self.dir.join(format!("sentinel-{port}.log"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = self.dir.display(),
                    log = log.display(),
                ),
            )?;
            let mut child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("running redis-sentinel (install it with scripts/setup/30-redis.sh)")?;
            match wait_for_log(&mut child, &log, "+monitor master") {
                Ok(()) => {
                    self.sentinels.push((port, child));
                    return Ok(());
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("{e:#}");
                }
            }
        }
        bail!("no redis-sentinel started on a loopback port: {last}")
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (_, child) in &mut self.servers {
            if let Some(child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One standalone `redis-server` process on a loopback port, for tests that pause it
/// (`SIGSTOP`): a container would be paused through Docker instead, less like a stuck host.
pub struct RedisProcess {
    /// Its port.
    port: u16,
    /// The process.
    child: Child,
    /// Its log; removed on drop.
    dir: PathBuf,
}

impl RedisProcess {
    /// Starts it and waits until it accepts connections.
    ///
    /// # Errors
    /// When `redis-server` is missing or does not start.
    pub fn start() -> anyhow::Result<RedisProcess> {
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-process-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (port, child) = spawn_server(&dir, None, None)?;
        Ok(RedisProcess { port, child, dir })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    ///
    /// # Errors
    /// When `kill` fails.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        send_signal(&self.child, signal)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = send_signal(&self.child, "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kill -<signal> <pid>`.
fn send_signal(child: &Child, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{signal} {} failed", child.id());
    }
    Ok(())
}

/// Starts a `redis-server` in `dir` (on `port`, or a free one; a replica of `master` if
/// given) without persistence, and waits until it accepts connections.
fn spawn_server(
    dir: &std::path::Path,
    port: Option<u16>,
    master: Option<u16>,
) -> anyhow::Result<(u16, Child)> {
    let mut last = String::new();
    for _ in 0..10 {
        let port = match port {
            Some(p) => p,
            None => crate::free_port()?,
        };
        let log = dir.join(format!("server-{port}-{}.log", unique()));
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--dbfilename")
            .arg(format!("dump-{port}.rdb"))
            .arg("--logfile")
            .arg(&log);
        if let Some(m) = master {
            cmd.args(["--replicaof", "127.0.0.1", &m.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running redis-server (install it with scripts/setup/30-redis.sh)")?;
        match wait_for_log(&mut child, &log, "Ready to accept connections") {
            Ok(()) => return Ok((port, child)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                last = format!("{e:#}");
            }
        }
    }
    bail!("no redis-server started on a loopback port: {last}")
}

/// The value after the line `name` in `redis-cli`'s listing of a flat map.
fn field<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = listing.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name {
            return lines.next().map(str::trim);
        }
    }
    None
}

/// Polls `done` until it holds or `deadline` passes (several waits can share one deadline).
fn wait(
    deadline: Instant,
    what: &str,
    done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    if !try_wait_until(deadline.saturating_duration_since(Instant::now()), done)? {
        bail!("timed out waiting for {what}");
    }
    Ok(())
}
