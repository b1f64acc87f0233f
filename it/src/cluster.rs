//! A 3-master Redis Cluster of `redis-server` processes on loopback ports, each master with a
//! replica when asked (failover tests).
//!
//! Why processes on the host and not containers: a cluster tells its clients where each slot
//! lives, at the address each node announces. Behind Docker's port mapping a node would
//! announce its bridge address (off limits to tests) or need `cluster-announce-*` juggling;
//! host processes bound to 127.0.0.1 announce exactly the address clients use. Debian's
//! `redis-server` is installed by `scripts/setup/30-redis.sh` anyway (the image is built from
//! it), and starting three processes takes a fraction of a second.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::wait::{try_wait_until, wait_until};

/// How many masters the cluster has (the smallest cluster `redis-cli --cluster create` makes).
const MASTERS: usize = 3;

/// How long the cluster may take to start and agree on its slots.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running 3-master Redis Cluster; dropping it stops the processes and removes their files.
pub struct RedisCluster {
    /// One `redis-server` per node (`None` once killed).
    nodes: Vec<Option<Child>>,
    /// The loopback ports of the nodes, in start order.
    ports: Vec<u16>,
    /// Replicas per master.
    replicas: usize,
    /// `cluster-node-timeout`, ms: how long a master may be silent before its replica
    /// takes over.
    node_timeout_ms: u32,
    /// Logs and cluster config files of the nodes; removed on drop.
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three `redis-server` processes in cluster mode on free loopback ports, assigns
    /// the 16384 slots among them, and waits until every node reports `cluster_state:ok`.
    ///
    /// Blocking (it runs processes and polls them): call it at the start of a test.
    ///
    /// # Errors
    /// When `redis-server` or `redis-cli` is missing (`scripts/setup/30-redis.sh` installs
    /// them), or the cluster is not ready within 30 seconds.
    pub fn start() -> anyhow::Result<RedisCluster> {
        RedisCluster::start_nodes(0, 5000)
    }

    /// Three masters each with one replica (six processes); a master silent for 1 s counts
    /// as failed and its replica takes over its slots.
    ///
    /// # Errors
    /// As [`RedisCluster::start`].
    pub fn start_with_replicas() -> anyhow::Result<RedisCluster> {
        RedisCluster::start_nodes(1, 1000)
    }

    fn start_nodes(replicas: usize, node_timeout_ms: u32) -> anyhow::Result<RedisCluster> {
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-cluster-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            ports: Vec::new(),
            replicas,
            node_timeout_ms,
            dir,
        };
        for _ in 0..MASTERS * (1 + replicas) {
            let (child, port) = cluster.start_node()?;
            cluster.nodes.push(Some(child));
            cluster.ports.push(port);
        }
        cluster.create()?;
        Ok(cluster)
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`, the form herald's Redis broker
    /// takes.
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.addresses().join(","))
    }

    /// `redis://127.0.0.1:<port>` of each master, the form the redis crate's cluster client
    /// takes.
    pub fn node_urls(&self) -> Vec<String> {
        self.addresses()
            .iter()
            .map(|a| format!("redis://{a}"))
            .collect()
    }

    /// The loopback ports of every node, in start order (all masters when started without
    /// replicas).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The ports of the nodes that are masters now, as a live node sees them.
    ///
    /// # Errors
    /// When no live node answers.
    pub fn masters(&self) -> anyhow::Result<Vec<u16>> {
        let nodes = self.cluster_nodes()?;
        Ok(nodes
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|addr| addr.split('@').next()?.rsplit(':').next()?.parse().ok())
            .collect())
    }

    /// `kill -9` of the node on `port`.
    ///
    /// # Errors
    /// When no live node has that port.
    pub fn kill(&mut self, port: u16) -> anyhow::Result<()> {
        let i = self
            .ports
            .iter()
            .position(|p| *p == port)
            .context("no such node")?;
        let mut child = self.nodes[i].take().context("already killed")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Polls until the live nodes count the node on `port` as failed, a replica serves its
    /// slots (three live masters) and the cluster state is ok again.
    ///
    /// # Errors
    /// When that does not happen within `limit`.
    pub fn until_failed_over(&self, port: u16, limit: Duration) -> anyhow::Result<()> {
        let mut nodes = String::new();
        let failed_over = wait_until(limit, || {
            nodes = self.cluster_nodes().unwrap_or_default();
            let failed = nodes
                .lines()
                .any(|l| l.contains(&format!(":{port}@")) && l.contains(",fail"));
            let masters = self.masters().unwrap_or_default();
            failed && masters.len() == MASTERS && !masters.contains(&port) && self.state_ok()
        });
        if !failed_over {
            bail!("node {port}: no failover within {limit:?}: {nodes}");
        }
        Ok(())
    }

    /// `CLUSTER NODES` as the first live node answers it.
    fn cluster_nodes(&self) -> anyhow::Result<String> {
        for (port, node) in self.ports.iter().zip(&self.nodes) {
            if node.is_none() {
                continue;
            }
            if let Ok(out) = cli(*port, &["cluster", "nodes"])
                && !out.is_empty()
            {
                return Ok(out);
            }
        }
        bail!("no live node answered CLUSTER NODES")
    }

    /// Whether every live node reports `cluster_state:ok`.
    fn state_ok(&self) -> bool {
        self.ports.iter().zip(&self.nodes).all(|(port, node)| {
            node.is_none()
                || cli(*port, &["cluster", "info"]).is_ok_and(|o| o.contains("cluster_state:ok"))
        })
    }

    fn addresses(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// Starts one node on a free port whose cluster bus port (port + 10000) is free as well,
    /// and waits until it accepts connections. Retries when another process wins the port.
    fn start_node(&self) -> anyhow::Result<(Child, u16)> {
        let mut last = String::new();
        for _ in 0..10 {
            let port = crate::free_port()?;
            if port > 55535 || std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_err() {
                continue;
            }
            let log = self.dir.join(format!("node-{port}.log"));
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(self.dir.join(format!("nodes-{port}.conf")))
                .args(["--cluster-node-timeout", &self.node_timeout_ms.to_string()])
                // A replica takes over however long its master was silent (the default factor
                // 10 lets a replica that lost its master for long refuse, as under a loaded CI).
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("running redis-server (install it with scripts/setup/30-redis.sh)")?;
            let mut child = child;
            match wait_for_log(&mut child, &log, "Ready to accept connections") {
                Ok(()) => return Ok((child, port)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("{e:#}");
                }
            }
        }
        bail!("no cluster node started on a free loopback port: {last}")
    }

    /// Assigns the slots with `redis-cli --cluster create` and waits until every node agrees.
    fn create(&self) -> anyhow::Result<()> {
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(self.addresses())
            .args([
                "--cluster-replicas",
                &self.replicas.to_string(),
                "--cluster-yes",
            ])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli (install it with scripts/setup/30-redis.sh)")?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mut waiting = 0;
        let ready = try_wait_until(STARTUP_TIMEOUT, || {
            for port in &self.ports {
                if !cli(*port, &["cluster", "info"])?.contains("cluster_state:ok") {
                    waiting = *port;
                    return Ok::<_, anyhow::Error>(false);
                }
            }
            Ok(true)
        })?;
        if !ready {
            bail!(
                "node 127.0.0.1:{waiting} did not report cluster_state:ok within {STARTUP_TIMEOUT:?}"
            );
        }
        log::info!("redis cluster ready: {}", self.url());
        Ok(())
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli -p <port> <args>`'s output.
pub(crate) fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running redis-cli (install it with scripts/setup/30-redis.sh)")?;
    if !out.status.success() {
        bail!(
            "redis-cli -p {port} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls the node's log until it contains `ready`, failing if the process exits first.
pub(crate) fn wait_for_log(child: &mut Child, log: &Path, ready: &str) -> anyhow::Result<()> {
    let logged = try_wait_until(STARTUP_TIMEOUT, || {
        if let Ok(file) = File::open(log) {
            let lines = BufReader::new(file).lines();
            let mut text = String::new();
            for line in lines.map_while(Result::ok) {
                if line.contains(ready) {
                    return Ok(true);
                }
                text.push_str(&line);
                text.push('\n');
            }
            if let Some(status) = child.try_wait()? {
                bail!("redis-server exited ({status}): {text}");
            }
        } else if let Some(status) = child.try_wait()? {
            bail!(
                "redis-server exited ({status}) before writing {}",
                log.display()
            );
        }
        Ok(false)
    })?;
    if !logged {
        bail!("redis-server did not log {ready:?} within {STARTUP_TIMEOUT:?}");
    }
    Ok(())
}

/// A number distinct per call within this process (for directory names).
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
