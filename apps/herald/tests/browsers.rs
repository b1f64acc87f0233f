//! Browsers as Socket.IO clients, against the real `herald` binary: the CORS answers of the
//! connector (curl with an `Origin` header, as a browser's cross-origin request carries), and
//! Debian's headless chromium running the official socket.io-client bundle from a page of
//! another origin (it/clients/browser.js, driven by npm `puppeteer-core`) and the web console
//! (it/clients/console.js), whose screenshots in docs/ this test makes.

use herald_it as support;
use serde_json::{Value, json};
use support::{Client, Herald, Lib, TempDir};

const PAGE: &str = "http://page.example:8080";
const POLLING: &str = "/socket.io/?EIO=4&transport=polling";

/// Herald with these lines in its configuration file's `[connector]` table.
fn herald(dir: &TempDir, connector: &str) -> Herald {
    let path = dir.0.join("herald.toml");
    std::fs::write(&path, format!("[connector]\n{connector}")).unwrap();
    Herald::start(&dir.0, &["--config", path.to_str().unwrap()])
}

/// `curl -i` of `url` sent from a page of `origin`, with `extra` curl arguments.
fn from_page(origin: &str, url: &str, extra: &[&str]) -> support::Raw {
    let header = format!("Origin: {origin}");
    let mut args = vec!["-H", header.as_str()];
    args.extend_from_slice(extra);
    args.push(url);
    support::curl(&args)
}

/// The sid of a polling handshake's answer (`0{"sid":...}`).
fn sid_of(body: &str) -> String {
    let open: serde_json::Value = serde_json::from_str(&body[1..]).expect("open packet JSON");
    open["sid"].as_str().expect("sid").to_owned()
}

/// By default any page may use the connector, without credentials: every answer, errors
/// included (a poll of a session that is gone: the defect a browser met), says `*`.
#[test]
fn by_default_every_answer_allows_any_origin_without_credentials() {
    let dir = TempDir::new("cors-any");
    let h = herald(&dir, "");
    let gone = from_page(PAGE, &format!("{}{POLLING}&sid=gone", h.connector), &[]);
    assert_eq!(gone.status, 400, "{}", gone.head);
    assert_eq!(
        gone.header("access-control-allow-origin").as_deref(),
        Some("*"),
        "an error answer without CORS headers is blocked by the browser:\n{}",
        gone.head
    );
    let open = from_page(PAGE, &format!("{}{POLLING}", h.connector), &[]);
    assert_eq!(open.status, 200, "{}", open.head);
    assert_eq!(
        open.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(open.header("access-control-allow-credentials"), None);
    let elsewhere = from_page(PAGE, &format!("{}/no/such/path", h.connector), &[]);
    assert_eq!(elsewhere.status, 404);
    assert_eq!(
        elsewhere.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let bad_version = from_page(PAGE, &format!("{}/socket.io/?EIO=9", h.connector), &[]);
    assert_eq!(bad_version.status, 400);
    assert_eq!(
        bad_version.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
}

/// With `cors_origins` listed, a listed page gets its own origin back with credentials (the
/// `withCredentials` polling of socket.io 2.x and of clients that ask for it), on every
/// answer and on preflights; a page not listed gets no CORS header, so its browser refuses
/// to show it the answers.
#[test]
fn listed_origins_get_credentials_and_others_get_nothing() {
    let dir = TempDir::new("cors-list");
    let h = herald(
        &dir,
        &format!(
            "cors_origins = [\"{PAGE}\", \"https://other.example\"]\ncors_max_age_secs = 120\n"
        ),
    );
    let url = format!("{}{POLLING}", h.connector);
    let open = from_page(PAGE, &url, &[]);
    assert_eq!(open.status, 200, "{}", open.head);
    assert_eq!(
        open.header("access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    assert_eq!(
        open.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert!(
        open.header("vary")
            .is_some_and(|v| v.to_ascii_lowercase().contains("origin"))
    );
    let sid = sid_of(&open.text());

    // A POST of a Socket.IO CONNECT, then one to a session that does not exist.
    let post = from_page(
        PAGE,
        &format!("{url}&sid={sid}"),
        &[
            "-H",
            "content-type: text/plain;charset=UTF-8",
            "--data-binary",
            "40",
        ],
    );
    assert_eq!(post.status, 200, "{}", post.head);
    assert_eq!(
        post.header("access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    let gone = from_page(PAGE, &format!("{url}&sid=gone"), &["--data-binary", "40"]);
    assert_eq!(gone.status, 400, "{}", gone.head);
    assert_eq!(
        gone.header("access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    assert_eq!(
        gone.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );

    // A preflight, as a page sending an extra header makes its browser send.
    let preflight = from_page(
        PAGE,
        &url,
        &[
            "-X",
            "OPTIONS",
            "-H",
            "Access-Control-Request-Method: POST",
            "-H",
            "Access-Control-Request-Headers: content-type, x-app-version",
        ],
    );
    assert_eq!(preflight.status, 204, "{}", preflight.head);
    assert_eq!(
        preflight.header("access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    assert_eq!(
        preflight
            .header("access-control-allow-credentials")
            .as_deref(),
        Some("true")
    );
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let headers = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default();
    assert!(headers.contains("x-app-version"), "{headers}");
    assert_eq!(
        preflight.header("access-control-max-age").as_deref(),
        Some("120")
    );

    // A page that is not listed: served (CORS is the browser's check), but told nothing.
    let stranger = from_page("http://evil.example", &url, &[]);
    assert_eq!(stranger.status, 200);
    assert_eq!(
        stranger.header("access-control-allow-origin"),
        None,
        "{}",
        stranger.head
    );
    assert_eq!(stranger.header("access-control-allow-credentials"), None);
    let stranger_preflight = from_page(
        "http://evil.example",
        &url,
        &["-X", "OPTIONS", "-H", "Access-Control-Request-Method: POST"],
    );
    assert_eq!(
        stranger_preflight.header("access-control-allow-origin"),
        None
    );
}

/// `*` cannot be mixed with listed origins: that would grant credentials to no one and
/// everyone at once. Start-up is refused with the key's name.
#[test]
fn a_wildcard_among_listed_origins_is_refused_at_start_up() {
    let dir = TempDir::new("cors-mixed");
    let path = dir.0.join("herald.toml");
    std::fs::write(
        &path,
        format!("[connector]\ncors_origins = [\"*\", \"{PAGE}\"]\n"),
    )
    .unwrap();
    let stopped = support::start_refused(&dir.0, &["--config", path.to_str().unwrap()]);
    assert!(!stopped.status.success());
    assert!(
        stopped.stderr.contains("connector.cors_origins"),
        "{}",
        stopped.stderr
    );
}

/// The browser the tests drive: `HERALD_CHROMIUM`, else Debian's `chromium`
/// (scripts/setup/35-browser.sh installs it).
fn chromium() -> String {
    let path = std::env::var("HERALD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: run scripts/setup/35-browser.sh (or set HERALD_CHROMIUM)"
    );
    path
}

/// A page of another origin loads the official client bundle in headless Chromium and
/// authenticates with HMAC: over WebSocket, then over polling alone with credentials
/// (`withCredentials`, its origin listed in `cors_origins`). Each time a pushed message
/// arrives and is acknowledged; a poll of the ended session reads its 400 (the reported
/// defect: it carried no CORS header, so Chromium hid it behind a CORS error); after a
/// reconnect only the next message comes, nothing twice; and the browser logs no error.
#[test]
fn chromium_from_another_origin_receives_acknowledges_and_gets_nothing_twice() {
    let chromium = chromium();
    let page_port = support::free_port().unwrap();
    let dir = TempDir::new("browser");
    let h = herald(
        &dir,
        &format!("cors_origins = [\"http://127.0.0.1:{page_port}\"]\n"),
    );
    let out = support::run_client(
        "browser.js",
        &json!({
            "connector": h.connector,
            "api": h.api,
            "page_port": page_port,
            "chromium": chromium,
            "runs": [
                {"client": "browser-ws", "auth": h.auth("browser-ws", 0),
                 "transports": ["websocket"]},
                {"client": "browser-polling", "auth": h.auth("browser-polling", 3),
                 "transports": ["polling"], "withCredentials": true},
            ],
        }),
    );
    assert_eq!(out["error"], Value::Null, "{out:#}");
    assert_eq!(
        out["errors"],
        json!([]),
        "the browser logged errors: {out:#}"
    );
    let runs = out["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{out:#}");
    for (run, transport) in runs.iter().zip(["websocket", "polling"]) {
        assert_eq!(run["transport"], transport, "{run:#}");
        assert_eq!(run["first"], json!([{"n": 1}]), "{run:#}");
        assert_eq!(
            run["second"],
            json!([{"n": 2}]),
            "nothing twice after a reconnect: {run:#}"
        );
    }
}

/// The web console in headless Chromium: a wrong key is refused; the right one is kept in
/// the tab's session storage and shows the overview's charts; the client page shows a
/// message pushed to a connected client as formatted JSON, the client's session online and
/// its queue per slot, and a test message pushed from the page is followed until the client
/// acknowledges it; the Pushes page shows that push's receipts, and recalls another. The
/// screenshots go to the test's
/// directory, or to docs/ with `HERALD_UPDATE_SCREENSHOTS=1` (how docs/console-*.png are
/// made).
#[test]
fn the_console_logs_in_shows_charts_and_follows_a_clients_messages() {
    let chromium = chromium();
    let dir = TempDir::new("console");
    let h = Herald::start(
        &dir.0,
        &["--api-key", "console-key", "--node-id", "console-node"],
    );
    let mut client = Client::start(
        Lib::Node,
        json!({
            "url": h.connector,
            "auth": h.auth("console-user", 0),
            "transports": ["websocket"],
            "ackPolicy": "auto",
        }),
    );
    client.wait_for("connect");
    let marker = "hello from the console test";
    let pushed = async_std::task::block_on(support::http(
        "POST",
        &format!("{}/push", h.api),
        Some((
            "application/json",
            serde_json::to_vec(&json!({
                "send_id": "billing", "channel": ["invoice"], "recv_id": ["console-user"],
                "data": {"greeting": marker, "total": 12},
            }))
            .unwrap(),
        )),
        &[("authorization", "Bearer console-key")],
    ));
    assert_eq!(pushed.status, 200, "{:?}", pushed.body);
    assert_eq!(client.messages(1).len(), 1);
    // A push to this client and two that never connect: the page recalls it.
    let mixed = async_std::task::block_on(herald_it::push_keyed(
        &h.api,
        "console-key",
        json!({
            "send_id": "billing", "channel": ["invoice"],
            "recv_id": ["console-user", "offline-1", "offline-2"], "data": {"reminder": 1},
        }),
    ));
    assert_eq!(mixed.status, 200, "{:?}", mixed.body);
    assert_eq!(client.messages(1).len(), 1);

    let screenshots = if std::env::var_os("HERALD_UPDATE_SCREENSHOTS").is_some() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
    } else {
        dir.0.clone()
    };
    let out = support::run_client(
        "console.js",
        &json!({
            "api": h.api,
            "key": "console-key",
            "client": "console-user",
            "marker": marker,
            "mixed_push": mixed.body["push_id"],
            "chromium": chromium,
            "screenshots": screenshots,
        }),
    );
    assert_eq!(out["error"], Value::Null, "{out:#}");
    assert_eq!(
        out["errors"],
        json!([]),
        "the browser logged errors: {out:#}"
    );
    assert_eq!(out["wrong_key"], "The API key was refused.", "{out:#}");
    assert_eq!(out["key_in_session_storage"], "console-key");
    let charts = out["charts"].as_array().expect("charts");
    assert!(
        charts.iter().any(|c| c[0] == "connections" && c[1] == "1"),
        "one client is connected: {out:#}"
    );
    let nodes = out["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{out:#}");
    let messages = out["messages"].as_str().unwrap_or_default();
    assert!(
        messages.contains("\"total\": 12"),
        "formatted JSON: {out:#}"
    );
    assert!(
        out["push_status"]
            .as_str()
            .is_some_and(|s| s.contains("delivered and acknowledged")),
        "{out:#}"
    );
    // The client view: its one session (slot 0, this node) and its queue: nothing unacked,
    // the pushed message acknowledged, then the test message too.
    let sessions = out["sessions_before"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{out:#}");
    assert_eq!(sessions[0][0], "0", "{out:#}");
    assert_eq!(sessions[0][1], "console-node", "{out:#}");
    assert_eq!(
        out["slots_before"],
        json!([["0", "0", "-", "#2"]]),
        "{out:#}"
    );
    assert_eq!(
        out["slots_after"],
        json!([["0", "0", "-", "#3"]]),
        "{out:#}"
    );
    // The Pushes page: the test message's push, acknowledged by its one recipient; then the
    // mixed push recalled from the page: one copy already acknowledged, two recalled.
    let test_push = &out["test_push"];
    assert_eq!(
        test_push["summary"],
        json!([["1", "0", "0", "1", "0", "0"]]),
        "{out:#}"
    );
    assert_eq!(test_push["entries"][0][0], "console-user", "{out:#}");
    assert_eq!(test_push["entries"][0][2], "acked", "{out:#}");
    let states = |rows: &Value| -> Vec<(String, String)> {
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|r| (r[0].as_str().unwrap().into(), r[2].as_str().unwrap().into()))
            .collect()
    };
    let pair = |c: &str, s: &str| (c.to_owned(), s.to_owned());
    assert_eq!(
        states(&out["mixed_before"]),
        [
            pair("console-user", "acked"),
            pair("offline-1", "stored"),
            pair("offline-2", "stored")
        ],
        "{out:#}"
    );
    assert_eq!(
        states(&out["mixed_after"]),
        [
            pair("console-user", "acked"),
            pair("offline-1", "recalled"),
            pair("offline-2", "recalled")
        ],
        "{out:#}"
    );
    assert!(
        out["recall_meta"]
            .as_str()
            .is_some_and(|m| m.contains("Recalled: 2 copies; already acknowledged: 1.")),
        "{out:#}"
    );
    for page in ["overview", "client", "pushes"] {
        assert!(screenshots.join(format!("console-{page}.png")).exists());
    }
}
