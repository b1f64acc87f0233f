//! The Kubernetes manifests of `deploy/kubernetes/`, checked offline: PyPI's
//! `kubernetes-validate` (pinned in deploy/kubernetes/requirements.txt, installed in
//! `test-env/k8s-venv` by scripts/setup/55-deploy.sh) against the Kubernetes schemas it ships,
//! then what the schemas cannot know: the probes, the drain, the disruption budget, the
//! affinity, that every `HERALD_*` variable is a real key, and that the ConfigMap's file is a
//! configuration `herald` accepts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use herald_it::{Herald, TempDir, output_text, test_env, workspace_dir};
use serde_json::Value;

fn venv_bin(name: &str) -> PathBuf {
    let bin = test_env().join("k8s-venv/bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup/55-deploy.sh",
        bin.display()
    );
    bin
}

/// The manifests, in name order.
fn manifests() -> Vec<PathBuf> {
    let dir = workspace_dir().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

fn validate(files: &[PathBuf]) -> Output {
    Command::new(venv_bin("kubernetes-validate"))
        .arg("--strict")
        .args(files)
        .output()
        .expect("run kubernetes-validate")
}

/// Every document of `files` as JSON (PyYAML from the same venv reads them).
fn documents(files: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(venv_bin("python"))
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]\n\
             print(json.dumps(docs))",
        ])
        .args(files)
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

#[test]
fn the_manifests_pass_the_kubernetes_schemas() {
    let out = validate(&manifests());
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    for resource in [
        "deployment/herald-api",
        "deployment/herald-connector",
        "service/herald-api",
        "service/herald-connector",
        "poddisruptionbudget/herald-connector",
        "configmap/herald-config",
        "secret/herald-secrets",
    ] {
        assert!(
            text.contains(&format!("passed for resource {resource}")),
            "{resource}: {text}"
        );
    }
}

/// The validator catches a broken manifest: a port given as a string, a field that does not
/// exist.
#[test]
fn the_validator_refuses_a_broken_manifest() {
    let dir = TempDir::new("k8s");
    let source = workspace_dir().join("deploy/kubernetes/connector.yaml");
    let text = std::fs::read_to_string(&source).unwrap();
    for (what, from, to) in [
        (
            "a string port",
            "containerPort: 3001",
            "containerPort: \"3001\"",
        ),
        (
            "an unknown field",
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSecs: 30",
        ),
    ] {
        assert!(
            text.contains(from),
            "{from:?} is no longer in connector.yaml"
        );
        let broken = dir.0.join("connector.yaml");
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let out = validate(&[broken]);
        assert!(
            !out.status.success(),
            "{what} passed: {}",
            output_text(&out)
        );
    }
}

#[test]
fn connectors_drain_and_stay_reachable_while_one_stops() {
    let docs = documents(&manifests());
    let connector = find(&docs, "Deployment", "herald-connector");
    let pod = &connector["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthy");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "socketio");
    assert_eq!(c["ports"][0]["containerPort"], 3001);
    assert!(c["lifecycle"]["preStop"].is_object(), "no preStop: {c}");
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap_or(0);
    // Herald's own stop: up to 5 s closing sessions and 10 s of store writes (apps/herald).
    assert!(
        grace >= pre_stop + 15,
        "grace {grace} s, preStop {pre_stop} s"
    );
    assert_eq!(
        connector["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["requests"]["cpu"].is_string());

    let labels = &connector["spec"]["selector"]["matchLabels"];
    let pdb = find(&docs, "PodDisruptionBudget", "herald-connector");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    let service = find(&docs, "Service", "herald-connector");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(service["spec"]["sessionAffinity"], "ClientIP");

    let api = find(&docs, "Deployment", "herald-api");
    let a = &api["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(a["readinessProbe"]["httpGet"]["path"], "/healthy");
    assert_eq!(a["ports"][0]["containerPort"], 3000);
    let api_service = find(&docs, "Service", "herald-api");
    assert_eq!(
        &api_service["spec"]["selector"],
        &api["spec"]["selector"]["matchLabels"]
    );

    // Secrets come from the Secret, never as plain values.
    for (deployment, container) in [(connector, c), (api, a)] {
        for env in container["env"].as_array().unwrap() {
            let name = env["name"].as_str().unwrap();
            if [
                "HERALD_SECRET",
                "HERALD_API_KEY",
                "HERALD_MONGO",
                "HERALD_REDIS",
            ]
            .contains(&name)
            {
                assert_eq!(
                    env["valueFrom"]["secretKeyRef"]["name"], "herald-secrets",
                    "{name} in {}",
                    deployment["metadata"]["name"]
                );
            }
        }
    }
}

/// Every `HERALD_*` variable the manifests and the compose file set is one `herald` knows
/// (an unknown one is only a warning at start-up: a typo would go unnoticed).
#[test]
fn every_variable_set_is_a_herald_key() {
    let out = Command::new(herald_it::herald_bin())
        .arg("--print-keys")
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut files = manifests();
    files.push(workspace_dir().join("deploy/compose.yaml"));
    files.push(workspace_dir().join("Dockerfile"));
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices("HERALD_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            // HERALD_CONFIG names the file (a flag's variable), HERALD_IMAGE is compose's,
            // HERALD_NODE is the balancer's cookie, HERALD_GIT_COMMIT a build argument.
            if [
                "HERALD_CONFIG",
                "HERALD_IMAGE",
                "HERALD_NODE",
                "HERALD_GIT_COMMIT",
            ]
            .contains(&name.as_str())
            {
                continue;
            }
            assert!(
                keys.split_whitespace().any(|w| w == name),
                "{name} in {} is not a key of `herald --print-keys`",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} variables found");
}

/// The ConfigMap's `herald.toml` is a configuration a node starts with.
#[test]
fn the_configmap_file_is_a_valid_configuration() {
    let docs = documents(&manifests());
    let toml = find(&docs, "ConfigMap", "herald-config")["data"]["herald.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = TempDir::new("k8s-config");
    let file = dir.0.join("herald.toml");
    std::fs::write(&file, toml).unwrap();
    let data = dir.0.join("data");
    let mut node = Herald::start(Path::new(&data), &["--config", file.to_str().unwrap()]);
    let status = node.terminate();
    assert!(status.success(), "stopped by SIGTERM with {status}");
}
