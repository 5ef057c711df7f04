//! One request/response exchange: what the proxy notes about a request on its way to the
//! broker, and what it does to the response on its way back.
//!
//! An exchange is classified once, from its request's API key ([`Route::of`]), and then
//! dispatched on that. Most are forwarded as the original bytes. Only responses that name
//! brokers (address rewriting), ApiVersions (version capping), and the consumer traffic
//! the [`Hooks`] look at are decoded, each in one place here.

use std::time::Instant;

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::protocol::consumer_requests::{self, ConsumerApi, ConsumerRequest};
use crate::protocol::wire::{self, decode_response, encode_response, RequestHead, WireError};
use crate::route::hooks::{ConnInfo, Hooks};
use crate::route::nodes::{brokers_named, rewrite_brokers, NamesBrokers};
use crate::route::proxy::Proxy;

/// What an exchange is, from its request: the one match on API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Forwarded both ways as bytes.
    Forward,
    /// ApiVersions: the response is capped to what the proxy can read.
    ApiVersions,
    /// A response that names brokers: Metadata, FindCoordinator, DescribeCluster, and
    /// Produce v10+ (`node_endpoints`).
    Addresses(AddressApi),
    /// Consumer traffic for the hooks; Fetch v16+ responses also name brokers.
    Consumer(ConsumerApi),
    /// SaslHandshake v0: after its response the connection carries raw SASL tokens.
    SaslV0,
}

/// The responses whose broker addresses are rewritten (Fetch aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressApi {
    /// Metadata (also tells the hooks about topics, and makes the proxy ready).
    Metadata,
    /// FindCoordinator.
    FindCoordinator,
    /// DescribeCluster.
    DescribeCluster,
    /// Produce v10+.
    Produce,
    /// ShareFetch (KIP-932): leader endpoints; otherwise passed as the broker's bytes.
    ShareFetch,
    /// ShareAcknowledge (KIP-932): as ShareFetch.
    ShareAcknowledge,
}

impl Route {
    /// Classifies a request.
    pub fn of(head: &RequestHead) -> Route {
        let Some(api) = head.api() else {
            return Route::Forward;
        };
        if let Some(c) = ConsumerApi::of(api) {
            return Route::Consumer(c);
        }
        match api {
            ApiKey::ApiVersions => Route::ApiVersions,
            ApiKey::Metadata => Route::Addresses(AddressApi::Metadata),
            ApiKey::FindCoordinator => Route::Addresses(AddressApi::FindCoordinator),
            ApiKey::DescribeCluster => Route::Addresses(AddressApi::DescribeCluster),
            ApiKey::Produce if head.api_version >= 10 => Route::Addresses(AddressApi::Produce),
            ApiKey::ShareFetch => Route::Addresses(AddressApi::ShareFetch),
            ApiKey::ShareAcknowledge => Route::Addresses(AddressApi::ShareAcknowledge),
            ApiKey::SaslHandshake if head.api_version == 0 => Route::SaslV0,
            _ => Route::Forward,
        }
    }
}

/// What to do with the response to a request.
pub enum Handling<X> {
    /// Forward the broker's bytes untouched.
    Forward,
    /// Cap the advertised API versions.
    ApiVersions,
    /// Rewrite the broker addresses.
    Addresses(AddressApi),
    /// A Fetch response: broker addresses (v16+) and, when the hooks asked, their view.
    Fetch(Option<X>),
    /// Consumer traffic the hooks follow (commits, joins, assignments).
    Consumer(X),
    /// SASL v0: after this response the connection carries raw SASL tokens, so the proxy
    /// relays bytes without framing from here on.
    ThenOpaque,
}

/// A request that is waiting for its response.
pub struct InFlight<X> {
    /// The client's correlation id, restored on the response.
    pub client_correlation: i32,
    /// The correlation id the proxy used upstream.
    pub upstream_correlation: i32,
    /// API key.
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// When the request arrived from the client.
    pub received: Instant,
    /// When it was written to the broker.
    pub sent: Instant,
    /// What to do with the response.
    pub handling: Handling<X>,
}

/// Whether a request gets a response at all (`Produce` with `acks=0` does not).
pub fn expects_response(head: &RequestHead, frame: &[u8]) -> bool {
    if head.api_key != ApiKey::Produce as i16 {
        return true;
    }
    let Some(body) = head.body_offset.and_then(|o| frame.get(o..)) else {
        return true;
    };
    let mut r = wire::WireReader::new(body);
    let flexible = head.api_version >= 9;
    if head.api_version >= 3 && r.string(flexible, "transactional id").is_err() {
        return true;
    }
    !matches!(r.i16("acks"), Ok(0))
}

/// The consumer request a frame carries, read; `None` for other routes or when it cannot
/// be read (the broker will judge it; the proxy just does not follow it).
pub fn consumer_request<H: Hooks>(
    proxy: &Proxy<H>,
    route: Route,
    head: &RequestHead,
    frame: &[u8],
) -> Option<ConsumerRequest> {
    let Route::Consumer(api) = route else {
        return None;
    };
    let body = frame.get(head.body_offset?..)?;
    match consumer_requests::decode(api, body, head.api_version) {
        Ok(r) => Some(r),
        Err(e) => {
            proxy.metrics.error("unparsed_request");
            tracing::debug!(error = %e, api = ?api, "cannot read a consumer request; passing it on unwatched");
            None
        }
    }
}

/// Decides how the response will be handled: the route, and what the hooks noted.
pub fn handling<H: Hooks>(
    proxy: &Proxy<H>,
    conn: &ConnInfo,
    route: Route,
    head: &RequestHead,
    request: Option<ConsumerRequest>,
) -> Handling<H::Exchange> {
    match route {
        Route::Forward => Handling::Forward,
        Route::ApiVersions => Handling::ApiVersions,
        Route::Addresses(api) => Handling::Addresses(api),
        Route::SaslV0 => Handling::ThenOpaque,
        Route::Consumer(api) => {
            let exchange = request.and_then(|r| proxy.hooks.on_request(conn, head, r));
            match (api, exchange) {
                (ConsumerApi::Fetch, x) if x.is_some() || head.api_version >= 16 => {
                    Handling::Fetch(x)
                }
                (ConsumerApi::Fetch, _) => Handling::Forward,
                (_, Some(x)) => Handling::Consumer(x),
                (_, None) => Handling::Forward,
            }
        }
    }
}

/// Applies the handling to a response frame whose correlation id is already the client's.
pub async fn respond<H: Hooks>(
    proxy: &Proxy<H>,
    conn: &ConnInfo,
    inflight: &mut InFlight<H::Exchange>,
    frame: BytesMut,
) -> Result<BytesMut, WireError> {
    let version = inflight.api_version;
    match &mut inflight.handling {
        Handling::Forward | Handling::ThenOpaque => Ok(frame),
        Handling::ApiVersions => crate::route::api_versions::rewrite(&frame, version),
        Handling::Addresses(AddressApi::Metadata) => {
            let (h, mut body) =
                decode_response::<MetadataResponse>(&frame, ApiKey::Metadata, version)?;
            proxy.hooks.on_metadata(&body);
            proxy.mark_ready();
            addresses(proxy, h, &mut body, ApiKey::Metadata, version).await
        }
        Handling::Addresses(AddressApi::FindCoordinator) => {
            rewrite::<H, FindCoordinatorResponse>(proxy, &frame, ApiKey::FindCoordinator, version)
                .await
        }
        Handling::Addresses(AddressApi::DescribeCluster) => {
            rewrite::<H, DescribeClusterResponse>(proxy, &frame, ApiKey::DescribeCluster, version)
                .await
        }
        Handling::Addresses(AddressApi::Produce) => {
            let (h, mut body) =
                decode_response::<ProduceResponse>(&frame, ApiKey::Produce, version)?;
            if body.node_endpoints.is_empty() {
                return Ok(frame);
            }
            addresses(proxy, h, &mut body, ApiKey::Produce, version).await
        }
        Handling::Addresses(AddressApi::ShareFetch) => {
            let (h, mut body) =
                decode_response::<ShareFetchResponse>(&frame, ApiKey::ShareFetch, version)?;
            if body.node_endpoints.is_empty() {
                return Ok(frame);
            }
            addresses(proxy, h, &mut body, ApiKey::ShareFetch, version).await
        }
        Handling::Addresses(AddressApi::ShareAcknowledge) => {
            let (h, mut body) = decode_response::<ShareAcknowledgeResponse>(
                &frame,
                ApiKey::ShareAcknowledge,
                version,
            )?;
            if body.node_endpoints.is_empty() {
                return Ok(frame);
            }
            addresses(proxy, h, &mut body, ApiKey::ShareAcknowledge, version).await
        }
        Handling::Fetch(exchange) => {
            let frame = frame.freeze();
            let (h, mut body) = {
                let mut buf = frame.slice(crate::edge::frame::PREFIX..);
                let h = kafka_protocol::messages::ResponseHeader::decode(
                    &mut buf,
                    ApiKey::Fetch.response_header_version(version),
                )
                .map_err(|e| decode_error(ApiKey::Fetch, version, e))?;
                let body = FetchResponse::decode(&mut buf, version)
                    .map_err(|e| decode_error(ApiKey::Fetch, version, e))?;
                (h, body)
            };
            let mut changed = false;
            if let Some(x) = exchange {
                changed |= proxy
                    .hooks
                    .on_fetch_response(conn, x, &mut body, version)
                    .await;
            }
            if !body.node_endpoints.is_empty() {
                let named = brokers_named(&mut body);
                let map = proxy.nodes.learn(&named).await;
                rewrite_brokers(&mut body, &map);
                changed = true;
            }
            if changed {
                encode_response(&h, &body, ApiKey::Fetch, version)
            } else {
                Ok(BytesMut::from(frame))
            }
        }
        Handling::Consumer(x) => {
            proxy.hooks.on_response(conn, x, &frame, version);
            Ok(frame)
        }
    }
}

fn decode_error(api: ApiKey, version: i16, e: anyhow::Error) -> WireError {
    WireError::Decode {
        api,
        version,
        message: e.to_string(),
    }
}

async fn rewrite<H: Hooks, T: Decodable + Encodable + NamesBrokers>(
    proxy: &Proxy<H>,
    frame: &[u8],
    api: ApiKey,
    version: i16,
) -> Result<BytesMut, WireError> {
    let (h, mut body) = decode_response::<T>(frame, api, version)?;
    addresses(proxy, h, &mut body, api, version).await
}

async fn addresses<H: Hooks, T: Encodable + NamesBrokers>(
    proxy: &Proxy<H>,
    header: kafka_protocol::messages::ResponseHeader,
    body: &mut T,
    api: ApiKey,
    version: i16,
) -> Result<BytesMut, WireError> {
    let named = brokers_named(body);
    let map = proxy.nodes.learn(&named).await;
    rewrite_brokers(body, &map);
    encode_response(&header, body, api, version)
}
