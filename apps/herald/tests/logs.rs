//! The node's log as the binary writes it (`log.format`, docs/configuration.md "Logging"):
//! readable lines by default, femme's form with `json`, one line per HTTP request, and no
//! Rust debug formatting.
//!
//! `json` is femme's, which picks its form by build profile: this suite checks the form the
//! binary under test was built for (the test and the binary share the profile under `cargo
//! test`): femme's pretty lines in a debug build, ndjson in a release build (`cargo test
//! --release -p herald --test logs`, or a release binary through `HERALD_BIN`:
//! `cargo build --release -p herald && HERALD_BIN=target/release/herald cargo test -p herald
//! --test logs`).

use herald_it as support;
use serde_json::{Value, json};
use support::{Client, Herald, Lib, TempDir, WAIT, http, wait_until};

/// The lines logged so far that contain `needle`.
fn lines_with(h: &Herald, needle: &str) -> Vec<String> {
    let log = h.log.lock().unwrap();
    log.iter().filter(|l| l.contains(needle)).cloned().collect()
}

/// Waits for a line containing `needle` and returns it.
fn line_with(h: &Herald, needle: &str) -> String {
    assert!(
        wait_until(WAIT, || h.logged(needle)),
        "no line with {needle:?}; log:\n{}",
        h.log.lock().unwrap().join("\n")
    );
    lines_with(h, needle).remove(0)
}

/// Whether `line` is a `text` record: `YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL target: message`.
fn is_text_record(line: &str, level: &str) -> bool {
    let Some((time, rest)) = line.split_once(' ') else {
        return false;
    };
    // `d` is any digit, every other character itself.
    let template = "dddd-dd-ddTdd:dd:dd.dddZ";
    let shape = time.len() == template.len()
        && time
            .chars()
            .zip(template.chars())
            .all(|(c, t)| if t == 'd' { c.is_ascii_digit() } else { c == t });
    shape && rest.starts_with(&format!("{level:<5} ")) && rest.contains(": ")
}

#[async_std::test]
async fn text_is_the_default_one_readable_line_per_record_without_debug_formatting() {
    let dir = TempDir::new("log-text");
    let mut h = Herald::start(&dir.0, &["--log-level", "debug"]);
    let started = line_with(&h, "herald started");
    assert!(is_text_record(&started, "INFO"), "{started}");
    assert!(
        started.contains(" herald: herald started: role=all"),
        "{started}"
    );

    // A health probe: one access line, at debug.
    let probe = http("GET", &format!("{}/healthy", h.api), None, &[]).await;
    assert_eq!(probe.status, 200);
    let access = line_with(&h, "GET /healthy 200");
    assert!(is_text_record(&access, "DEBUG"), "{access}");

    // A refused connection names its peer as an address.
    let wrong = support::hmac_auth("wrong-secret", "x", 0, support::unix_secs());
    let mut c = Client::start(
        Lib::Node,
        json!({ "url": h.connector, "auth": wrong, "transports": ["websocket"] }),
    );
    c.wait_for("connect_error");
    let refused = line_with(&h, "connection refused from");
    assert!(refused.contains("from 127.0.0.1:"), "{refused}");

    let status = h.terminate();
    assert!(status.success(), "{status:?}");
    let log = h.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains("herald stopped")));
    assert_eq!(lines_with(&h, "GET /healthy").len(), 1, "{log:#?}");
    for line in &log {
        // Herald's own lines (other crates' debug lines are theirs).
        let ours = line
            .get(31..)
            .is_some_and(|rest| rest.starts_with("herald"));
        assert!(
            !ours || !(line.contains("Some(") || line.contains("None") || line.contains("Id(")),
            "Rust debug formatting in a log line: {line}"
        );
        assert!(
            is_text_record(line, "ERROR")
                || is_text_record(line, "WARN")
                || is_text_record(line, "INFO")
                || is_text_record(line, "DEBUG")
                || is_text_record(line, "TRACE"),
            "not a text record: {line}"
        );
    }
}

#[async_std::test]
async fn a_refused_push_is_logged_once_with_its_reason() {
    let dir = TempDir::new("log-refused");
    let h = Herald::start(&dir.0, &[]);
    let body = Some(("application/json", b"{\"to\":[]}".to_vec()));
    let refused = http("POST", &format!("{}/push", h.api), body, &[]).await;
    assert_eq!(refused.status, 400);
    let body = Some(("text/plain", b"hello".to_vec()));
    let refused = http("POST", &format!("{}/push", h.api), body, &[]).await;
    assert_eq!(refused.status, 415);
    line_with(&h, "POST /push 415");
    let about_push: Vec<String> = h
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("push") && !l.contains("herald started"))
        .cloned()
        .collect();
    assert_eq!(
        about_push.len(),
        2,
        "one line per refused push: {about_push:#?}"
    );
    assert!(
        about_push[0].contains("POST /push 400") && about_push[0].contains("recv_id: required"),
        "the line says why: {}",
        about_push[0]
    );
    assert!(
        about_push[1].contains("application/json"),
        "the line says why: {}",
        about_push[1]
    );
}

#[async_std::test]
async fn json_is_femmes_form_for_the_build_profile() {
    let dir = TempDir::new("log-json");
    let h = Herald::start(&dir.0, &["--log-format", "json"]);
    let started = line_with(&h, "herald started");
    // Under `cargo test` the binary shares this test's profile; a binary named by HERALD_BIN
    // is a release build when it lies in a `release` directory (target/release/herald), and
    // of unknown profile otherwise: then its form is checked whole, whichever femme chose.
    let release = match std::env::var_os("HERALD_BIN") {
        None => Some(!cfg!(debug_assertions)),
        Some(bin) => std::path::Path::new(&bin)
            .components()
            .any(|c| c.as_os_str() == "release")
            .then_some(true),
    };
    let ndjson = started.starts_with('{');
    if let Some(release) = release {
        assert_eq!(
            ndjson, release,
            "ndjson in a release build only: {started:?}"
        );
    }
    if ndjson {
        // ndjson in a release build, as release builds logged before log.format existed.
        let record: Value = serde_json::from_str(&started).expect("one JSON object per line");
        assert_eq!(record["level"], 30, "{record}");
        assert!(
            record["time"]
                .as_u64()
                .is_some_and(|t| t > 1_700_000_000_000)
        );
        assert!(
            record["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("herald started"))
        );
    } else {
        // femme's pretty form in a debug build: the target in colour, then the message.
        assert!(
            started.starts_with("\u{1b}[") && started.contains("herald\u{1b}[0m herald started"),
            "{started:?}"
        );
    }
}
