//! The keys as people read them: `herald --print-keys` (one line each, with its default) and
//! the table of docs/configuration.md (`herald --print-keys --markdown`), both from [`KEYS`].

use toml::Value;

use super::keys::{Initial, KEYS, Key, Kind};

/// Every key with its environment variable, default and meaning, one per line
/// (`herald --print-keys`).
pub fn describe_keys() -> String {
    KEYS.iter()
        .map(|k| {
            let default = k.default_text().replace('`', "");
            format!("{:<30} {:<36} {:<18} {}\n", k.path, k.env, default, k.help)
        })
        .collect()
}

/// The table of docs/configuration.md, from [`KEYS`] (`herald --print-keys --markdown`).
pub fn keys_markdown() -> String {
    let mut out = String::from(
        "| key | env | flag | default | bounds | meaning |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for k in KEYS {
        let list = k.kind == Kind::StrList;
        let env = format!(
            "`{}`{}",
            k.env,
            if list { " (comma-separated)" } else { "" }
        );
        let flag = k.flag.as_ref().map_or(String::new(), |f| {
            format!("`--{}`{}", f.long, if list { " (repeatable)" } else { "" })
        });
        out.push_str(&format!(
            "| `{}` | {env} | {flag} | {} | {} | {} |\n",
            k.path,
            k.default_text(),
            k.bounds(),
            k.doc
        ));
    }
    out
}

impl Key {
    /// The default as the docs show it.
    pub(super) fn default_text(&self) -> String {
        match self.default {
            Initial::Unset(what) => what.to_owned(),
            Initial::Value(value) => match value() {
                Value::String(s) => format!("`{s}`"),
                Value::Integer(n) if self.is_bytes() => match bytes(n) {
                    Some(size) => format!("`{n}` ({size})"),
                    None => format!("`{n}`"),
                },
                other => format!("`{other}`"),
            },
        }
    }

    /// A size in bytes (its name or its meaning says so).
    fn is_bytes(&self) -> bool {
        self.path.ends_with("_bytes") || self.help.contains(", bytes")
    }

    /// What values are accepted, as the docs show it.
    fn bounds(&self) -> String {
        match self.kind {
            Kind::Str => "non-empty".into(),
            Kind::Addr => "`ip:port`".into(),
            Kind::Bool => "bool".into(),
            Kind::StrList => "non-empty strings".into(),
            Kind::Word(words) => words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", "),
            Kind::Int { min, max } if max == i64::MAX => format!("≥ {min}"),
            Kind::Int { min, max } => {
                let show = |n: i64| {
                    if self.path.ends_with("_ms") {
                        duration(n)
                    } else if self.path.ends_with("_secs") {
                        duration(n.saturating_mul(1000))
                    } else if self.is_bytes()
                        && let Some(size) = bytes(n)
                    {
                        size
                    } else {
                        grouped(n)
                    }
                };
                format!("{} – {}", show(min), show(max))
            }
        }
    }
}

/// `n` milliseconds in the largest unit that divides them.
fn duration(ms: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (365 * 86_400_000, " years"),
        (3_600_000, " h"),
        (60_000, " min"),
        (1000, " s"),
        (1, " ms"),
    ];
    if ms == 0 {
        return "0".into();
    }
    let (size, unit) = UNITS
        .into_iter()
        .find(|(size, _)| ms % size == 0)
        .unwrap_or((1, " ms"));
    format!("{}{unit}", grouped(ms / size))
}

/// `n` bytes in GiB, MiB or KiB, when one of them divides it.
fn bytes(n: i64) -> Option<String> {
    [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        .into_iter()
        .find(|(size, _)| n != 0 && n % size == 0)
        .map(|(size, unit)| format!("{} {unit}", n / size))
}

/// `n` with thousands separated by commas.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}
