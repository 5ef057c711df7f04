//! The one place the fuzz targets name the library's items.
//!
//! Every `quarantine::...` path the targets use is re-exported here, so when the library's
//! modules move, only this file changes. Each item listed must stay `pub` in the library.

/// Size-prefixed frames read from a client or broker socket.
pub mod frame {
    pub use quarantine::edge::frame::{FrameError, FrameReader};
}

/// Request headers and the client requests the proxy looks into.
pub mod requests {
    /// Kafka API keys (the `kafka-protocol` crate's, as the library takes them).
    pub use kafka_protocol::messages::ApiKey;
    pub use quarantine::protocol::consumer_requests::{
        consumer_assignment, decode, fetch_positions, group_request, offset_commit, ConsumerApi,
    };
    pub use quarantine::protocol::wire::request_head;
}

/// The record-batch codec and its rewrites (hide, trim).
pub mod batches {
    pub use quarantine::protocol::record::{Header, Record};
    pub use quarantine::protocol::record_batch::{
        decode_batch, encode_batch_framed, hide_offsets, rewrite, scan, trim_after, BatchHeader,
        Compression, Entries, Entry, SnappyFraming, Verdict,
    };
}

/// The Fetch response reader the proxy streams broker bytes through.
pub mod fetch_scan {
    pub use quarantine::protocol::fetch_scan::{FetchScanner, Step, MAX_VERSION, MIN_VERSION};
}

/// The quarantine state topic's message decoder.
pub mod state {
    pub use quarantine::watch::store::reencode_state_message;
}

/// Dead-letter header parsing (`quarantine dlq inspect/replay/stats`).
pub mod dead_letter {
    pub use quarantine::dead_letter::{parse_origin, replay_count};
}

/// Transforms and checks (Kafka-Connect-style pipelines).
pub mod transform {
    pub use quarantine::transform::{Pipelines, RecordContext, TransformConfig};
}

/// Config loading.
pub mod config {
    pub use quarantine::config::Config;
}

/// A current-thread runtime per fuzzing thread, for the async frame reader.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RT.with(|rt| rt.block_on(f))
}
