//! What operators see: the admin HTTP server, readiness, and metrics.

pub mod admin;
pub mod collectors;
pub mod logging;
pub mod metrics;
pub(crate) mod readiness;
