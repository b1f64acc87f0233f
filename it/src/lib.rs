//! End-to-end tests: real herald processes, Redis and MongoDB in containers, real clients.
//!
//! Not built yet: this crate is a placeholder in the workspace so that the layout of
//! DESIGN.md exists from the start. It exports nothing.
