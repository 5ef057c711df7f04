//! Where the watcher plugs into routing. The routing layer owns this trait and calls it at
//! fixed points of an exchange; the watcher implements it. Every method has a no-op
//! default, so [`NoHooks`] is a plain relay that still rewrites broker addresses.
//!
//! The model is pingora's `ProxyHttp`: one trait, a per-exchange context
//! ([`Hooks::Exchange`]) created when the request is seen and handed back with its
//! response.

use std::future::Future;
use std::net::SocketAddr;

use kafka_protocol::messages::{FetchResponse, MetadataResponse};

use crate::protocol::consumer_requests::ConsumerRequest;
use crate::protocol::fetch_scan::ScannedPartition;
use crate::protocol::wire::RequestHead;

/// Who is on the other end of a client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Process-unique connection id.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Broker node this connection goes to (`None` for the bootstrap listener).
    pub node: Option<i32>,
}

/// Who ended a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client closed it, or its process died (EOF or reset on the client side).
    Client,
    /// The broker closed it or failed; the proxy closed the client side after it.
    Broker,
    /// The proxy is shutting down.
    Shutdown,
}

/// What routing tells the watcher, in the order an exchange happens.
pub trait Hooks: Send + Sync + 'static {
    /// What the hooks keep about one request until its response.
    type Exchange: Send + 'static;

    /// A consumer request, read, before it is forwarded. The returned future may hold the
    /// request (bounded by the implementation): the connection sends nothing else until
    /// it resolves.
    fn before_forward(
        &self,
        _conn: &ConnInfo,
        _head: &RequestHead,
        _request: &ConsumerRequest,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// A consumer request on its way to the broker; `Some` when its response matters.
    fn on_request(
        &self,
        _conn: &ConnInfo,
        _head: &RequestHead,
        _request: ConsumerRequest,
    ) -> Option<Self::Exchange> {
        None
    }

    /// A Metadata response (topic names and ids).
    fn on_metadata(&self, _response: &MetadataResponse) {}

    /// A decoded Fetch response whose request returned an exchange; may change the body
    /// (hide records, transform them). Returns whether it did.
    fn on_fetch_response(
        &self,
        _conn: &ConnInfo,
        _exchange: &mut Self::Exchange,
        _response: &mut FetchResponse,
        _version: i16,
    ) -> impl Future<Output = bool> + Send {
        async { false }
    }

    /// Whether the response to this fetch can only pass through unchanged, as far as the
    /// hooks know when it starts to arrive. Then it is streamed to the client as it comes
    /// and [`Hooks::on_fetch_streamed`] sees what was read of it; otherwise it is held
    /// whole and [`Hooks::on_fetch_response`] may change it.
    fn fetch_may_stream(&self, _conn: &ConnInfo, _exchange: &Self::Exchange) -> bool {
        true
    }

    /// A fetch response that was streamed: its partitions and record batch offsets.
    fn on_fetch_streamed(
        &self,
        _conn: &ConnInfo,
        _exchange: &mut Self::Exchange,
        _partitions: &[ScannedPartition],
    ) {
    }

    /// The response (still bytes, correlation id already the client's) to a consumer
    /// request other than Fetch that returned an exchange.
    fn on_response(
        &self,
        _conn: &ConnInfo,
        _exchange: &mut Self::Exchange,
        _frame: &[u8],
        _version: i16,
    ) {
    }

    /// A client connection closed; `clean` when no error ended it.
    fn on_close(&self, _conn: &ConnInfo, _clean: bool, _by: ClosedBy) {}

    /// Why the proxy must not claim to be ready yet as far as the hooks are concerned
    /// (`/ready` answers 503 with this text), or `None`.
    fn not_ready(&self) -> Option<&'static str> {
        None
    }
}

/// No hooks: the proxy relays, rewriting only broker addresses and API versions.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {
    type Exchange = ();
}
