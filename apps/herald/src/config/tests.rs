use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn load(args: &[&str], e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut argv = vec!["herald"];
    argv.extend_from_slice(args);
    let flags = Flags::try_parse_from(argv).expect("flags parse");
    Config::load(&flags, &env(e)).map(|(c, _)| c)
}

fn file(text: &str) -> tempfile_path::TempFile {
    tempfile_path::TempFile::new(text)
}

/// A file removed on drop, without a dependency.
mod tempfile_path {
    pub struct TempFile(pub std::path::PathBuf);
    impl TempFile {
        pub fn new(text: &str) -> TempFile {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "herald-config-test-{}-{}.toml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&p, text).unwrap();
            TempFile(p)
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn defaults_run_one_node_with_no_external_service() {
    let c = load(&[], &[]).unwrap();
    assert_eq!(c.role, Role::All);
    assert_eq!(c.api_listen, "127.0.0.1:3000".parse().unwrap());
    assert_eq!(c.connector_listen, "127.0.0.1:3001".parse().unwrap());
    assert_eq!(c.store, StoreChoice::Embedded("./herald-data".into()));
    assert_eq!(c.broker, BrokerChoice::InProcess);
    assert_eq!(c.window, 64);
    assert_eq!(c.ping_interval, Duration::from_secs(25));
    assert_eq!(c.ping_timeout, Duration::from_secs(20));
    assert_eq!(c.max_queue_bytes, 16 << 20);
    assert_eq!(c.close_timeout, Duration::from_secs(3));
    assert_eq!(c.retention_cap, 10_000);
    assert_eq!(c.retention_ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(c.api_max_body, 1 << 20);
    assert_eq!(c.http_max_head, 8 << 10);
    assert_eq!(c.http_head_timeout, Duration::from_secs(10));
    assert_eq!(c.http_body_timeout, Duration::from_secs(30));
    assert_eq!(c.http_idle_timeout, Duration::from_secs(60));
    assert_eq!(c.http_write_timeout, Duration::from_secs(30));
    assert_eq!(c.http_max_connections, None);
}

#[test]
fn http_limits_come_from_the_file_and_the_environment() {
    let f = file("[http]\nmax_head = 16384\nmax_connections = 100\n");
    let path = f.0.to_str().unwrap();
    let c = load(
        &["--config", path],
        &[("HERALD_HTTP_BODY_TIMEOUT_MS", "500")],
    )
    .unwrap();
    assert_eq!(c.http_max_head, 16384);
    assert_eq!(c.http_max_connections, Some(100));
    assert_eq!(c.http_body_timeout, Duration::from_millis(500));
    assert!(load(&[], &[("HERALD_HTTP_MAX_HEAD", "10")]).is_err());
}

#[test]
fn flags_override_env_which_overrides_the_file() {
    let f = file("[connector]\nwindow = 8\n[api]\nlisten = \"127.0.0.1:4000\"\n");
    let path = f.0.to_str().unwrap();
    let c = load(&["--config", path], &[]).unwrap();
    assert_eq!(c.window, 8);
    assert_eq!(c.api_listen.port(), 4000);
    let c = load(&["--config", path], &[("HERALD_WINDOW", "16")]).unwrap();
    assert_eq!(c.window, 16);
    let c = load(
        &["--config", path, "--window", "32"],
        &[("HERALD_WINDOW", "16")],
    )
    .unwrap();
    assert_eq!(c.window, 32);
    let c = load(&[], &[("HERALD_CONFIG", path)]).unwrap();
    assert_eq!(c.window, 8);
}

#[test]
fn unknown_keys_stop_start_up_with_their_name() {
    let f = file("[connector]\nwindoww = 8\n");
    let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
    assert_eq!(err, ConfigError::UnknownKey("connector.windoww".into()));
    let f = file("colour = \"red\"\n");
    let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
    assert_eq!(err, ConfigError::UnknownKey("colour".into()));
    let f = file("[nope]\nx = 1\n");
    let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
    assert_eq!(err, ConfigError::UnknownKey("nope".into()));
}

#[test]
fn bad_values_name_the_key_and_the_source() {
    let f = file("[connector]\nwindow = \"many\"\n");
    let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("connector.window") && msg.contains("whole number"),
        "{msg}"
    );
    let err = load(&[], &[("HERALD_WINDOW", "0")]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("HERALD_WINDOW") && msg.contains("from 1 to 4096"),
        "{msg}"
    );
    let err = load(&["--api-listen", "localhost"], &[]).unwrap_err();
    assert!(err.to_string().contains("--api-listen"), "{err}");
    let err = load(&["--role", "boss"], &[]).unwrap_err();
    assert!(err.to_string().contains("all, connector, api"), "{err}");
    let err = load(&[], &[("HERALD_LEGACY_AUTH", "maybe")]).unwrap_err();
    assert!(err.to_string().contains("true or false"), "{err}");
}

#[test]
fn bad_toml_is_a_file_error() {
    let f = file("[connector\n");
    let err = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");
    let err = load(&["--config", "/nonexistent/herald.toml"], &[]).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");
}

#[test]
fn public_api_without_a_key_is_refused() {
    let err = load(&["--api-listen", "0.0.0.0:3000"], &[]).unwrap_err();
    assert!(err.to_string().contains("API key"), "{err}");
    let c = load(
        &[
            "--api-listen",
            "0.0.0.0:3000",
            "--api-key",
            "k1",
            "--api-key",
            "k2",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.api_keys, vec!["k1", "k2"]);
    let c = load(
        &["--api-listen", "0.0.0.0:3000"],
        &[("HERALD_API_KEY", "a, b")],
    )
    .unwrap();
    assert_eq!(c.api_keys, vec!["a", "b"]);
}

#[test]
fn cluster_settings_are_checked_together() {
    let err = load(&["--redis", "redis://127.0.0.1"], &[]).unwrap_err();
    assert!(err.to_string().contains("auth.secret"), "{err}");
    let err = load(&["--redis", "redis://127.0.0.1", "--secret", "s"], &[]).unwrap_err();
    assert!(err.to_string().contains("--mongo"), "{err}");
    let err = load(&["--role", "connector", "--secret", "s"], &[]).unwrap_err();
    assert!(err.to_string().contains("needs Redis"), "{err}");
    let c = load(
        &[
            "--role",
            "connector",
            "--secret",
            "s",
            "--redis",
            "redis+cluster://a:1,b:2",
            "--mongo",
            "mongodb://m",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.role, Role::Connector);
    assert_eq!(
        c.broker,
        BrokerChoice::Redis("redis+cluster://a:1,b:2".into())
    );
    assert_eq!(c.store, StoreChoice::Mongo("mongodb://m".into()));
    let sentinel = "redis+sentinel://s1:26379,s2:26379/cache";
    let c = load(
        &[
            "--secret",
            "s",
            "--redis",
            sentinel,
            "--mongo",
            "mongodb://m",
        ],
        &[
            ("HERALD_BROKER_MAX_PENDING", "500"),
            ("HERALD_BROKER_MAX_PENDING_BYTES", "1048576"),
            ("HERALD_STORE_MONGO_KNOWN_COUNTERS", "7"),
            ("HERALD_STORE_MONGO_SETTLE_MS", "250"),
        ],
    )
    .unwrap();
    assert_eq!(c.broker, BrokerChoice::Redis(sentinel.into()));
    assert_eq!(
        (c.broker_max_pending, c.broker_max_pending_bytes),
        (500, 1 << 20)
    );
    assert_eq!(
        (c.mongo_known_counters, c.mongo_settle),
        (7, Duration::from_millis(250))
    );
    let d = load(&[], &[]).unwrap();
    assert_eq!(
        (d.broker_max_pending, d.broker_max_pending_bytes),
        (10_000, 16 << 20)
    );
    assert_eq!(
        (
            d.broker_connect_timeout,
            d.broker_response_timeout,
            d.broker_reconnect_max
        ),
        (
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(2)
        )
    );
    assert_eq!(
        (d.mongo_known_counters, d.mongo_settle),
        (100_000, Duration::from_secs(5))
    );
    let err = load(&[], &[("HERALD_BROKER_MAX_PENDING", "0")]).unwrap_err();
    assert!(err.to_string().contains("broker.max_pending"), "{err}");
    let err = load(&["--mongo", "http://x"], &[]).unwrap_err();
    assert!(err.to_string().contains("mongodb://"), "{err}");
    let err = load(&["--node-id", "a:b"], &[]).unwrap_err();
    assert!(err.to_string().contains("node_id"), "{err}");
}

#[test]
fn unknown_herald_env_vars_are_warned_not_fatal() {
    let flags = Flags::try_parse_from(["herald"]).unwrap();
    let (_, warnings) = Config::load(
        &flags,
        &env(&[
            ("HERALD_WINDOWW", "3"),
            ("HERALD_IT_REDIS_IMAGE", "x"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("HERALD_WINDOWW"));
}

#[test]
fn single_port_when_both_addresses_match() {
    let c = load(
        &[
            "--api-listen",
            "127.0.0.1:3005",
            "--connector-listen",
            "127.0.0.1:3005",
        ],
        &[],
    )
    .unwrap();
    assert!(c.single_port());
    let c = load(
        &[
            "--api-listen",
            "127.0.0.1:0",
            "--connector-listen",
            "127.0.0.1:0",
        ],
        &[],
    )
    .unwrap();
    assert!(!c.single_port(), "port 0 twice means two free ports");
}

#[test]
fn the_log_recovery_is_off_unless_asked_for() {
    assert!(!load(&[], &[]).unwrap().recover_damaged_log);
    assert!(
        load(&["--recover-damaged-log"], &[])
            .unwrap()
            .recover_damaged_log
    );
    let on = [("HERALD_STORE_RECOVER_DAMAGED_LOG", "true")];
    assert!(load(&[], &on).unwrap().recover_damaged_log);
    let f = file("[store]\nrecover_damaged_log = true\n");
    assert!(
        load(&["--config", f.0.to_str().unwrap()], &[])
            .unwrap()
            .recover_damaged_log
    );
    let err = load(&[], &[("HERALD_STORE_RECOVER_DAMAGED_LOG", "maybe")]).unwrap_err();
    assert!(
        err.to_string().contains("store.recover_damaged_log"),
        "{err}"
    );
}

#[test]
fn answer_error_and_skew_bounds_have_defaults_and_keys() {
    let c = load(&[], &[]).unwrap();
    assert_eq!(c.api_max_answer, 4 << 20);
    assert_eq!(c.api_max_listed_errors, 20);
    assert_eq!(c.max_future_skew, Duration::from_secs(60));
    assert_eq!(c.max_skew, Duration::from_secs(900));
    let f = file(
        "[api]\nmax_answer = 100000\nmax_listed_errors = 3\n[auth]\nmax_future_skew_secs = 0\n",
    );
    let c = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap();
    assert_eq!(
        (c.api_max_answer, c.api_max_listed_errors, c.max_future_skew),
        (100_000, 3, Duration::ZERO)
    );
    let c = load(&[], &[("HERALD_AUTH_MAX_FUTURE_SKEW_SECS", "5")]).unwrap();
    assert_eq!(c.max_future_skew, Duration::from_secs(5));
    let err = load(&[], &[("HERALD_API_MAX_ANSWER", "10")]).unwrap_err();
    assert!(err.to_string().contains("api.max_answer"), "{err}");
}

#[test]
fn errors_about_secrets_never_show_them() {
    let err = load(&[], &[("HERALD_API_KEY", "k-secret,,")]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("api.keys") && !msg.contains("k-secret"),
        "{msg}"
    );
    let f = file("[auth]\nsecret = [\"s-secret\"]\n");
    let msg = load(&["--config", f.0.to_str().unwrap()], &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("auth.secret") && !msg.contains("s-secret"),
        "{msg}"
    );
    for (flag, url) in [
        ("--mongo", "mongo://u:pw-secret@db"),
        ("--redis", "http://:pw-secret@cache:6379"),
        ("--mongo", "u:pw-secret@db"),
    ] {
        let msg = load(&[flag, url, "--secret", "s"], &[])
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("pw-secret") && msg.contains("***@"), "{msg}");
    }
    assert_eq!(redact_url("redis://:p@h:1/0"), "redis://***@h:1/0");
    let c = load(
        &[
            "--secret",
            "s-secret",
            "--api-key",
            "k-secret",
            "--role",
            "connector",
            "--redis",
            "redis://:pw-secret@r",
            "--mongo",
            "mongodb://u:pw-secret@m",
        ],
        &[],
    )
    .unwrap();
    let debug = format!("{c:?}");
    for s in ["s-secret", "k-secret", "pw-secret"] {
        assert!(!debug.contains(s), "{debug}");
    }
    assert!(debug.contains("mongodb://***@m"), "{debug}");
    assert_eq!(redact_url("mongodb://h/db"), "mongodb://h/db");
}

#[test]
fn every_key_has_a_unique_env_twin() {
    let mut seen = std::collections::BTreeSet::new();
    for k in KEYS {
        assert!(k.env.starts_with("HERALD_"), "{}", k.env);
        assert!(seen.insert(k.env), "duplicate {}", k.env);
    }
    assert!(describe_keys().contains("HERALD_API_LISTEN"));
}

#[test]
fn the_docs_table_is_generated_from_the_declarations() {
    let docs = include_str!("../../../../docs/configuration.md");
    let table = docs
        .split_once("-->\n")
        .filter(|(before, _)| before.contains("<!-- keys: begin"))
        .and_then(|(_, rest)| rest.split_once("<!-- keys: end -->"))
        .map(|(table, _)| table);
    assert_eq!(
        table,
        Some(keys_markdown().as_str()),
        "docs/configuration.md's key table is not what the declarations in config/keys/ give: \
         run scripts/config-docs.sh (it writes `herald --print-keys --markdown` between the \
         `keys: begin` and `keys: end` markers)"
    );
}

#[test]
fn every_default_is_a_valid_value_of_its_key_and_is_shown() {
    for key in KEYS {
        if let keys::Initial::Value(default) = key.default {
            key.check(default(), "the default")
                .unwrap_or_else(|e| panic!("{}: its default is refused: {e}", key.path));
        }
        let line = describe_keys()
            .lines()
            .find(|l| l.starts_with(&format!("{} ", key.path)))
            .map(str::to_owned)
            .unwrap_or_default();
        let shown = key.default_text().replace('`', "");
        assert!(
            line.contains(&shown),
            "--print-keys shows no default for {}: {line}",
            key.path
        );
    }
    let line = |path: &str| {
        describe_keys()
            .lines()
            .find(|l| l.starts_with(&format!("{path} ")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(
        line("connector.window").contains(" 64 "),
        "{}",
        line("connector.window")
    );
    assert!(line("connector.ping_interval_ms").contains(" 25000 "));
}

#[test]
fn an_error_about_a_key_that_was_not_set_says_so() {
    let err = load(&["--api-listen", "0.0.0.0:3000"], &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`api.keys` (not set)"), "{msg}");
    assert!(!msg.contains("default"), "{msg}");
}

#[test]
fn cors_origins_are_any_page_by_default_and_checked_when_listed() {
    let c = load(&[], &[]).unwrap();
    assert_eq!(c.cors_origins, vec!["*"]);
    assert_eq!(c.cors_max_age, Duration::from_secs(600));
    let env = [(
        "HERALD_CONNECTOR_CORS_ORIGINS",
        "https://app.example.com,http://localhost:8080",
    )];
    let c = load(&[], &env).unwrap();
    assert_eq!(
        c.cors_origins,
        vec!["https://app.example.com", "http://localhost:8080"]
    );
    for bad in [
        "*,https://a.example",
        "https://a.example/",
        "a.example",
        "HTTPS://A.example",
    ] {
        let err = load(&[], &[("HERALD_CONNECTOR_CORS_ORIGINS", bad)]).unwrap_err();
        assert!(
            err.to_string().contains("connector.cors_origins"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn shutdown_limits_and_broker_defaults_come_from_their_structs_and_keys_set_them() {
    let c = load(&[], &[]).unwrap();
    assert_eq!(c.shutdown, crate::shutdown::ShutdownLimits::default());
    let redis = herald_broker_redis::RedisBrokerConfig::from_url("redis://h:1").unwrap();
    assert_eq!(
        (c.broker_max_pending, c.broker_max_pending_bytes),
        (redis.max_pending, redis.max_pending_bytes)
    );
    assert_eq!(c.broker_reconnect_max, redis.reconnect_max);
    let env = [
        ("HERALD_SHUTDOWN_SESSIONS_MS", "1500"),
        ("HERALD_SHUTDOWN_WRITES_MS", "0"),
    ];
    let c = load(&[], &env).unwrap();
    assert_eq!(c.shutdown.sessions, Duration::from_millis(1500));
    assert_eq!(c.shutdown.writes, Duration::ZERO);
}

#[test]
fn webhooks_are_off_by_default_and_every_key_has_its_default() {
    let c = load(&[], &[]).unwrap();
    assert_eq!(c.webhook, crate::webhook::WebhookConfig::default());
    assert!(c.webhook.url.is_none());
    assert_eq!(c.webhook.events.len(), 4);
    assert_eq!(c.webhook.batch_max, 1000);
    assert_eq!(c.webhook.batch_delay, Duration::from_millis(200));
    assert_eq!(c.webhook.max_age, Duration::from_secs(86_400));
    assert_eq!(c.webhook.max_outbox, 1_000_000);
    let f = file(
        "[webhook]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"w-secret\"\nevents = [\"acked\", \"expired\"]\nbatch_max = 7\nretry_min_ms = 50\nretry_max_ms = 60\nmax_outbox = 3\n",
    );
    let c = load(&["--config", f.0.to_str().unwrap()], &[]).unwrap();
    assert_eq!(
        c.webhook.url.as_ref().unwrap().as_str(),
        "http://127.0.0.1:9/hook"
    );
    assert_eq!(
        c.webhook.events,
        vec![
            herald_core::EventKind::Acked,
            herald_core::EventKind::Expired
        ]
    );
    assert_eq!((c.webhook.batch_max, c.webhook.max_outbox), (7, 3));
    assert!(!format!("{c:?}").contains("w-secret"));
}

#[test]
fn a_webhook_url_without_a_secret_or_a_bad_one_stops_start_up() {
    let url = [("HERALD_WEBHOOK_URL", "http://127.0.0.1:9/hook")];
    let err = load(&[], &url).unwrap_err();
    assert!(err.to_string().contains("webhook.secret"), "{err}");
    for (bad, says) in [
        ("https://example.com/hook", "https is not supported"),
        ("not a url", "not a URL"),
        ("ftp://u:pw-secret@example.com/", "expected an http:// URL"),
    ] {
        let err = load(
            &[],
            &[("HERALD_WEBHOOK_URL", bad), ("HERALD_WEBHOOK_SECRET", "s")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("webhook.url") && err.contains(says), "{err}");
        assert!(!err.contains("pw-secret"), "{err}");
    }
    let with = |k: &'static str, v: &'static str| {
        load(
            &[],
            &[
                ("HERALD_WEBHOOK_URL", "http://h/x"),
                ("HERALD_WEBHOOK_SECRET", "s"),
                (k, v),
            ],
        )
        .unwrap_err()
        .to_string()
    };
    let err = with("HERALD_WEBHOOK_EVENTS", "acked,read");
    assert!(
        err.contains("webhook.events") && err.contains("\"read\""),
        "{err}"
    );
    let err = with("HERALD_WEBHOOK_LEASE_MS", "5000");
    assert!(err.contains("webhook.lease_ms"), "{err}");
    let err = with("HERALD_WEBHOOK_RETRY_MIN_MS", "400000");
    assert!(err.contains("webhook.retry_min_ms"), "{err}");
    let err = with("HERALD_WEBHOOK_BATCH_MAX", "0");
    assert!(err.contains("webhook.batch_max"), "{err}");
    // The secret never shows in an error about it.
    let f = file("[webhook]\nsecret = [\"w-secret\"]\n");
    let msg = load(&["--config", f.0.to_str().unwrap()], &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("webhook.secret") && !msg.contains("w-secret"),
        "{msg}"
    );
}
