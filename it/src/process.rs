//! The real `herald` binary on 127.0.0.1 with free ports, real HTTP, and real Socket.IO
//! clients (npm `socket.io-client`, PyPI `python-socketio`) driven line by line by the scripts
//! in `it/clients/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// How long any single wait in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `herald-e2e-<tag>-<pid>-<n>` (a leftover of that name is removed first).
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "herald-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `herald` process.
pub struct Herald {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>` of the REST API.
    pub api: String,
    /// `http://127.0.0.1:<port>` of the Socket.IO connector.
    pub connector: String,
    /// The client auth secret the server was started with.
    pub secret: String,
    /// Every line the server logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The secret the tests start servers with.
pub const SECRET: &str = "e2e-secret";

impl Herald {
    /// Starts `herald` with free ports, `data_dir`, the test secret and `extra` flags, and waits
    /// for its start-up line.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Herald {
        Herald::start_under(&[], data_dir, extra)
    }

    /// Like [`Herald::start`], run under `wrapper`: a command that runs the binary named after
    /// its arguments in its own place (`prlimit --nofile=256:256 --`).
    pub fn start_under(wrapper: &[&str], data_dir: &Path, extra: &[&str]) -> Herald {
        let mut args: Vec<String> = vec![
            "--api-listen".into(),
            "127.0.0.1:0".into(),
            "--connector-listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--secret".into(),
            SECRET.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Herald::spawn(wrapper, &args)
    }

    /// Starts `herald` with exactly `args` and waits for its start-up line.
    pub fn start_args(args: &[String]) -> Herald {
        Herald::spawn(&[], args)
    }

    fn spawn(wrapper: &[&str], args: &[String]) -> Herald {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(herald_bin());
                c
            }
            None => Command::new(herald_bin()),
        };
        let mut child = cmd
            .args(args)
            .env("HERALD_LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + WAIT;
        let secret = args
            .iter()
            .position(|a| a == "--secret")
            .map(|i| args[i + 1].clone())
            .unwrap_or_default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("herald started") => {
                    let api = field(&line, "api=").expect("api= in the start-up line");
                    let connector =
                        field(&line, "connector=").expect("connector= in the start-up line");
                    return Herald {
                        child: Some(child),
                        api,
                        connector,
                        secret,
                        log,
                    };
                }
                Ok(_) => {}
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    panic!(
                        "herald did not start (exit: {status:?}); its output:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        crate::wait::exit_within(&mut c, WAIT).expect("herald did not exit after SIGTERM")
    }

    /// Whether any logged line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// HMAC connect auth for `client` on `slot`, signed now with the server's secret.
    pub fn auth(&self, client: &str, slot: u8) -> Value {
        hmac_auth(&self.secret, client, slot, unix_secs())
    }

    /// Connects `client` (slot 0) to this node's connector with the official Node client,
    /// receives one message, acknowledges it, and disconnects; the message.
    pub fn receive_and_ack(&self, client: &str) -> Value {
        let mut c = Client::start(
            Lib::Node,
            serde_json::json!({
                "url": self.connector,
                "auth": self.auth(client, 0),
                "transports": ["websocket"],
                "ackPolicy": "manual",
            }),
        );
        c.wait_for("connect");
        let got = c.messages(1).remove(0);
        c.send(serde_json::json!({"cmd": "ack"}));
        c.wait_for("acked");
        got
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The value after `key` up to the next space in `line`.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let end = rest.find([' ', '"', ',']).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// The wall clock in Unix seconds (what connect auth signs).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// HMAC connect auth as DESIGN.md defines it: hex HMAC-SHA256(secret, `"<ts>:<client_id>"`).
pub fn hmac_auth(secret: &str, client: &str, slot: u8, ts: u64) -> Value {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}:{client}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    json!({ "client_id": client, "ts": ts, "sig": sig, "slot": slot })
}

/// An HTTP answer: status and parsed JSON body (or `Value::String` with the raw text).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body as JSON, or `Value::String` holding the raw text when it is not JSON.
    pub body: Value,
    /// The `Content-Type` header (empty when absent).
    pub content_type: String,
}

/// One HTTP request with a JSON or raw body.
pub async fn http(
    method: &str,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = surf::Request::new(method.parse().unwrap(), url.parse().unwrap());
    for (k, v) in headers {
        req.insert_header(*k, *v);
    }
    if let Some((ctype, bytes)) = body {
        req.set_body(bytes);
        req.insert_header("content-type", ctype);
    }
    let client = surf::Client::new();
    let mut res = client.send(req).await.expect("HTTP request");
    let status = u16::from(res.status());
    let content_type = res
        .content_type()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let text = res.body_string().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        content_type,
    }
}

/// The value of the series `name` (without labels: the first sample of that name) in
/// `GET <api>/metrics`; `None` when it is not there.
pub async fn metric(api: &str, name: &str) -> Option<f64> {
    let answer = http("GET", &format!("{api}/metrics"), None, &[]).await;
    let Value::String(text) = answer.body else {
        return None;
    };
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `POST /push` with a JSON body.
pub async fn push(api: &str, body: Value) -> Answer {
    http(
        "POST",
        &format!("{api}/push"),
        Some(("application/json", serde_json::to_vec(&body).unwrap())),
        &[],
    )
    .await
}

/// `POST /push` with a JSON body and `Authorization: Bearer <key>` (a node with API keys).
pub async fn push_keyed(api: &str, key: &str, body: Value) -> Answer {
    http(
        "POST",
        &format!("{api}/push"),
        Some(("application/json", serde_json::to_vec(&body).unwrap())),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await
}

/// The folder of the client scripts (`client.js`, `client.py`, `many.js`, `openapi_check.py`).
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The `herald` binary the tests run: `HERALD_BIN` when set, else the one built beside the
/// running test (tests run from `<target>/<profile>/deps/`, binaries sit in `<target>/<profile>/`).
/// `cargo test --workspace` builds it before any test runs; a test of this crate run alone
/// (`cargo test -p herald-it`) does not, so a missing binary, or one older than the workspace's
/// sources, stops the test with the command to run instead of testing stale code.
///
/// # Panics
/// When the binary is missing or older than the sources.
pub fn herald_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HERALD_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from <target>/<profile>/deps/");
        let bin = profile_dir.join(format!("herald{}", std::env::consts::EXE_SUFFIX));
        let built = modified(&bin);
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sources = newest_source(&workspace);
        match built {
            None => panic!(
                "{} is missing: run `cargo build -p herald` first (or `cargo test --workspace`)",
                bin.display()
            ),
            Some(built) if sources.is_some_and(|s| s > built) => panic!(
                "{} is older than the sources: run `cargo build -p herald` first (or `cargo test \
                 --workspace`)",
                bin.display()
            ),
            Some(_) => bin,
        }
    })
    .clone()
}

/// The newest modification time of the Rust sources and manifests the server is built from.
fn newest_source(workspace: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if path.extension().is_some_and(|e| e == "rs")
                || path.file_name().is_some_and(|n| n == "Cargo.toml")
            {
                *newest = (*newest).max(modified(&path));
            }
        }
    }
    let mut newest = None;
    for krate in [
        "core",
        "transport-socketio",
        "store-embedded",
        "store-mongo",
        "broker-redis",
        "apps/herald",
    ] {
        walk(&workspace.join(krate).join("src"), &mut newest);
        newest = newest.max(modified(&workspace.join(krate).join("Cargo.toml")));
    }
    newest.max(modified(&workspace.join("Cargo.lock")))
}

pub(crate) fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Where `scripts/setup/20-test-clients.sh` put the Node packages and the Python venv.
pub fn test_env() -> PathBuf {
    let dir = std::env::var_os("HERALD_TEST_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-env"));
    assert!(
        dir.join("node_modules/socket.io-client").exists() && dir.join("venv/bin/python").exists(),
        "the test clients are missing from {}: run scripts/setup/20-test-clients.sh",
        dir.display()
    );
    dir
}

/// Which real client library drives a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    /// npm `socket.io-client` 4.x.
    Node,
    /// npm `socket.io-client` 2.x (Engine.IO v3): no CONNECT auth, so its options take
    /// `query` and `extraHeaders` instead of `auth`.
    NodeV2,
    /// npm `socket.io-client` 1.4, the client xiucall-push's apps used (Engine.IO v3), with
    /// the same options as [`Lib::NodeV2`].
    NodeV1,
    /// PyPI `python-socketio`.
    Python,
}

/// A real Socket.IO client process, driven by JSON lines.
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    events: Receiver<Value>,
    /// Every event seen so far, in order.
    pub seen: Vec<Value>,
}

impl Client {
    /// Starts a client of `lib` with `options` (see `it/clients/client.js`).
    pub fn start(lib: Lib, options: Value) -> Client {
        let env = test_env();
        let scripts = clients_dir();
        let mut cmd = match lib {
            Lib::Node | Lib::NodeV2 | Lib::NodeV1 => {
                let mut c = Command::new("node");
                c.arg(scripts.join("client.js"))
                    .env("NODE_PATH", env.join("node_modules"));
                c
            }
            Lib::Python => {
                let mut c = Command::new(env.join("venv/bin/python"));
                c.arg("-u").arg(scripts.join("client.py"));
                c
            }
        };
        let mut options = options;
        match lib {
            Lib::NodeV2 => options["legacy"] = json!("socket.io-client-v2"),
            Lib::NodeV1 => options["legacy"] = json!("socket.io-client-v1"),
            Lib::Node | Lib::Python => {}
        }
        let mut child = cmd
            .arg(options.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn client");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => {
                        let _ = tx.send(json!({ "ev": "noise", "line": line }));
                    }
                }
            }
        });
        Client {
            child,
            stdin,
            events: rx,
            seen: Vec::new(),
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("client stdin");
        self.stdin.flush().unwrap();
    }

    /// Waits for the next event named `ev`, returning it; earlier events are kept in `seen`.
    pub fn wait_for(&mut self, ev: &str) -> Value {
        self.wait_for_any(&[ev])
    }

    /// Waits for the next event named one of `evs`, returning it; earlier events are kept in
    /// `seen`.
    pub fn wait_for_any(&mut self, evs: &[&str]) -> Value {
        let ev = evs.join(" or ");
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if evs.iter().any(|e| v["ev"] == *e) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {ev:?} event within {WAIT:?}; seen: {:?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("client exited before {ev:?}; seen: {:?}", self.seen)
                }
            }
        }
    }

    /// Collects delivered messages until `n` have arrived; returns them in arrival order.
    pub fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        while got.len() < n {
            let m = self.wait_for("message");
            got.extend(m["batch"].as_array().cloned().unwrap_or_default());
        }
        got
    }

    /// Events that arrive within `d`, without failing when none do.
    pub fn drain_for(&mut self, d: Duration) -> Vec<Value> {
        let deadline = Instant::now() + d;
        let mut got = Vec::new();
        while let Ok(v) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v.clone());
            got.push(v);
        }
        got
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
