//! `herald-cli` as a user runs it, against the real `herald` binary (issue 11, findings 7 and
//! 9): secrets in the environment never show in help or errors, and `data` goes both ways
//! byte for byte. Here rather than in apps/herald/tests because cargo builds a package's
//! binary for its own integration tests (`CARGO_BIN_EXE_herald-cli`).

use std::path::Path;

use herald_it::{Herald, TempDir, assert_no_secret, output_text, run_with_env};

const API_KEY: &str = "supersecret-api-key";
const SECRET: &str = "topsecret-client-secret";

fn cli() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_herald-cli"))
}

fn no_secret(what: &str, text: &str) {
    assert_no_secret(what, text, &[API_KEY, SECRET, "supersecret", "topsecret"]);
}

// Finding 9: clap printed `[env: HERALD_API_KEY=<the key>]` and the secret, and the doc
// comments named each variable a second time.
#[test]
fn help_never_shows_secrets_and_names_each_variable_once() {
    let env = [("HERALD_API_KEY", API_KEY), ("HERALD_SECRET", SECRET)];
    for args in [
        &["--help"][..],
        &["tail", "--help"],
        &["push", "--help"],
        &["history", "--help"],
        &["watch", "--help"],
        &["help", "tail"],
    ] {
        let out = run_with_env(cli(), args, &env);
        let text = output_text(&out);
        assert!(out.status.success(), "herald-cli {args:?}: {text}");
        no_secret(&format!("herald-cli {args:?}"), &text);
        for var in ["HERALD_API_KEY", "HERALD_SECRET", "HERALD_CLI_API"] {
            assert!(
                text.matches(&format!("[env: {var}")).count() <= 1,
                "herald-cli {args:?} names {var} twice:\n{text}"
            );
        }
    }
    let text = output_text(&run_with_env(cli(), &["tail", "--help"], &env));
    assert!(text.contains("[env: HERALD_SECRET]"), "{text}");
    assert!(text.contains("[env: HERALD_API_KEY]"), "{text}");
}

// Findings 7 and 9 through herald-cli: the key from the environment, an id that needs
// percent-encoding, and `data` byte for byte both ways.
#[test]
fn pushes_and_reads_byte_for_byte() {
    let dir = TempDir::new("hostile-cli");
    let h = Herald::start(&dir.0, &["--api-key", API_KEY]);
    let env = [
        ("HERALD_API_KEY", API_KEY),
        ("HERALD_CLI_API", h.api.as_str()),
    ];
    let data = r#"{"big":123456789012345678901234567890,"f":1.0000000000000000001}"#;
    let out = run_with_env(cli(), &["push", "--to", "u@42", "--data", data], &env);
    assert!(out.status.success(), "{}", output_text(&out));
    for args in [
        &["history", "--client", "u@42", "--since", "0"][..],
        &[
            "history", "--client", "u@42", "--since", "0", "--after", "0",
        ],
        &["watch", "--client", "u@42", "--timeout", "0"],
    ] {
        let out = run_with_env(cli(), args, &env);
        let text = output_text(&out);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            text.contains(&format!("\"data\":{data}")),
            "{args:?}: {text}"
        );
    }
    // Without the key the answer is the server's 401, and the error shows no key.
    let out = run_with_env(
        cli(),
        &["history", "--client", "u@42", "--api-key", "wrong-key"],
        &[("HERALD_CLI_API", h.api.as_str())],
    );
    let text = output_text(&out);
    assert!(!out.status.success() && text.contains("401"), "{text}");
    no_secret("herald-cli's error", &text);
}

// Issue 14: push with an idempotency key, then status (every page) and recall of the push.
#[test]
fn pushes_once_per_key_then_shows_status_and_recalls() {
    let dir = TempDir::new("cli-receipts");
    let h = Herald::start(&dir.0, &[]);
    let env = [("HERALD_CLI_API", h.api.as_str())];
    let push = [
        "push",
        "--to",
        "r1,r2,r3",
        "--data",
        "1",
        "--idempotency-key",
        "cli-key",
    ];
    let first = run_with_env(cli(), &push, &env);
    assert!(first.status.success(), "{}", output_text(&first));
    let again = run_with_env(cli(), &push, &env);
    assert_eq!(
        output_text(&again),
        output_text(&first),
        "the first answer again"
    );
    let answer: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let id = answer["push_id"].as_str().unwrap();
    let out = run_with_env(cli(), &["status", id, "--limit", "2"], &env);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let pages: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pages.len(), 2, "two pages of 2 and 1: {text}");
    assert_eq!(pages[1]["entries"][0]["client"], "r3", "{text}");
    assert_eq!(pages[0]["summary"]["stored"], 3, "{text}");
    let out = run_with_env(cli(), &["recall", id], &env);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(r#""recalled":3"#), "{text}");
    let out = run_with_env(cli(), &["status", "nope"], &env);
    let text = output_text(&out);
    assert!(!out.status.success() && text.contains("400"), "{text}");
}
