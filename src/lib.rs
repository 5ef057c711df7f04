//! quarantine: a Kafka sidecar proxy that finds poison records on the wire, writes them
//! to a dead-letter topic and hides them from the consumer group that cannot process them.
//!
//! The folders follow the data path:
//! - [`edge`]: sockets, TLS, size-prefixed frames, the accept loop;
//! - [`route`]: one client connection, its request/response exchanges, broker addresses
//!   and API versions, and the [`route::Hooks`] the watcher plugs into;
//! - [`protocol`]: bytes to typed values (request headers, the consumer requests the
//!   proxy reads, record batches and records);
//! - [`watch`]: follows consumer groups and turns wire events into calls of [`detect`]
//!   (pure poison detection) and [`transform`] (single message transforms and checks),
//!   and their decisions into [`dead_letter`] writes and hidden records;
//! - [`cluster`]: the proxy's own Kafka client (DLQ writes, state topic, SASL);
//! - [`ops`]: admin HTTP, readiness, metrics; [`cli`]: the operator commands;
//!   [`config`]: the file, environment and flags; [`app`]: wires it all together.

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dead_letter;
pub mod detect;
pub mod edge;
pub mod ops;
pub mod protocol;
pub mod route;
pub mod transform;
pub mod watch;
