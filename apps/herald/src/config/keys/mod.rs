//! Every configuration key, declared once ([`KEYS`]): path, environment variable, kind,
//! meaning, default and flag. `herald --print-keys` lists them with their defaults, and
//! `herald --print-keys --markdown` writes the table of docs/configuration.md from them
//! (`scripts/config-docs.sh` puts it in place; a test checks the file holds it).
//!
//! The declarations are in one file per group of keys; [`KEYS`] joins the groups, in the
//! order `--print-keys` and the docs table list them.

use std::time::Duration;

use herald_broker_redis::{RedisBrokerConfig, Topology};
use herald_core::auth::AuthConfig;
use herald_core::{HubConfig, NodeId};
use herald_socketio::ServerConfig;
use herald_socketio::http1::HttpLimits;
use herald_store_mongo::MongoConfig;
use toml::Value;

/// What a key's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Any non-empty string.
    Str,
    /// A `host:port` socket address.
    Addr,
    /// A whole number within bounds.
    Int { min: i64, max: i64 },
    /// `true` or `false`.
    Bool,
    /// A list of non-empty strings (in the environment: comma-separated).
    StrList,
    /// One of the given words.
    Word(&'static [&'static str]),
}

/// One configuration key, declared once: its dotted path in the file, its environment
/// variable, its type, what it means, its default and its command-line flag if it has one.
/// The file's schema, the environment, the flags (`herald --help`), the defaults of
/// [`super::Config`], `herald --print-keys` and the table of docs/configuration.md all derive
/// from [`KEYS`].
#[derive(Clone, Copy)]
pub(super) struct Key {
    pub(super) path: &'static str,
    pub(super) env: &'static str,
    pub(super) kind: Kind,
    /// One line, for `--help` and `--print-keys`.
    pub(super) help: &'static str,
    /// The meaning column of docs/configuration.md (Markdown).
    pub(super) doc: &'static str,
    pub(super) default: Initial,
    pub(super) flag: Option<Flag>,
}

/// A key's value when nothing sets it.
#[derive(Clone, Copy)]
pub(super) enum Initial {
    /// This value, taken from the config struct of the crate whose setting it is (those
    /// structs are where defaults are written), or written here for the app's own keys.
    Value(fn() -> Value),
    /// No value: the key stays unset, and this says what happens then.
    Unset(&'static str),
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn int(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> Value {
    Value::Integer(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> Value {
    Value::Integer(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| text(s)).collect())
}

fn hub() -> HubConfig {
    HubConfig::new(NodeId::new("defaults").expect("a valid node id"))
}

fn socketio() -> ServerConfig {
    ServerConfig::default()
}

fn auth() -> AuthConfig {
    AuthConfig::new(Vec::new())
}

fn http() -> HttpLimits {
    HttpLimits::default()
}

fn mongo() -> MongoConfig {
    MongoConfig::new("")
}

fn webhook() -> crate::webhook::WebhookConfig {
    crate::webhook::WebhookConfig::default()
}

fn redis() -> RedisBrokerConfig {
    RedisBrokerConfig::new(Topology::Standalone(String::new()))
}

/// The command-line flag of a key.
#[derive(Clone, Copy)]
pub(super) struct Flag {
    /// `--<long>`.
    pub(super) long: &'static str,
    /// The value's placeholder in `--help`; empty for a switch (a [`Kind::Bool`] key set to
    /// `true` by the flag alone). A [`Kind::StrList`] key's flag may be repeated.
    pub(super) value_name: &'static str,
}

pub(super) const MS_MAX: i64 = 24 * 3600 * 1000;

mod api;
mod broker;
mod connector;
mod node;
mod store;
mod webhook;

/// The groups of [`KEYS`], in its order.
const GROUPS: &[&[Key]] = &[
    node::NODE,
    api::API,
    connector::CONNECTOR,
    connector::AUTH,
    store::STORE,
    broker::BROKER,
    store::RETENTION,
    node::HTTP,
    node::LOG,
    node::SHUTDOWN,
    webhook::WEBHOOK,
];

/// How many keys `groups` hold.
const fn count(groups: &[&[Key]]) -> usize {
    let (mut n, mut g) = (0, 0);
    while g < groups.len() {
        n += groups[g].len();
        g += 1;
    }
    n
}

/// The keys of `groups`, one group after the other (`N` is their [`count`]).
const fn concat<const N: usize>(groups: &[&[Key]]) -> [Key; N] {
    let mut out = [groups[0][0]; N];
    let (mut at, mut g) = (0, 0);
    while g < groups.len() {
        let mut i = 0;
        while i < groups[g].len() {
            out[at] = groups[g][i];
            at += 1;
            i += 1;
        }
        g += 1;
    }
    assert!(at == N, "N is the count of the groups' keys");
    out
}

/// Every configuration key Herald knows. `herald --help` and docs/configuration.md list them.
pub(super) const KEYS: &[Key] = &concat::<{ count(GROUPS) }>(GROUPS);
