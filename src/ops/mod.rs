//! What operators see: the admin HTTP server, readiness, and metrics.

pub mod admin;
pub mod metrics;
pub(crate) mod readiness;
