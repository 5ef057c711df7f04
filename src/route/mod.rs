//! Routing: one client connection and its request/response exchanges. Every exchange is
//! classified once from its request ([`exchange::Route`]); responses that name brokers are
//! rewritten to the proxy's addresses ([`nodes`]), ApiVersions is capped
//! ([`api_versions`]), and the consumer traffic goes to the [`Hooks`] (the watcher).

pub(crate) mod api_versions;
pub mod budget;
pub(crate) mod connection;
pub(crate) mod exchange;
pub mod hooks;
pub mod nodes;
pub mod proxy;
pub(crate) mod serve;

pub use hooks::{ClosedBy, ConnInfo, Hooks, NoHooks};
pub use proxy::{Proxy, Target};
