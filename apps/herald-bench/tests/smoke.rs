//! Smoke test: the real `herald` binary (single port, embedded store) under tiny `push` and
//! `fanout` runs of the real `herald-bench` binary. Asserts only that each run exited 0 and
//! lost nothing; no timing is checked.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::Value;

const SECRET: &str = "bench-smoke-secret";

/// The `herald` binary of the same target dir and profile as this test, built if missing.
///
/// Tests run from `<target dir>/<profile>/deps/`; `herald` is another package's binary, so
/// Cargo gives no `CARGO_BIN_EXE_herald` here.
fn herald_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from <target>/<profile>/deps");
    let herald = profile_dir.join(format!("herald{}", std::env::consts::EXE_SUFFIX));
    if herald.exists() {
        return herald;
    }
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "herald", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("running cargo build -p herald");
    assert!(status.success(), "cargo build -p herald failed");
    assert!(
        herald.exists(),
        "{} missing after the build",
        herald.display()
    );
    herald
}

/// A running herald, killed on drop.
struct Herald {
    child: Child,
    /// The REST API, `http://127.0.0.1:<port>`.
    api: String,
    /// The Socket.IO connector (another port: port 0 picks two).
    connector: String,
    _data: tempfile::TempDir,
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_herald() -> Herald {
    let data = tempfile::tempdir().expect("a temp dir");
    let mut child = Command::new(herald_binary())
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--connector-listen",
            "127.0.0.1:0",
            "--secret",
            SECRET,
            "--data-dir",
        ])
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let (tx, rx) = channel::<String>();
    let out: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    for stream in out {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("herald did not start; its output:\n{}", seen.join("\n"));
        };
        if let (Some(api), Some(connector)) = (field(&line, "api="), field(&line, "connector=")) {
            return Herald {
                child,
                api,
                connector,
                _data: data,
            };
        }
        seen.push(line);
    }
}

/// The value after `key` in a log line, up to the next space, quote or comma.
fn field(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest.find([' ', '"', ',']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// Runs herald-bench with `args` against `herald`; returns its JSON report.
fn bench(herald: &Herald, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["--url", &herald.connector, "--api", &herald.api])
        .args(["--secret", SECRET, "--sources", "4"])
        .args(["--label", "herald", "--drain", "10"])
        .arg("--server-pid")
        .arg(herald.child.id().to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run herald-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "herald-bench {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"))
}

fn assert_nothing_lost(report: &Value) {
    assert_eq!(report["lost"], 0, "lost messages: {report}");
    assert_eq!(report["connect_failures"], 0, "{report}");
    assert_eq!(report["requests_failed"], 0, "{report}");
    let expected = report["expected"].as_u64().unwrap_or(0);
    assert!(expected > 0, "nothing was pushed: {report}");
    assert_eq!(report["received"].as_u64(), Some(expected), "{report}");
    // Herald asks for an ack of every batch; the bench gives one.
    assert!(report["acks"].as_u64().unwrap_or(0) > 0, "{report}");
}

#[test]
fn push_and_fanout_against_herald_lose_nothing() {
    let herald = start_herald();
    let push = bench(
        &herald,
        &[
            "push", "--conns", "20", "--batch", "5", "--rate", "20", "--secs", "2",
        ],
    );
    assert_eq!(push["scenario"], "push");
    assert_nothing_lost(&push);
    let fanout = bench(&herald, &["fanout", "--conns", "50", "--rounds", "2"]);
    assert_eq!(fanout["scenario"], "fanout");
    assert_nothing_lost(&fanout);
}
