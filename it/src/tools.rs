//! Real command-line clients for the hostile-client tests: `curl`, Python `requests` (the test
//! environment's venv), and the workspace's other binaries (`herald-cli`, `herald-bench`) run
//! as a user would run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::process::{herald_bin, modified, test_env};

/// An HTTP answer as `curl` saw it: status, raw head and raw body bytes.
#[derive(Debug)]
pub struct Raw {
    /// The status code of the final answer.
    pub status: u16,
    /// The answer's head (status line and headers), as text.
    pub head: String,
    /// The body exactly as received.
    pub body: Vec<u8>,
}

impl Raw {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}\n{}", self.text(), self.head))
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Runs `curl -s -i <args>` and splits its output into head and body.
///
/// # Panics
/// When curl cannot run or fails (connection refused, ...).
pub fn curl(args: &[&str]) -> Raw {
    curl_with_input(args, &[])
}

/// Runs `curl -s <args>` and returns what it printed (for `-w` formats, several URLs, `-o`).
///
/// # Panics
/// When curl cannot run or fails (connection refused, ...).
pub fn curl_output(args: &[&str]) -> String {
    String::from_utf8(run_curl(args, &[])).expect("UTF-8 output")
}

/// [`curl`] with `input` on its standard input: `--data-binary @-` sends it as the body
/// (bodies too large for a command-line argument).
///
/// # Panics
/// When curl cannot run or fails (connection refused, ...).
pub fn curl_with_input(args: &[&str], input: &[u8]) -> Raw {
    let mut with_head = vec!["-i"];
    with_head.extend_from_slice(args);
    let bytes = run_curl(&with_head, input);
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head in curl's output");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Raw {
        status,
        head,
        body: bytes[split + 4..].to_vec(),
    }
}

/// Runs `script` with the test environment's Python (which has `requests`), passing `args`
/// as `sys.argv[1:]`, and parses the last line it prints as JSON.
///
/// # Panics
/// When the script fails or prints no JSON.
pub fn python(script: &str, args: &[&str]) -> Value {
    let out = Command::new(test_env().join("venv/bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("python printed no JSON ({e}): {stdout}"))
}

/// A workspace binary built beside `herald` (`cargo test --workspace` builds every one).
///
/// # Panics
/// When it is missing or older than its crate's sources.
pub fn workspace_bin(name: &str, crate_dir: &str) -> PathBuf {
    let bin = herald_bin().with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = modified(&bin).unwrap_or_else(|| {
        panic!(
            "{} is missing: run `cargo build -p {name}` first (or `cargo test --workspace`)",
            bin.display()
        )
    });
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    let newest = std::fs::read_dir(&src)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| modified(&e.path()))
        .max();
    assert!(
        newest.is_none_or(|s| s <= built),
        "{} is older than its sources: run `cargo build -p {name}` first",
        bin.display()
    );
    bin
}

/// Runs `bin` with `args` and exactly the environment `env` added to a clean one (only `PATH`
/// kept), the way a user with those variables set would.
///
/// # Panics
/// When the binary cannot be started.
pub fn run_with_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()))
}

/// Writes `text` as `herald.toml` in `dir` and returns its path, for `--config`.
///
/// # Panics
/// When the file cannot be written.
pub fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Standard output then standard error of a finished process, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that none of `secrets` shows in `text`, naming `what` showed it.
///
/// # Panics
/// When one does.
pub fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows a secret ({s}):\n{text}");
    }
}

/// Runs `curl -s -S --max-time 30 <args>` with `input` on its standard input; its stdout.
fn run_curl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("curl")
        .args(["-s", "-S", "--max-time", "30"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl");
    let mut stdin = child.stdin.take().expect("curl's stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("curl's output");
    let _ = writer.join();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
