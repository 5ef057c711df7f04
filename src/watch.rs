//! The consumer watcher: follows group traffic and fetches of watched topics. Filled in by
//! the poison-detection work; this file holds the interface the connection code calls.

use kafka_protocol::messages::{FetchResponse, MetadataResponse};

use crate::wire::RequestHead;

/// Who is on the other end of a client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Process-unique connection id.
    pub id: u64,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Broker node this connection goes to (`None` for the bootstrap listener).
    pub node: Option<i32>,
}

/// What the watcher noted about a request, handed back with its response.
#[derive(Debug)]
pub struct WatchRequest;

/// Follows consumer groups through their traffic.
pub struct ConsumerWatch;

impl ConsumerWatch {
    /// Looks at a request; `Some` when its response matters.
    pub fn on_request(
        &self,
        _conn: &ConnInfo,
        _head: &RequestHead,
        _frame: &[u8],
    ) -> Option<WatchRequest> {
        None
    }
    /// Sees a response to a noted request.
    pub fn on_response(
        &self,
        _conn: &ConnInfo,
        _req: &mut WatchRequest,
        _frame: &[u8],
        _version: i16,
    ) {
    }
    /// Sees (and may change) a fetch response; returns whether it changed.
    pub async fn on_fetch_response(
        &self,
        _conn: &ConnInfo,
        _req: &mut WatchRequest,
        _resp: &mut FetchResponse,
        _version: i16,
    ) -> bool {
        false
    }
    /// Learns topic names and ids from Metadata.
    pub fn on_metadata(&self, _resp: &MetadataResponse) {}
    /// A client connection closed.
    pub fn on_close(&self, _conn: &ConnInfo, _clean: bool) {}
}
