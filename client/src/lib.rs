//! Rust client for the broker: producer, consumer and admin (in progress).
