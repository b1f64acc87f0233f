//! The Herald push server: configuration, wiring of the engine to its adapters, the REST API
//! and metrics. The `herald` binary is a thin `main` over this library.

pub mod api;
pub mod clients;
pub mod config;
pub mod connect;
pub mod console;
pub mod driver;
pub mod http;
pub mod logging;
pub mod metered;
pub mod metrics;
pub mod secret;
pub mod shutdown;
pub mod watch;
pub mod webhook;
