//! The command line, built from [`KEYS`]: `--config`, `--print-keys` and the flags keys
//! declare.

use std::path::PathBuf;

use super::RawValue;
use super::keys::{KEYS, Kind};

/// What the command line says: the file to read, whether to list the keys, and the keys set
/// by flags (every flag is declared with its key in [`KEYS`]). No `Debug`: they may hold the
/// secret and API keys.
#[derive(Default)]
pub struct Flags {
    /// The TOML configuration file (`--config`, or `HERALD_CONFIG`).
    pub config: Option<PathBuf>,
    /// `--print-keys`: print every configuration key, then exit.
    pub print_keys: bool,
    /// `--markdown` (with `--print-keys`): as the table of docs/configuration.md.
    pub markdown: bool,
    /// The keys set by flags, as `(key path, raw value)` pairs.
    pub(super) overrides: Vec<(&'static str, RawValue)>,
}

impl Flags {
    /// The process's command line; `--help`, `--version` and errors print and exit.
    pub fn parse() -> Flags {
        Flags::from_matches(&command().get_matches())
    }

    /// Parses `args` (the program name first).
    ///
    /// # Errors
    /// clap's error for an unknown flag or a missing value (also for `--help`).
    pub fn try_parse_from<I, T>(args: I) -> Result<Flags, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        command()
            .try_get_matches_from(args)
            .map(|m| Flags::from_matches(&m))
    }

    fn from_matches(m: &clap::ArgMatches) -> Flags {
        let mut overrides = Vec::new();
        for key in KEYS.iter().filter(|k| k.flag.is_some()) {
            let raw = match key.kind {
                Kind::StrList => m
                    .get_many::<String>(key.path)
                    .map(|v| RawValue::List(v.cloned().collect())),
                Kind::Bool => m.get_flag(key.path).then(|| RawValue::Text("true".into())),
                _ => m
                    .get_one::<String>(key.path)
                    .map(|v| RawValue::Text(v.clone())),
            };
            if let Some(raw) = raw {
                overrides.push((key.path, raw));
            }
        }
        Flags {
            config: m.get_one::<PathBuf>("config").cloned(),
            print_keys: m.get_flag("print_keys"),
            markdown: m.get_flag("markdown"),
            overrides,
        }
    }
}

/// The command line: `--config`, `--print-keys`, and one flag per key that declares one.
fn command() -> clap::Command {
    use clap::{Arg, ArgAction, Command, value_parser};
    let mut cmd = Command::new("herald")
        .version(super::VERSION)
        .about("Herald: a push server with durable, ordered, acknowledged per-client queues.")
        .after_help(
            "Every key can also be set in the TOML file given by --config and by its HERALD_* \
             environment variable; flags override the environment, which overrides the file. \
             Run `herald --print-keys` to list every key.",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("PATH")
                .value_parser(value_parser!(PathBuf))
                .help("The TOML configuration file [env: HERALD_CONFIG]"),
        )
        .arg(
            Arg::new("print_keys")
                .long("print-keys")
                .action(ArgAction::SetTrue)
                .help(
                    "Print every configuration key with its environment variable and default, \
                     then exit",
                ),
        )
        .arg(
            Arg::new("markdown")
                .long("markdown")
                .action(ArgAction::SetTrue)
                .requires("print_keys")
                .help(
                    "With --print-keys: print the keys as the table of docs/configuration.md \
                     (scripts/config-docs.sh writes it there)",
                ),
        );
    for key in KEYS {
        let Some(flag) = &key.flag else {
            continue;
        };
        let mut help = key.help.to_owned();
        if let Kind::Word(words) = key.kind {
            help.push_str(&format!(": {}", words.join(", ")));
        }
        help.push_str(&format!(" [env: {}]", key.env));
        let arg = Arg::new(key.path).long(flag.long).help(help);
        cmd = cmd.arg(match key.kind {
            Kind::Bool => arg.action(ArgAction::SetTrue),
            Kind::StrList => arg.value_name(flag.value_name).action(ArgAction::Append),
            _ => arg.value_name(flag.value_name),
        });
    }
    cmd
}
