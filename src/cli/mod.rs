//! Operator commands besides `run`: the dead-letter tools, and the deploy guards and poison
//! searches of a running proxy through its admin API.

pub(crate) mod admin;
pub mod dlq;
pub mod guard;
pub mod inject;
pub mod searches;
pub mod state;
