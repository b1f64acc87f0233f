//! Nodes of a cluster test: real `herald` processes on one MongoDB and one Redis, each with
//! its own data directory, in the role a test asks for.

use crate::process::{Herald, TempDir};
use crate::tools::config_file;

/// Starts the nodes of one cluster and keeps their data directories until it is dropped.
pub struct ClusterNodes {
    mongo: String,
    redis: String,
    /// A configuration file's text every node reads, if any.
    config: Option<String>,
    dirs: Vec<TempDir>,
}

impl ClusterNodes {
    /// Nodes on the MongoDB at `mongo` and the Redis at `redis`, each reading `config` (TOML)
    /// as its configuration file when given.
    pub fn new(mongo: &str, redis: &str, config: Option<&str>) -> ClusterNodes {
        ClusterNodes {
            mongo: mongo.to_owned(),
            redis: redis.to_owned(),
            config: config.map(str::to_owned),
            dirs: Vec::new(),
        }
    }

    /// Starts a node of `role` (`all`, `api`, `connector`) named `name` (its node id and its
    /// data directory's tag), and waits until it is up.
    pub fn start(&mut self, role: &str, name: &str) -> Herald {
        let dir = TempDir::new(name);
        let mut args = vec![
            "--role",
            role,
            "--mongo",
            &self.mongo,
            "--redis",
            &self.redis,
            "--node-id",
            name,
        ];
        let file = self.config.as_deref().map(|text| config_file(&dir.0, text));
        if let Some(file) = &file {
            args.extend(["--config", file.as_str()]);
        }
        let h = Herald::start(&dir.0, &args);
        self.dirs.push(dir);
        h
    }
}
