//! Smoke test: the real `herald` binary (single port, embedded store) under tiny `push` and
//! `fanout` runs of the real `herald-bench` binary; one on the MongoDB-wire server in a
//! container, with its database operations counted and the database's own bound measured.
//! Asserts only that each run exited 0, lost nothing and reported its figures; no timing is
//! checked.

use std::process::{Command, Stdio};

use herald_it::{Herald, Mongo, SECRET, TempDir};
use serde_json::Value;

/// A herald on free ports with its own data directory (the harness of the end-to-end tests).
fn start_herald() -> (Herald, TempDir) {
    let dir = TempDir::new("bench-smoke");
    (Herald::start(&dir.0, &[]), dir)
}

/// Runs herald-bench with `args` against `herald`; returns its JSON report.
fn bench(herald: &Herald, args: &[&str]) -> Value {
    run_bench(
        &[
            "--url",
            &herald.connector,
            "--api",
            &herald.api,
            "--server-pid",
            &herald.pid().to_string(),
        ],
        args,
    )
}

/// Runs herald-bench with `target` (where to connect) and `args`; returns its JSON report.
fn run_bench(target: &[&str], args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(target)
        .args(["--secret", SECRET, "--sources", "4"])
        .args(["--label", "herald", "--drain", "10"])
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

#[async_std::test]
async fn on_mongodb_the_operations_and_the_database_bound_are_reported() -> anyhow::Result<()> {
    let mongo = Mongo::start().await?;
    let url = mongo.url();
    let dir = TempDir::new("bench-smoke-mongo");
    let herald = Herald::start(&dir.0, &["--mongo", &url]);
    let fanout = bench(
        &herald,
        &["--mongo", &url, "fanout", "--conns", "20", "--rounds", "2"],
    );
    assert_nothing_lost(&fanout);
    // Two pushes (three operations each at least) and the acknowledgements of 40 messages.
    let ops = fanout["db_ops"].as_i64().unwrap_or(0);
    assert!(ops >= 7, "db_ops not counted: {fanout}");

    let bound = run_bench(
        &[],
        &["--mongo", &url, "bound", "--batch", "10", "--secs", "0.2"],
    );
    assert_eq!(bound["scenario"], "bound", "{bound}");
    assert_eq!(bound["batch"], 10, "{bound}");
    let mut calls = 0;
    for kind in ["insert_many", "append_round_trips", "ack_update"] {
        let n = bound[kind]["calls"].as_u64().unwrap_or(0);
        assert!(n > 0, "no {kind} call: {bound}");
        assert!(
            bound[kind]["per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{bound}"
        );
        assert_eq!(bound[kind]["ms"]["n"].as_u64(), Some(n), "{bound}");
        calls += n;
    }
    // The append round trips are two operations each (the take and the insert); the server
    // counted at least that.
    let counted = bound["db_ops"].as_i64().unwrap_or(0);
    let least = calls + bound["append_round_trips"]["calls"].as_u64().unwrap_or(0);
    assert!(counted >= i64::try_from(least)?, "{bound}");
    // Its database is dropped: Herald's data is not touched, nothing is left behind.
    let names = mongodb::Client::with_uri_str(&url)
        .await?
        .list_database_names()
        .await?;
    assert!(
        !names.iter().any(|n| n == "herald_bench_bound"),
        "{names:?}"
    );

    let refused = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["bound", "--batch", "0", "--mongo", &url])
        .output()?;
    assert!(!refused.status.success());
    // femme writes the error line to stdout.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(said.contains("--batch must be at least 1"), "{said}");
    Ok(())
}
