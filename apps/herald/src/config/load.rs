//! Loading: the file (`--config` or `HERALD_CONFIG`), then the environment, then the flags,
//! each value checked against its key and remembered with where it came from, merged into
//! one flat table that [`Config::from_flat`] turns into the configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::{Table, Value};

use super::keys::{KEYS, Key, Kind};
use super::{Config, ConfigError, Flags, RawValue};

impl Config {
    /// Builds the configuration from the flags, the file they name (or `HERALD_CONFIG`) and
    /// the given environment.
    ///
    /// # Errors
    /// The first [`ConfigError`] found: unreadable file, unknown key, bad value, or a
    /// combination refused (a non-loopback API address without a key).
    pub fn load(
        flags: &Flags,
        env: &BTreeMap<String, String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let mut table = Table::new();
        let mut sources: BTreeMap<&'static str, String> = BTreeMap::new();

        let file = flags
            .config
            .clone()
            .or_else(|| env.get("HERALD_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let parsed: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::File {
                    path: shown.clone(),
                    reason: e.message().to_string(),
                })?;
            flatten_file(&parsed, "", &mut table, &mut sources, &shown)?;
        }

        let known_env: Vec<&str> = KEYS.iter().map(|k| k.env).collect();
        for (name, value) in env {
            if let Some(key) = KEYS.iter().find(|k| k.env == name.as_str()) {
                let raw = if key.kind == Kind::StrList {
                    RawValue::List(value.split(',').map(|s| s.trim().to_owned()).collect())
                } else {
                    RawValue::Text(value.clone())
                };
                let v = key.convert(raw, &format!("environment variable {name}"))?;
                table.insert(key.path.into(), v);
                sources.insert(key.path, format!("environment variable {name}"));
            } else if name.starts_with("HERALD_")
                && name != "HERALD_CONFIG"
                && !is_foreign_herald_var(name)
                && !known_env.contains(&name.as_str())
            {
                warnings.push(format!(
                    "ignoring unknown environment variable {name} (run `herald --print-keys`)"
                ));
            }
        }

        for (path, raw) in &flags.overrides {
            let key = key(path);
            let long = key.flag.as_ref().map_or(*path, |f| f.long);
            let flag = format!("flag --{long}");
            let v = key.convert(raw.clone(), &flag)?;
            table.insert((*path).into(), v);
            sources.insert(path, flag);
        }

        let config = Config::from_flat(&table, &sources)?;
        Ok((config, warnings))
    }
}

/// Variables with the `HERALD_` prefix that belong to Herald's tools, not to the server.
fn is_foreign_herald_var(name: &str) -> bool {
    [
        "HERALD_IT_",
        "HERALD_TEST_",
        "HERALD_SIM_",
        "HERALD_BENCH_",
        "HERALD_CLI_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn key(path: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.path == path)
        .expect("flags only name declared keys")
}

/// Walks the file's tables, checking every key against [`KEYS`] and flattening to dotted paths.
fn flatten_file(
    t: &Table,
    prefix: &str,
    out: &mut Table,
    sources: &mut BTreeMap<&'static str, String>,
    file: &str,
) -> Result<(), ConfigError> {
    for (name, value) in t {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Value::Table(inner) = value {
            if KEYS.iter().any(|k| k.path.starts_with(&format!("{path}."))) {
                flatten_file(inner, &path, out, sources, file)?;
                continue;
            }
            return Err(ConfigError::UnknownKey(path));
        }
        let Some(key) = KEYS.iter().find(|k| k.path == path) else {
            return Err(ConfigError::UnknownKey(path));
        };
        let source = format!("file {file}");
        let v = key.check(value.clone(), &source)?;
        out.insert(key.path.into(), v);
        sources.insert(key.path, source);
    }
    Ok(())
}
