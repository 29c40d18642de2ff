//! The network layer: accept, frame, dispatch.

pub mod connection;
pub mod dispatch;
pub mod listener;
