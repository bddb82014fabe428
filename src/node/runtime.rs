//! Tokio runtime: being written.
