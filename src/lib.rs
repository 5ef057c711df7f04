//! quarantine: a Kafka sidecar proxy that finds poison records on the wire, writes them
//! to a dead-letter topic and hides them from the consumer group that cannot process them.
//!
//! The byte edge is `frame` (size-prefixed frames) and `wire` (headers, bounded parsing of
//! client requests, typed broker responses). `connection` and `exchange` move frames;
//! `nodes` and `api_versions` keep clients on the proxy; `watch` follows consumers.

#![warn(missing_docs)]

pub mod admin;
pub mod api_versions;
pub mod app;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod consumer_requests;
pub mod dead_letter;
pub mod detect;
pub mod dlq_tools;
pub mod exchange;
pub mod frame;
pub mod groups;
pub mod guard_cli;
pub mod kafka_client;
pub mod metrics;
pub mod nodes;
pub mod proxy;
pub mod readiness;
pub mod record;
pub mod record_batch;
pub mod sasl;
pub mod state_cli;
pub mod stream;
pub mod tls;
pub mod topics;
pub mod transform;
pub mod watch;
pub mod wire;
