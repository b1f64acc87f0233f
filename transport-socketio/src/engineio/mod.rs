//! Engine.IO v4 (and v3, for socket.io 1.x/2.x clients).
pub mod packet;
