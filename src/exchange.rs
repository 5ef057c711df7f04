//! One request/response exchange: what the proxy notes about a request on its way to the
//! broker, and what it does to the response on its way back.
//!
//! Most exchanges are forwarded as the original bytes. Only responses that name brokers
//! (address rewriting), ApiVersions (version capping), and the consumer traffic the
//! watcher looks at are decoded.

use std::time::Instant;

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::nodes::{brokers_named, rewrite_brokers, NamesBrokers};
use crate::proxy::Proxy;
use crate::watch::{ConnInfo, WatchRequest};
use crate::wire::{self, decode_response, encode_response, RequestHead, WireError};

/// What to do with the response to a request.
pub enum Handling {
    /// Forward the broker's bytes untouched.
    Forward,
    /// Cap the advertised API versions.
    ApiVersions,
    /// Rewrite the broker addresses in a Metadata/FindCoordinator/DescribeCluster/Produce
    /// response.
    Addresses(ApiKey),
    /// A Fetch response: broker addresses (v16+) and, for watched topics, the consumer
    /// watcher's view.
    Fetch(Option<Box<WatchRequest>>),
    /// Group traffic the watcher follows (commits, joins, assignments).
    Watch(Box<WatchRequest>),
    /// SASL v0: after this response the connection carries raw SASL tokens, so the proxy
    /// relays bytes without framing from here on.
    ThenOpaque,
}

/// A request that is waiting for its response.
pub struct InFlight {
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
    pub handling: Handling,
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

/// Decides, from the request, how its response will be handled.
pub fn classify(proxy: &Proxy, conn: &ConnInfo, head: &RequestHead, frame: &[u8]) -> Handling {
    let Some(api) = head.api() else {
        return Handling::Forward;
    };
    match api {
        ApiKey::ApiVersions => Handling::ApiVersions,
        ApiKey::Metadata | ApiKey::FindCoordinator | ApiKey::DescribeCluster => {
            Handling::Addresses(api)
        }
        ApiKey::Produce if head.api_version >= 10 => Handling::Addresses(api),
        ApiKey::SaslHandshake if head.api_version == 0 => Handling::ThenOpaque,
        ApiKey::Fetch => {
            let watch = proxy
                .watch
                .as_ref()
                .and_then(|w| w.on_request(conn, head, frame));
            if watch.is_none() && head.api_version < 16 {
                Handling::Forward
            } else {
                Handling::Fetch(watch.map(Box::new))
            }
        }
        _ => match proxy
            .watch
            .as_ref()
            .and_then(|w| w.on_request(conn, head, frame))
        {
            Some(w) => Handling::Watch(Box::new(w)),
            None => Handling::Forward,
        },
    }
}

/// Applies the handling to a response frame whose correlation id is already the client's.
pub async fn respond(
    proxy: &Proxy,
    conn: &ConnInfo,
    inflight: &mut InFlight,
    frame: BytesMut,
) -> Result<BytesMut, WireError> {
    let version = inflight.api_version;
    match &mut inflight.handling {
        Handling::Forward | Handling::ThenOpaque => Ok(frame),
        Handling::ApiVersions => crate::api_versions::rewrite(&frame, version),
        Handling::Addresses(ApiKey::Metadata) => {
            let (h, mut body) =
                decode_response::<MetadataResponse>(&frame, ApiKey::Metadata, version)?;
            if let Some(w) = &proxy.watch {
                w.on_metadata(&body);
            }
            proxy.mark_ready();
            addresses(proxy, h, &mut body, ApiKey::Metadata, version).await
        }
        Handling::Addresses(ApiKey::FindCoordinator) => {
            rewrite::<FindCoordinatorResponse>(proxy, &frame, ApiKey::FindCoordinator, version)
                .await
        }
        Handling::Addresses(ApiKey::DescribeCluster) => {
            rewrite::<DescribeClusterResponse>(proxy, &frame, ApiKey::DescribeCluster, version)
                .await
        }
        Handling::Addresses(ApiKey::Produce) => {
            let (h, mut body) =
                decode_response::<ProduceResponse>(&frame, ApiKey::Produce, version)?;
            if body.node_endpoints.is_empty() {
                return Ok(frame);
            }
            addresses(proxy, h, &mut body, ApiKey::Produce, version).await
        }
        Handling::Addresses(_) => Ok(frame),
        Handling::Fetch(watch) => {
            let frame = frame.freeze();
            let (h, mut body) = {
                let mut buf = frame.slice(crate::frame::PREFIX..);
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
            if let (Some(w), Some(req)) = (&proxy.watch, watch.as_deref_mut()) {
                changed |= w.on_fetch_response(conn, req, &mut body, version).await;
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
        Handling::Watch(req) => {
            if let Some(w) = &proxy.watch {
                w.on_response(conn, req, &frame, version);
            }
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

async fn rewrite<T: Decodable + Encodable + NamesBrokers>(
    proxy: &Proxy,
    frame: &[u8],
    api: ApiKey,
    version: i16,
) -> Result<BytesMut, WireError> {
    let (h, mut body) = decode_response::<T>(frame, api, version)?;
    addresses(proxy, h, &mut body, api, version).await
}

async fn addresses<T: Encodable + NamesBrokers>(
    proxy: &Proxy,
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
