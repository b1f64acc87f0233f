//! Checking a key's value: from the file, the environment or a flag, against the key's
//! kind, with errors that name the key, the value (secrets hidden, URLs without their
//! password) and where it came from.

use std::net::SocketAddr;

use toml::Value;

use super::keys::{Key, Kind};
use super::{ConfigError, RawValue};

/// Keys whose values are secrets: never shown, not even in an error about them.
const SECRET_KEYS: [&str; 3] = ["auth.secret", "api.keys", "webhook.secret"];

/// Keys holding a URL that may carry a password.
const URL_KEYS: [&str; 3] = ["store.mongo", "broker.redis", "webhook.url"];

/// A URL without the user and password it may carry, for logs and error messages:
/// `mongodb://***@host/db`. Everything before the last `@` (after the scheme) is hidden.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl Key {
    /// Turns an environment or flag value into a checked TOML value of the key's kind.
    pub(super) fn convert(&self, raw: RawValue, source: &str) -> Result<Value, ConfigError> {
        let v = match (self.kind, raw) {
            (Kind::StrList, RawValue::List(l)) => {
                Value::Array(l.into_iter().map(Value::String).collect())
            }
            (Kind::StrList, RawValue::Text(s)) => Value::Array(vec![Value::String(s)]),
            (Kind::Int { .. }, RawValue::Text(s)) => match s.trim().parse::<i64>() {
                Ok(n) => Value::Integer(n),
                Err(_) => {
                    return Err(self.bad_value(
                        source,
                        format!(
                            "expected a whole number, found {}",
                            self.shown(&Value::String(s))
                        ),
                    ));
                }
            },
            (Kind::Bool, RawValue::Text(s)) => match s.trim() {
                "true" | "1" | "yes" | "on" => Value::Boolean(true),
                "false" | "0" | "no" | "off" => Value::Boolean(false),
                _ => {
                    return Err(self.bad_value(
                        source,
                        format!(
                            "expected true or false, found {}",
                            self.shown(&Value::String(s))
                        ),
                    ));
                }
            },
            (_, RawValue::Text(s)) => Value::String(s),
            (_, RawValue::List(l)) => Value::String(l.join(",")),
        };
        self.check(v, source)
    }

    fn bad_value(&self, source: &str, reason: String) -> ConfigError {
        ConfigError::BadValue {
            key: self.path.into(),
            origin: source.into(),
            reason,
        }
    }

    /// A value as an error message may show it: secrets hidden, URLs without their password.
    fn shown(&self, v: &Value) -> String {
        if SECRET_KEYS.contains(&self.path) {
            return format!("{} (value hidden: it is a secret)", v.type_str());
        }
        match v.as_str() {
            Some(s) if URL_KEYS.contains(&self.path) => {
                format!("{} {:?}", v.type_str(), redact_url(s))
            }
            _ if URL_KEYS.contains(&self.path) => v.type_str().to_owned(),
            _ => format!("{} {v}", v.type_str()),
        }
    }

    /// Checks one value against its key's kind.
    pub(super) fn check(&self, v: Value, source: &str) -> Result<Value, ConfigError> {
        let found = || format!("found {}", self.shown(&v));
        match self.kind {
            Kind::Str => match v.as_str() {
                Some(s) if !s.is_empty() => Ok(v),
                _ => {
                    Err(self.bad_value(source, format!("expected a non-empty string, {}", found())))
                }
            },
            Kind::Addr => match v.as_str().map(str::parse::<SocketAddr>) {
                Some(Ok(_)) => Ok(v),
                _ => Err(self.bad_value(
                    source,
                    format!(
                        "expected host:port with an IP address (e.g. 127.0.0.1:3000), {}",
                        found()
                    ),
                )),
            },
            Kind::Int { min, max } => match v.as_integer() {
                Some(n) if (min..=max).contains(&n) => Ok(v),
                _ => Err(self.bad_value(
                    source,
                    format!("expected a whole number from {min} to {max}, {}", found()),
                )),
            },
            Kind::Bool => match v.as_bool() {
                Some(_) => Ok(v),
                None => Err(self.bad_value(source, format!("expected true or false, {}", found()))),
            },
            Kind::StrList => match v.as_array() {
                Some(a) if a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty())) => Ok(v),
                _ => Err(self.bad_value(
                    source,
                    format!("expected a list of non-empty strings, {}", found()),
                )),
            },
            Kind::Word(words) => match v.as_str() {
                Some(s) if words.contains(&s) => Ok(v),
                _ => Err(self.bad_value(
                    source,
                    format!("expected one of {}, {}", words.join(", "), found()),
                )),
            },
        }
    }
}

/// `connector.cors_origins` is `["*"]` alone, or origins as browsers send them:
/// `http(s)://host[:port]`, no path, no trailing slash (a browser's `Origin` never has one, so
/// such an entry would match nothing).
pub(super) fn check_cors_origins(origins: &[String]) -> Result<(), String> {
    if origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            return Err(
                "\"*\" (any page, without credentials) cannot be listed with origins (which get \
                 credentials): use [\"*\"] alone or list the origins"
                    .into(),
            );
        }
        return Ok(());
    }
    for o in origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let valid = rest.is_some_and(|host| {
            !host.is_empty()
                && !host.contains(['/', '?', '#', ' ', '*'])
                && host == host.to_ascii_lowercase()
        });
        if !valid {
            return Err(format!(
                "expected an origin like https://app.example.com or http://localhost:8080 \
                 (lower case, no path, no trailing slash), found {o:?}"
            ));
        }
    }
    Ok(())
}
