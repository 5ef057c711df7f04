//! The byte edge: client and broker sockets (plain or TLS), size-prefixed Kafka frames,
//! and the accept loop. Nothing here knows what a frame means.

pub mod frame;
pub(crate) mod listener;
pub mod stream;
pub mod tls;
