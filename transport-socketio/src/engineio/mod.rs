//! Engine.IO v4.
pub mod packet;
