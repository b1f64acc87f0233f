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

/// A running `herald-cli webhook-listen`, its stdout lines collected.
struct Listener {
    child: std::process::Child,
    url: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Listener {
    fn start(secret: &str) -> Listener {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(cli())
            .args(["webhook-listen", "--port", "0"])
            .env("HERALD_WEBHOOK_SECRET", secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start herald-cli webhook-listen");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for (stream, into) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                lines.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), errors.clone()),
        ] {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    into.lock().unwrap().push(line);
                }
            });
        }
        let mut url = String::new();
        assert!(
            herald_it::wait_until(herald_it::WAIT, || {
                let errs = errors.lock().unwrap();
                match errs
                    .iter()
                    .find_map(|l| l.split("listening for webhooks on ").nth(1))
                {
                    Some(u) => {
                        url = u.trim().to_owned();
                        true
                    }
                    None => false,
                }
            }),
            "webhook-listen did not say where it listens"
        );
        Listener {
            child,
            url,
            lines,
            errors,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs (with Python's hmac, not Herald's code) and POSTs `body` with Python `requests`;
/// prints the status. `mode`: `good`, `forged` (another secret), `stale` (ten minutes old),
/// `none` (no header), `garbled` (a malformed header).
const SEND: &str = r#"
import hashlib, hmac, json, sys, time, requests
url, secret, body, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
t = int(time.time()) - (600 if mode == "stale" else 0)
key = secret if mode != "forged" else secret + "x"
sig = hmac.new(key.encode(), f"{t}.".encode() + body.encode(), hashlib.sha256).hexdigest()
headers = {"content-type": "application/json"}
if mode == "garbled":
    headers["x-herald-signature"] = f"t={t};v1={sig}"
elif mode != "none":
    headers["x-herald-signature"] = f"t={t},v1={sig}"
r = requests.post(url + "/hook", data=body.encode(), headers=headers, timeout=10)
print(json.dumps({"status": r.status_code}))
"#;

#[test]
fn webhook_listen_prints_verified_events_and_refuses_forged_ones() {
    let secret = "listen-secret";
    let out = run_with_env(
        cli(),
        &["webhook-listen", "--help"],
        &[("HERALD_WEBHOOK_SECRET", SECRET)],
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    no_secret("herald-cli webhook-listen --help", &text);
    assert!(text.contains("[env: HERALD_WEBHOOK_SECRET]"), "{text}");
    let listener = Listener::start(secret);
    let ev = |n: u64| {
        herald_core::Event::new(
            herald_core::EventKind::Acked,
            "01JD0000000000000000000000",
            herald_core::ClientId::new("u42").unwrap(),
            herald_core::Slot::new(0).unwrap(),
            herald_core::MessageId(n),
            1_764_000_000_000 + n,
        )
    };
    let body = herald_core::webhook::batch_body(&[ev(1), ev(2)]);
    for mode in ["forged", "stale", "none", "garbled"] {
        let got = herald_it::python(SEND, &[&listener.url, secret, &body, mode]);
        assert_eq!(got["status"], 401, "{mode}");
    }
    assert!(
        listener.lines().is_empty(),
        "nothing printed for refused requests"
    );
    let errors = listener.errors.lock().unwrap().join("\n");
    assert!(errors.contains("does not match"), "{errors}");
    assert!(errors.contains("tolerance"), "{errors}");
    let got = herald_it::python(SEND, &[&listener.url, secret, &body, "good"]);
    assert_eq!(got["status"], 200);
    assert!(herald_it::wait_until(herald_it::WAIT, || listener
        .lines()
        .len()
        == 2));
    assert_eq!(listener.lines(), vec![ev(1).to_json(), ev(2).to_json()]);
    // A signed body that is not a batch is refused, not printed.
    let got = herald_it::python(SEND, &[&listener.url, secret, "[1,2]", "good"]);
    assert_eq!(got["status"], 400);
    assert_eq!(listener.lines().len(), 2);
    // curl without a signature.
    let raw = herald_it::curl(&[
        "-sS",
        "-X",
        "POST",
        "-d",
        &body,
        &format!("{}/x", listener.url),
    ]);
    assert_eq!(raw.status, 401, "{}", raw.text());
}

#[async_std::test]
async fn webhook_listen_receives_what_a_real_node_sends() {
    use herald_core::MessageStore;
    let secret = "node-listen-secret";
    let listener = Listener::start(secret);
    let dir = TempDir::new("cli-listen");
    let data = dir.0.join("data");
    let ev = herald_core::Event::new(
        herald_core::EventKind::Delivered,
        "01JD0000000000000000000001",
        herald_core::ClientId::new("u7").unwrap(),
        herald_core::Slot::new(3).unwrap(),
        herald_core::MessageId(9),
        herald_it::unix_secs() * 1000,
    );
    {
        let store = herald_store_embedded::EmbeddedStore::open(
            herald_store_embedded::EmbeddedConfig::new(&data),
        )
        .unwrap();
        store
            .outbox_add(std::slice::from_ref(&ev), 100)
            .await
            .unwrap();
    }
    let cfg = herald_it::config_file(
        &dir.0,
        &format!(
            "[webhook]\nurl = \"{}/hooks\"\nsecret = \"{secret}\"\nbatch_delay_ms = 20\n",
            listener.url
        ),
    );
    let _node = Herald::start(&data, &["--config", &cfg]);
    assert!(
        herald_it::wait_until(herald_it::WAIT, || !listener.lines().is_empty()),
        "stderr: {}",
        listener.errors.lock().unwrap().join("\n")
    );
    assert_eq!(listener.lines(), vec![ev.to_json()]);
}
