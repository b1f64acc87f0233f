//! The REST API and the binaries as a hostile or careless client uses them (issue 11, findings
//! 1, 7, 8 and 9): the real `herald` binary on loopback, real HTTP clients (`curl`, Python
//! `requests`), the official Socket.IO client, and the binaries run with secrets in their
//! environment. Waits poll for conditions; nothing sleeps a fixed time.

use herald_it as support;
use serde_json::{Value, json};
use support::{
    Client, Herald, Lib, TempDir, config_file, curl, curl_with_input, herald_bin, hmac_auth,
    python, run_with_env, unix_secs, workspace_bin,
};

/// Pushes `data_json` (raw JSON text, sent as is) to `to` with curl; asserts 200.
fn push_raw(h: &Herald, key: Option<&str>, to: &str, data_json: &str) {
    let body = format!(r#"{{"send_id":"hostile","recv_id":["{to}"],"data":{data_json}}}"#);
    let auth = key.map(|k| format!("Authorization: Bearer {k}"));
    let mut args = vec![
        "-XPOST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        "@-",
    ];
    if let Some(a) = &auth {
        args.extend(["-H", a]);
    }
    let url = format!("{}/push", h.api);
    args.push(&url);
    let r = curl_with_input(&args, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Asserts the `{"ok":0,"errors":[...]}` shape with a JSON content type.
fn assert_error_shape(r: &support::Raw, status: u16) {
    assert_eq!(r.status, status, "{}\n{}", r.head, r.text());
    let ctype = r.header("content-type").unwrap_or_default();
    assert!(ctype.starts_with("application/json"), "{ctype}\n{}", r.head);
    let body = r.json();
    assert_eq!(body["ok"], 0, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        !errors.is_empty() && errors.iter().all(Value::is_string),
        "{body}"
    );
}

// Finding 1: API keys protect every route but /healthy.
#[async_std::test]
async fn with_api_keys_every_route_but_healthy_needs_one() {
    let dir = TempDir::new("hostile-keys");
    let h = Herald::start(&dir.0, &["--api-key", "k1", "--api-key", "k2"]);
    push_raw(&h, Some("k1"), "u1", "1");
    for path in [
        "/queues/u1?since=0",
        "/watch/u1?timeout=0",
        "/metrics",
        "/apis",
        "/clients/u1",
    ] {
        let url = format!("{}{path}", h.api);
        for bad in [
            None,
            Some("Authorization: Bearer wrong"),
            Some("Authorization: Bearer "),
            Some("Authorization: Basic k1"),
            Some("Authorization: k1"),
        ] {
            let mut args = vec![];
            if let Some(b) = bad {
                args.extend(["-H", b]);
            }
            args.push(url.as_str());
            let r = curl(&args);
            assert_error_shape(&r, 401);
            assert!(!r.text().contains("\"id\""), "{path}: {}", r.text());
        }
        for key in ["k1", "k2"] {
            let r = curl(&["-H", &format!("Authorization: Bearer {key}"), &url]);
            assert_eq!(r.status, 200, "{path} with {key}: {}", r.text());
        }
    }
    let r = curl(&[&format!("{}/healthy", h.api)]);
    assert_eq!((r.status, r.json()), (200, json!({"ok": 1})));
}

/// Reads every message of `client` with Python `requests`, following the answers'
/// continuation; prints the pages' sizes, `more` flags and the ids.
const READ_ALL_PAGES: &str = r#"
import json, sys, requests
api, client = sys.argv[1], sys.argv[2]
pages, ids, after = [], [], None
while len(pages) < 50:
    params = {"since": 0, "limit": 1000}
    if after is not None:
        params["after"] = after
    r = requests.get("%s/queues/%s" % (api, client), params=params)
    body = r.json()
    got = [m["id"] for m in body["messages"]]
    pages.append({"status": r.status_code, "bytes": len(r.content), "n": len(got),
                  "more": body.get("more", False)})
    ids += got
    if not body.get("more"):
        break
    after = got[-1]
print(json.dumps({"pages": pages, "ids": ids}))
"#;

// Finding 1: an answer is bounded by api.max_answer and says how to continue.
#[async_std::test]
async fn queues_answers_are_bounded_and_say_how_to_continue() {
    let dir = TempDir::new("hostile-answer");
    let cfg_dir = TempDir::new("hostile-answer-cfg");
    let cfg = config_file(&cfg_dir.0, "[api]\nmax_answer = 300000\n");
    let h = Herald::start(&dir.0, &["--config", &cfg]);
    for i in 0..8 {
        push_raw(&h, None, "big", &format!("\"{i}{}\"", "x".repeat(100_000)));
    }
    let out = python(READ_ALL_PAGES, &[&h.api, "big"]);
    let pages = out["pages"].as_array().unwrap();
    assert_eq!(out["ids"], json!([1, 2, 3, 4, 5, 6, 7, 8]), "{out}");
    assert!(pages.len() >= 3, "{out}");
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p["status"], 200, "{out}");
        assert!(p["bytes"].as_u64().unwrap() <= 300_000, "page {i}: {out}");
        assert!(p["n"].as_u64().unwrap() >= 1, "page {i}: {out}");
        assert_eq!(p["more"], i + 1 < pages.len(), "page {i}: {out}");
    }
    // A message larger than the bound still comes, alone, so a reader always progresses.
    push_raw(&h, None, "huge", &format!("\"{}\"", "y".repeat(400_000)));
    push_raw(&h, None, "huge", "2");
    let out = python(READ_ALL_PAGES, &[&h.api, "huge"]);
    assert_eq!(out["ids"], json!([1, 2]), "{out}");
    assert_eq!(out["pages"][0]["n"], 1, "{out}");
}

// Finding 7: REST reads give `data` back byte for byte.
#[async_std::test]
async fn rest_reads_are_byte_for_byte() {
    let dir = TempDir::new("hostile-exact");
    let h = Herald::start(&dir.0, &[]);
    let data = r#"{"big":123456789012345678901234567890,"f":1.0000000000000000001,"s":"\u00e9\ud83d\ude00"}"#;
    push_raw(&h, None, "exact", data);
    for path in ["/queues/exact?since=0", "/watch/exact?timeout=0"] {
        let r = curl(&[&format!("{}{path}", h.api)]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.text().contains(&format!("\"data\":{data}")),
            "{path}: {}",
            r.text()
        );
    }
}

// Finding 8: percent-encoded ids (what `encodeURIComponent` and `quote` send) are decoded.
#[async_std::test]
async fn percent_encoded_ids_are_decoded() {
    let dir = TempDir::new("hostile-percent");
    let h = Herald::start(&dir.0, &[]);
    push_raw(&h, None, "u@42:a.b", "1");
    let out = python(
        r#"
import json, sys, requests
from urllib.parse import quote
api = sys.argv[1]
def get(path):
    r = requests.get(api + path)
    return {"status": r.status_code, "body": r.json()}
print(json.dumps({
    "queues": get("/queues/%s?since=0" % quote("u@42:a.b", safe="")),
    "watch": get("/watch/%s?timeout=0" % quote("u@42:a.b", safe="")),
    "space": get("/queues/%s" % quote("bad id", safe="")),
    "invalid_utf8": get("/queues/u%FF"),
}))
"#,
        &[&h.api],
    );
    assert_eq!(out["queues"]["status"], 200, "{out}");
    assert_eq!(out["queues"]["body"]["messages"][0]["data"], 1, "{out}");
    assert_eq!(out["watch"]["status"], 200, "{out}");
    assert_eq!(out["watch"]["body"]["message"]["id"], 1, "{out}");
    for bad in ["space", "invalid_utf8"] {
        assert_eq!(out[bad]["status"], 400, "{out}");
        assert_eq!(out[bad]["body"]["ok"], 0, "{out}");
        assert!(
            out[bad]["body"]["errors"][0]
                .as_str()
                .unwrap()
                .starts_with("id: "),
            "{out}"
        );
    }
}

// Finding 8: unknown paths and methods get the error shape, on both ports.
#[async_std::test]
async fn unknown_paths_and_methods_get_the_error_shape() {
    let dir = TempDir::new("hostile-404");
    let h = Herald::start(&dir.0, &["--api-key", "k"]);
    let key = "Authorization: Bearer k";
    assert_error_shape(&curl(&["-H", key, &format!("{}/nope", h.api)]), 404);
    assert_error_shape(&curl(&[&format!("{}/queues", h.api)]), 404);
    assert_error_shape(
        &curl(&["-H", key, "-XDELETE", &format!("{}/push", h.api)]),
        405,
    );
    assert_error_shape(&curl(&["-H", key, &format!("{}/push", h.api)]), 405);
    assert_error_shape(&curl(&[&format!("{}/nope", h.connector)]), 404);
    assert_error_shape(
        &curl(&["-XPUT", &format!("{}/socket.io/", h.connector)]),
        405,
    );
}

/// Connects the official Node client with HMAC auth signed for `ts`; whether it was accepted.
fn connects_with_ts(h: &Herald, ts: u64) -> bool {
    let mut c = Client::start(
        Lib::Node,
        json!({
            "url": h.connector,
            "auth": hmac_auth(&h.secret, "skew", 0, ts),
            "transports": ["websocket"],
        }),
    );
    let ev = c.wait_for_any(&["connect", "connect_error"]);
    if ev["ev"] == "connect" {
        return true;
    }
    assert_eq!(ev["message"], "unauthorized", "{ev}");
    false
}

// Finding 8: an HMAC `ts` ahead of the server's clock is bounded (default 60 s, configurable).
#[async_std::test]
async fn hmac_signatures_from_the_future_are_bounded() {
    let dir = TempDir::new("hostile-skew");
    let h = Herald::start(&dir.0, &[]);
    let now = unix_secs();
    assert!(connects_with_ts(&h, now + 20));
    assert!(!connects_with_ts(&h, now + 300), "5 minutes ahead");
    assert!(!connects_with_ts(&h, now + 890), "15 minutes ahead");
    // The past window is unchanged: 10 minutes old still connects.
    assert!(connects_with_ts(&h, now - 600));

    let dir = TempDir::new("hostile-skew-wide");
    let cfg_dir = TempDir::new("hostile-skew-cfg");
    let cfg = config_file(&cfg_dir.0, "[auth]\nmax_future_skew_secs = 600\n");
    let h = Herald::start(&dir.0, &["--config", &cfg]);
    assert!(connects_with_ts(&h, unix_secs() + 300));
    assert!(!connects_with_ts(&h, unix_secs() + 890));
}

// Finding 8: nesting deeper than the parser's limit is named, with the limit.
#[async_std::test]
async fn nesting_too_deep_is_said_plainly() {
    let dir = TempDir::new("hostile-deep");
    let h = Herald::start(&dir.0, &[]);
    let out = python(
        r#"
import json, sys, requests
api = sys.argv[1]
def push(levels):
    body = '{"send_id":"s","recv_id":["d"],"data":%s1%s}' % ("[" * levels, "]" * levels)
    r = requests.post(api + "/push", data=body, headers={"content-type": "application/json"})
    return {"status": r.status_code, "body": r.json()}
print(json.dumps({"ok": push(126), "deep": push(127), "deeper": push(5000)}))
"#,
        &[&h.api],
    );
    assert_eq!(out["ok"]["status"], 200, "{out}");
    for case in ["deep", "deeper"] {
        assert_eq!(out[case]["status"], 400, "{out}");
        assert_eq!(
            out[case]["body"]["errors"],
            json!([
                "body: nesting too deep: at most 127 levels of arrays and objects (the body's own \
                 object included)"
            ]),
            "{out}"
        );
    }
}

// Finding 8: 10 000 bad recipients get a short error list, not a megabyte.
#[async_std::test]
async fn many_bad_recipients_get_a_capped_error_list() {
    let dir = TempDir::new("hostile-errors");
    let h = Herald::start(&dir.0, &[]);
    let script = r#"
import json, sys, requests
api = sys.argv[1]
body = {"send_id": "s", "recv_id": ["bad id %d" % i for i in range(10000)], "data": 1}
r = requests.post(api + "/push", json=body)
print(json.dumps({"status": r.status_code, "bytes": len(r.content), "body": r.json()}))
"#;
    let out = python(script, &[&h.api]);
    assert_eq!(out["status"], 400, "{out}");
    let errors = out["body"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 21, "{out}");
    assert!(errors[0].as_str().unwrap().starts_with("recv_id[0]: "));
    assert_eq!(errors[20], "... and 9980 more");
    assert!(out["bytes"].as_u64().unwrap() < 4096, "{}", out["bytes"]);
    // The cap is configurable.
    let dir = TempDir::new("hostile-errors-5");
    let cfg_dir = TempDir::new("hostile-errors-cfg");
    let cfg = config_file(&cfg_dir.0, "[api]\nmax_listed_errors = 5\n");
    let h = Herald::start(&dir.0, &["--config", &cfg]);
    let out = python(script, &[&h.api]);
    let errors = out["body"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 6, "{out}");
    assert_eq!(errors[5], "... and 9995 more");
}

const API_KEY: &str = "supersecret-api-key";
const SECRET: &str = "topsecret-client-secret";

/// Asserts that neither secret the tests set shows in `text`.
fn assert_no_secret(what: &str, text: &str) {
    support::assert_no_secret(what, text, &[API_KEY, SECRET, "supersecret", "topsecret"]);
}

// Finding 9: help texts never show secrets (herald-cli's own: apps/herald-cli/tests/cli.rs).
#[test]
fn help_never_shows_secrets() {
    let env = [("HERALD_API_KEY", API_KEY), ("HERALD_SECRET", SECRET)];
    for args in [&["--help"][..], &["--print-keys"], &["--version"]] {
        let out = run_with_env(&herald_bin(), args, &env);
        assert!(out.status.success());
        assert_no_secret(&format!("herald {args:?}"), &support::output_text(&out));
    }
    let bench = workspace_bin("herald-bench", "apps/herald-bench");
    for args in [&["--help"][..], &["push", "--help"], &["idle", "--help"]] {
        let out = run_with_env(&bench, args, &env);
        assert_no_secret(
            &format!("herald-bench {args:?}"),
            &support::output_text(&out),
        );
    }
}

// Finding 9: configuration errors about a secret key never echo its value.
#[test]
fn config_errors_never_echo_secrets() {
    let dir = TempDir::new("hostile-config");
    let data = dir.0.join("data").display().to_string();
    let cfg_dir = TempDir::new("hostile-config-file");
    let bin = herald_bin();
    let file_secret = config_file(&cfg_dir.0, &format!("[auth]\nsecret = [\"{SECRET}\"]\n"));
    // (flags, environment, the key the error must name)
    type Case<'a> = (Vec<String>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![],
            vec![("HERALD_API_KEY", format!("{API_KEY},,"))],
            "api.keys",
        ),
        (
            vec!["--config".into(), file_secret.clone()],
            vec![],
            "auth.secret",
        ),
        (
            vec!["--mongo".into(), format!("mongo://admin:{SECRET}@db:27017")],
            vec![],
            "store.mongo",
        ),
        (
            vec![],
            vec![("HERALD_REDIS", format!("http://:{SECRET}@cache:6379"))],
            "broker.redis",
        ),
        (
            vec![],
            vec![("HERALD_SECRET", String::new())],
            "auth.secret",
        ),
    ];
    for (args, env, key) in cases {
        let mut argv: Vec<&str> = vec!["--data-dir", &data];
        argv.extend(args.iter().map(String::as_str));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run_with_env(&bin, &argv, &env);
        let text = support::output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?} {env:?}: {text}");
        assert!(text.contains(key), "{argv:?}: {text}");
        assert_no_secret(&format!("herald {argv:?} {env:?}"), &text);
    }
}

// Finding 9: a running server never logs or exposes its secrets.
#[async_std::test]
async fn a_running_server_never_shows_its_secrets() {
    let dir = TempDir::new("hostile-logs");
    let h = Herald::start_args(&[
        "--api-listen".into(),
        "127.0.0.1:0".into(),
        "--connector-listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.0.display().to_string(),
        "--secret".into(),
        SECRET.into(),
        "--api-key".into(),
        API_KEY.into(),
    ]);
    // Wrong and right keys, a refused and an accepted client, metrics.
    let r = curl(&[
        "-H",
        "Authorization: Bearer supersecret-wrong",
        &format!("{}/metrics", h.api),
    ]);
    assert_eq!(r.status, 401);
    push_raw(&h, Some(API_KEY), "logged", "1");
    let mut bad = Client::start(
        Lib::Node,
        json!({"url": h.connector, "auth": hmac_auth("wrong", "logged", 0, unix_secs()),
               "transports": ["websocket"]}),
    );
    bad.wait_for("connect_error");
    let mut good = Client::start(
        Lib::Node,
        json!({"url": h.connector, "auth": h.auth("logged", 0), "transports": ["websocket"]}),
    );
    good.wait_for("message");
    let r = curl(&[
        "-H",
        &format!("Authorization: Bearer {API_KEY}"),
        &format!("{}/metrics", h.api),
    ]);
    assert_eq!(r.status, 200);
    assert_no_secret("/metrics", &r.text());
    let log = h.log.lock().unwrap().join("\n");
    assert!(log.contains("herald started"), "{log}");
    for s in [API_KEY, SECRET] {
        assert!(!log.contains(s), "the log shows a secret ({s}):\n{log}");
    }
}
