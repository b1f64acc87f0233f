//! Redis and the MongoDB-wire server in containers.

use std::time::Duration;

use anyhow::{Context, bail};
use testcontainers::bollard::models::PortBinding;
use testcontainers::core::{ContainerPort, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

use crate::wait::try_poll_until;
use crate::{DEFAULT_MONGO_IMAGE, DEFAULT_REDIS_IMAGE, MONGO_IMAGE_VAR, REDIS_IMAGE_VAR};

/// How long a container may take to print its ready line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server an image holds, which decides its command and its ready line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// Our `docker import`ed Redis (`scripts/images/build-redis.sh`): its CMD is complete.
    LocalRedis,
    /// The official `redis` image: its entrypoint turns protected mode off by itself.
    OfficialRedis,
    /// Our SecantusDB image (`scripts/images/build-secantusdb.sh`): logs to stderr.
    SecantusDb,
    /// The official `mongo` image: logs JSON to stdout.
    OfficialMongo,
}

impl ImageKind {
    /// Recognises the image by its name (repository without the tag).
    ///
    /// # Errors
    /// When the name is not one of the known Redis or MongoDB-wire images.
    pub fn of(image: &str) -> anyhow::Result<ImageKind> {
        let (name, _) = split_image(image);
        let base = name.rsplit('/').next().unwrap_or(name);
        Ok(match base {
            _ if name.starts_with("herald-test/") && base == "redis" => ImageKind::LocalRedis,
            "redis" => ImageKind::OfficialRedis,
            _ if base.contains("secantus") => ImageKind::SecantusDb,
            "mongo" | "mongodb-community-server" => ImageKind::OfficialMongo,
            _ => bail!(
                "unknown image {image:?}: expected herald-test/redis, redis, herald-test/secantusdb or mongo"
            ),
        })
    }

    /// The port the server listens on inside the container.
    fn port(self) -> u16 {
        match self {
            ImageKind::LocalRedis | ImageKind::OfficialRedis => 6379,
            ImageKind::SecantusDb | ImageKind::OfficialMongo => 27017,
        }
    }

    /// The line the server prints once it accepts connections, and where.
    fn ready(self) -> WaitFor {
        if self.logs_to_stderr() {
            WaitFor::message_on_stderr(ready_text(self))
        } else {
            WaitFor::message_on_stdout(ready_text(self))
        }
    }

    /// SecantusDB logs to stderr, the others to stdout.
    fn logs_to_stderr(self) -> bool {
        self == ImageKind::SecantusDb
    }

    /// The command to run, when the image's default is not what tests need. `durable`: the
    /// data must survive a stop and start of the container (it lives in the container's own
    /// filesystem, removed with the container); otherwise it may be kept in memory.
    fn cmd(self, durable: bool) -> Option<Vec<&'static str>> {
        match self {
            ImageKind::LocalRedis => None,
            ImageKind::OfficialRedis => {
                Some(vec!["redis-server", "--save", "", "--appendonly", "no"])
            }
            // --standalone: otherwise it announces a replica set at its bind address.
            ImageKind::SecantusDb => Some(vec![
                "/usr/local/bin/secantusd",
                "--host",
                "0.0.0.0",
                "--port",
                "27017",
                "--storage-path",
                if durable { "/data/db" } else { ":memory:" },
                "--standalone",
            ]),
            ImageKind::OfficialMongo => Some(vec!["mongod", "--bind_ip_all"]),
        }
    }
}

/// The image named by `var`, or `default` when it is unset or empty.
pub fn image_from_env(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(image) if !image.trim().is_empty() => image.trim().to_string(),
        _ => default.to_string(),
    }
}

/// `name:tag` → (`name`, `tag`); a missing tag is `latest`. A `:` before the last `/` is a
/// registry port, not a tag.
fn split_image(image: &str) -> (&str, &str) {
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => (
            &image[..last_slash + colon],
            &image[last_slash + colon + 1..],
        ),
        None => (image, "latest"),
    }
}

/// One server container with its port published on a fixed loopback port, so that a restart
/// keeps its URL.
struct Server {
    /// The container; dropping it removes the container.
    container: ContainerAsync<GenericImage>,
    /// What it runs (its ready line, for restarts).
    kind: ImageKind,
    /// The host port on 127.0.0.1 that reaches the server.
    host_port: u16,
}

impl Server {
    async fn start(image: &str, durable: bool) -> anyhow::Result<Server> {
        let kind = ImageKind::of(image)?;
        let (name, tag) = split_image(image);
        let mut last_error = None;
        // The free port may be taken by someone else between the probe and docker's bind.
        for _ in 0..3 {
            let host_port = crate::free_port()?;
            let request = request(name, tag, kind, host_port, durable);
            match request.start().await {
                Ok(container) => {
                    log::info!("started {image} on 127.0.0.1:{host_port}");
                    return Ok(Server {
                        container,
                        kind,
                        host_port,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        let e = last_error.map_or_else(|| anyhow::anyhow!("no attempt made"), anyhow::Error::from);
        Err(e).with_context(|| {
            format!(
                "starting {image} (no registry is reachable here: the image must exist locally; \
                 scripts/setup/50-images.sh builds the default ones)"
            )
        })
    }

    /// Stops the server (the container stays, with its port binding).
    async fn stop(&self) -> anyhow::Result<()> {
        self.container
            .stop()
            .await
            .context("stopping the container")
    }

    /// Starts a stopped server again and waits until it prints its ready line once more.
    async fn start_again(&self) -> anyhow::Result<()> {
        let ready = ready_text(self.kind);
        let before = self.ready_count(ready).await?;
        self.container
            .start()
            .await
            .context("restarting the container")?;
        let printed = try_poll_until(STARTUP_TIMEOUT, async || {
            Ok::<_, anyhow::Error>(self.ready_count(ready).await? > before)
        });
        if !printed.await? {
            bail!(
                "the container did not print {ready:?} within {STARTUP_TIMEOUT:?} after a restart"
            );
        }
        Ok(())
    }

    async fn ready_count(&self, ready: &str) -> anyhow::Result<usize> {
        let log = if self.kind.logs_to_stderr() {
            self.container.stderr_to_vec().await?
        } else {
            self.container.stdout_to_vec().await?
        };
        Ok(String::from_utf8_lossy(&log).matches(ready).count())
    }
}

/// The ready line as text (the same one [`ImageKind::ready`] waits for).
fn ready_text(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::LocalRedis | ImageKind::OfficialRedis => "Ready to accept connections",
        ImageKind::SecantusDb => "secantus listening on",
        ImageKind::OfficialMongo => "Waiting for connections",
    }
}

fn request(
    name: &str,
    tag: &str,
    kind: ImageKind,
    host_port: u16,
    durable: bool,
) -> ContainerRequest<GenericImage> {
    let port: ContainerPort = kind.port().tcp();
    let image = GenericImage::new(name, tag)
        .with_exposed_port(port)
        .with_wait_for(kind.ready());
    // Publish on loopback only, on a port we know before start (kept across restarts).
    let binding_key = format!("{}/tcp", kind.port());
    let mut request = image
        .with_startup_timeout(STARTUP_TIMEOUT)
        .with_host_config_modifier(move |host| {
            host.publish_all_ports = Some(false);
            host.port_bindings = Some(
                [(
                    binding_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".to_string()),
                        host_port: Some(host_port.to_string()),
                    }]),
                )]
                .into_iter()
                .collect(),
            );
        });
    if let Some(cmd) = kind.cmd(durable) {
        request = request.with_cmd(cmd);
    }
    request
}

/// A Redis server in a container, reachable at [`Redis::url`] until dropped.
pub struct Redis {
    /// The container and its port.
    server: Server,
}

impl Redis {
    /// Starts the image named by `HERALD_IT_REDIS_IMAGE` (default: the local image) and waits
    /// until it accepts connections.
    ///
    /// # Errors
    /// When the engine is not running, the image is missing or unknown, or Redis does not get
    /// ready within a minute.
    pub async fn start() -> anyhow::Result<Redis> {
        Redis::start_image(&image_from_env(REDIS_IMAGE_VAR, DEFAULT_REDIS_IMAGE)).await
    }

    /// Starts the given Redis image (`name:tag`).
    ///
    /// # Errors
    /// As [`Redis::start`].
    pub async fn start_image(image: &str) -> anyhow::Result<Redis> {
        Ok(Redis {
            server: Server::start(image, false).await?,
        })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.server.host_port)
    }

    /// The loopback port that reaches Redis.
    pub fn port(&self) -> u16 {
        self.server.host_port
    }

    /// Stops Redis (clients see their connections drop); [`Redis::start_again`] brings it back
    /// on the same URL, empty.
    ///
    /// # Errors
    /// When the engine fails to stop the container.
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.server.stop().await
    }

    /// Starts a stopped Redis again on the same URL and waits until it is ready.
    ///
    /// # Errors
    /// When the engine fails to start it or it does not get ready within a minute.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        self.server.start_again().await
    }
}

/// A MongoDB-wire server in a container, reachable at [`Mongo::url`] until dropped.
pub struct Mongo {
    /// The container and its port.
    server: Server,
}

impl Mongo {
    /// Starts the image named by `HERALD_IT_MONGO_IMAGE` (default: the local SecantusDB image)
    /// and waits until it accepts connections.
    ///
    /// # Errors
    /// When the engine is not running, the image is missing or unknown, or the server does not
    /// get ready within a minute.
    pub async fn start() -> anyhow::Result<Mongo> {
        Mongo::start_image(&image_from_env(MONGO_IMAGE_VAR, DEFAULT_MONGO_IMAGE)).await
    }

    /// Starts the given MongoDB-wire image (`name:tag`).
    ///
    /// # Errors
    /// As [`Mongo::start`].
    pub async fn start_image(image: &str) -> anyhow::Result<Mongo> {
        Ok(Mongo {
            server: Server::start(image, false).await?,
        })
    }

    /// Like [`Mongo::start`], but the data survives [`Mongo::stop`] and
    /// [`Mongo::start_again`] (SecantusDB stores it on the container's disk instead of in
    /// memory; the official image always does), for tests of an outage.
    ///
    /// # Errors
    /// As [`Mongo::start`].
    pub async fn start_durable() -> anyhow::Result<Mongo> {
        let image = image_from_env(MONGO_IMAGE_VAR, DEFAULT_MONGO_IMAGE);
        Ok(Mongo {
            server: Server::start(&image, true).await?,
        })
    }

    /// Stops the server: clients see connections refused until [`Mongo::start_again`].
    ///
    /// # Errors
    /// When the engine fails to stop the container.
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.server.stop().await
    }

    /// Starts a stopped server again on the same URL and waits until it is ready.
    ///
    /// # Errors
    /// When the engine fails to start it or it does not get ready within a minute.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        self.server.start_again().await
    }

    /// `mongodb://127.0.0.1:<port>/?directConnection=true`: a direct connection, so the driver
    /// never follows an address the server announces.
    pub fn url(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            self.server.host_port
        )
    }

    /// The loopback port that reaches the server.
    pub fn port(&self) -> u16 {
        self.server.host_port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_name() {
        assert_eq!(
            ImageKind::of("herald-test/redis:7.0").unwrap(),
            ImageKind::LocalRedis
        );
        assert_eq!(ImageKind::of("redis:7").unwrap(), ImageKind::OfficialRedis);
        assert_eq!(
            ImageKind::of("docker.io/library/redis").unwrap(),
            ImageKind::OfficialRedis
        );
        assert_eq!(
            ImageKind::of("herald-test/secantusdb:0.7.0b3").unwrap(),
            ImageKind::SecantusDb
        );
        assert_eq!(ImageKind::of("mongo:8").unwrap(), ImageKind::OfficialMongo);
        assert!(ImageKind::of("postgres:16").is_err());
    }

    #[test]
    fn image_names_split_at_the_tag() {
        assert_eq!(split_image("redis:7"), ("redis", "7"));
        assert_eq!(split_image("redis"), ("redis", "latest"));
        assert_eq!(
            split_image("localhost:5000/a/redis:7.0"),
            ("localhost:5000/a/redis", "7.0")
        );
        assert_eq!(
            split_image("localhost:5000/redis"),
            ("localhost:5000/redis", "latest")
        );
    }
}
