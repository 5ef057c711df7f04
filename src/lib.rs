//! quarantine: a Kafka sidecar proxy that finds poison records on the wire, writes them
//! to a dead-letter topic and hides them from the consumer group that cannot process them.

pub mod detect;
pub mod record;
