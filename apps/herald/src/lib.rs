//! The Herald push server binary: configuration, wiring, REST API, metrics.
//!
//! Not built yet: this crate is a placeholder in the workspace so that the layout of
//! DESIGN.md exists from the start. It exports nothing.
