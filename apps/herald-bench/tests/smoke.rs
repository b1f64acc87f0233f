//! Smoke test: the real `herald` binary (single port, embedded store) under tiny `push` and
//! `fanout` runs of the real `herald-bench` binary. Asserts only that each run exited 0 and
//! lost nothing; no timing is checked.

use std::process::{Command, Stdio};

use herald_it::{Herald, SECRET, TempDir};
use serde_json::Value;

/// A herald on free ports with its own data directory (the harness of the end-to-end tests).
fn start_herald() -> (Herald, TempDir) {
    let dir = TempDir::new("bench-smoke");
    (Herald::start(&dir.0, &[]), dir)
}

/// Runs herald-bench with `args` against `herald`; returns its JSON report.
fn bench(herald: &Herald, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["--url", &herald.connector, "--api", &herald.api])
        .args(["--secret", SECRET, "--sources", "4"])
        .args(["--label", "herald", "--drain", "10"])
        .arg("--server-pid")
        .arg(herald.pid().to_string())
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
    let (herald, _dir) = start_herald();
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
