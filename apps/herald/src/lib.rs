//! The Herald push server: configuration, wiring of the engine to its adapters, the REST API
//! and metrics. The `herald` binary is a thin `main` over this library.

pub mod api;
pub mod config;
pub mod console;
pub mod logging;
pub mod metrics;
pub mod secret;
pub mod server;
pub mod subs;
