//! Engine.IO v4 / Socket.IO v5 server library (codec and tide/async-tungstenite serving).
//!
//! Not built yet: this crate is a placeholder in the workspace so that the layout of
//! DESIGN.md exists from the start. It exports nothing.
