//! One client connection: requests flow client → broker in one task, responses flow
//! broker → client in another, and a queue of [`InFlight`] entries pairs them up.
//!
//! Every request gets a correlation id chosen by the proxy on the upstream side (the
//! client's own id is restored on the response), so requests the proxy adds itself can
//! never collide with a client's. Responses come back in request order on a Kafka
//! connection; a response whose id does not match the oldest request in flight is a broker
//! protocol error and closes the connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::edge::frame::{FrameError, FrameReader};
use crate::edge::stream::{ReadHalf, Stream, WriteHalf};
use crate::ops::metrics::{api_name, ApiLabel, DirectionLabel};
use crate::protocol::wire::{self, REQUEST_CORRELATION, RESPONSE_CORRELATION};
use crate::route::exchange::{self, Handling, InFlight, Route};
use crate::route::hooks::{ClosedBy, ConnInfo, Hooks};
use crate::route::proxy::{Proxy, Target};

/// How one direction of a connection ended.
enum End {
    /// The peer closed its socket between frames.
    Closed,
    /// Shutdown: stop taking requests, let the in-flight ones finish.
    Drain,
    /// The connection switched to raw byte relaying (SASL v0) and that relay ended.
    Opaque,
    /// A protocol or I/O error; already logged and counted.
    Failed,
}

/// Serves one accepted client connection until either side closes.
pub async fn run<H: Hooks>(
    proxy: Arc<Proxy<H>>,
    client: Stream,
    peer: SocketAddr,
    target: Target,
    id: u64,
) {
    let upstream = match proxy.connect_upstream(target).await {
        Ok(s) => s,
        Err(e) => {
            proxy.metrics.error("upstream_connect");
            tracing::warn!(error = %e, "cannot reach the broker; closing the client connection");
            return;
        }
    };
    tracing::debug!("connected");
    let conn = ConnInfo {
        id,
        peer,
        node: match target {
            Target::Bootstrap => None,
            Target::Node(n) => Some(n),
        },
    };
    let (client_r, client_w) = client.split();
    let (upstream_r, upstream_w) = upstream.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let max = proxy.config.proxy.max_frame_bytes;
    // Set when the broker side ended first (closed, failed, or refused a write).
    let broker_ended = AtomicBool::new(false);
    let requests = requests(
        &proxy,
        &conn,
        FrameReader::new(client_r, max),
        upstream_w,
        tx,
        &broker_ended,
    );
    let responses = responses(
        &proxy,
        &conn,
        FrameReader::new(upstream_r, max),
        client_w,
        rx,
        &broker_ended,
    );
    tokio::pin!(requests, responses);
    let clean = tokio::select! {
        end = &mut requests => match end {
            End::Drain => {
                // Let the requests already sent get their answers.
                matches!(responses.await, End::Closed | End::Drain)
            }
            End::Closed | End::Opaque => true,
            End::Failed => false,
        },
        end = &mut responses => !matches!(end, End::Failed),
    };
    let by = if proxy.shutdown.is_cancelled() {
        ClosedBy::Shutdown
    } else if broker_ended.load(Ordering::Relaxed) {
        ClosedBy::Broker
    } else {
        ClosedBy::Client
    };
    proxy.hooks.on_close(&conn, clean, by);
    tracing::debug!(clean, "connection closed");
}

async fn requests<H: Hooks>(
    proxy: &Proxy<H>,
    conn: &ConnInfo,
    mut client: FrameReader<ReadHalf>,
    mut upstream: WriteHalf,
    inflight: mpsc::UnboundedSender<InFlight<H::Exchange>>,
    broker_ended: &AtomicBool,
) -> End {
    let metrics = &proxy.metrics;
    let to_broker = metrics
        .bytes
        .get_or_create(&DirectionLabel {
            direction: "client_to_broker",
        })
        .clone();
    let mut next_correlation: i32 = 0;
    loop {
        let frame = tokio::select! {
            f = client.read_frame() => f,
            _ = proxy.shutdown.cancelled() => return End::Drain,
        };
        let mut frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => return End::Closed,
            Err(e) => {
                client_frame_error(proxy, &e);
                return End::Failed;
            }
        };
        let received = Instant::now();
        let head = match wire::request_head(&frame) {
            Ok(h) => h,
            Err(e) => {
                metrics.error("bad_request_header");
                tracing::warn!(error = %e, "malformed request header from client; closing");
                return End::Failed;
            }
        };
        if head.api().is_none() {
            metrics.error("unknown_api_key");
            tracing::warn!(
                api_key = head.api_key,
                "request with an API key this proxy does not know; closing"
            );
            return End::Failed;
        }
        to_broker.inc_by(frame.len() as u64);
        metrics
            .requests
            .get_or_create(&ApiLabel {
                api: api_name(head.api_key),
            })
            .inc();
        let upstream_correlation = next_correlation;
        next_correlation = next_correlation.wrapping_add(1) & i32::MAX;
        wire::set_correlation(&mut frame, REQUEST_CORRELATION, upstream_correlation);
        let route = Route::of(&head);
        let request = exchange::consumer_request(proxy, route, &head, &frame);
        if let Some(r) = &request {
            proxy.hooks.before_forward(conn, &head, r).await;
        }
        if exchange::expects_response(&head, &frame) {
            let handling = exchange::handling(proxy, conn, route, &head, request);
            let entry = InFlight {
                client_correlation: head.correlation_id,
                upstream_correlation,
                api_key: head.api_key,
                api_version: head.api_version,
                received,
                sent: Instant::now(),
                handling,
            };
            if inflight.send(entry).is_err() {
                return End::Closed; // the response side is gone
            }
        }
        if let Err(e) = upstream.write_all(&frame).await {
            broker_ended.store(true, Ordering::Relaxed);
            metrics.error("upstream_write");
            tracing::warn!(error = %e, "write to broker failed");
            return End::Failed;
        }
        if route == Route::SaslV0 {
            let (rest, leftover) = client.into_parts();
            return relay_raw(rest, leftover, upstream).await;
        }
    }
}

async fn responses<H: Hooks>(
    proxy: &Proxy<H>,
    conn: &ConnInfo,
    mut upstream: FrameReader<ReadHalf>,
    mut client: WriteHalf,
    mut inflight: mpsc::UnboundedReceiver<InFlight<H::Exchange>>,
    broker_ended: &AtomicBool,
) -> End {
    let metrics = &proxy.metrics;
    let to_client = metrics
        .bytes
        .get_or_create(&DirectionLabel {
            direction: "broker_to_client",
        })
        .clone();
    loop {
        let frame = match upstream.read_frame().await {
            Ok(Some(f)) => f,
            Ok(None) => {
                // With nothing in flight and the request side gone, this is a drained close.
                if inflight.is_closed() && inflight.is_empty() {
                    return End::Drain;
                }
                broker_ended.store(true, Ordering::Relaxed);
                if !inflight.is_empty() {
                    metrics.error("upstream_closed");
                    tracing::warn!("broker closed the connection with requests in flight");
                } else {
                    tracing::debug!("broker closed the connection");
                }
                return End::Closed;
            }
            Err(e) => {
                broker_ended.store(true, Ordering::Relaxed);
                metrics.error(match e {
                    FrameError::TooLarge { .. } | FrameError::Negative(_) => "upstream_bad_frame",
                    _ => "upstream_read",
                });
                tracing::warn!(error = %e, "bad frame from broker; closing");
                return End::Failed;
            }
        };
        let got = Instant::now();
        let Ok(correlation) = wire::response_correlation(&frame) else {
            metrics.error("upstream_bad_frame");
            tracing::warn!("response from broker too short for a correlation id; closing");
            return End::Failed;
        };
        let mut entry = match inflight.try_recv() {
            Ok(e) => e,
            Err(_) => {
                metrics.error("unexpected_response");
                tracing::warn!(
                    correlation,
                    "broker sent a response nobody asked for; closing"
                );
                return End::Failed;
            }
        };
        if entry.upstream_correlation != correlation {
            metrics.error("correlation_mismatch");
            tracing::warn!(
                expected = entry.upstream_correlation,
                got = correlation,
                "broker answered out of order; closing"
            );
            return End::Failed;
        }
        let mut frame = frame;
        wire::set_correlation(&mut frame, RESPONSE_CORRELATION, entry.client_correlation);
        let api = ApiLabel {
            api: api_name(entry.api_key),
        };
        let out: BytesMut = match exchange::respond(proxy, conn, &mut entry, frame).await {
            Ok(f) => f,
            Err(e) => {
                metrics.error("response_rewrite");
                tracing::warn!(error = %e, api = api.api, "cannot rewrite broker response; closing");
                return End::Failed;
            }
        };
        to_client.inc_by(out.len() as u64);
        if let Err(e) = client.write_all(&out).await {
            tracing::debug!(error = %e, "client went away before its response");
            return End::Closed;
        }
        let done = Instant::now();
        metrics
            .upstream_seconds
            .get_or_create(&api)
            .observe(got.duration_since(entry.sent).as_secs_f64());
        metrics
            .request_seconds
            .get_or_create(&api)
            .observe(done.duration_since(entry.received).as_secs_f64());
        if matches!(entry.handling, Handling::ThenOpaque) {
            let (rest, leftover) = upstream.into_parts();
            return relay_raw(rest, leftover, client).await;
        }
    }
}

/// Copies bytes without framing until either end closes (SASL v0 token exchange and
/// everything after it).
async fn relay_raw<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut from: R,
    leftover: BytesMut,
    mut to: W,
) -> End {
    if !leftover.is_empty() && to.write_all(&leftover).await.is_err() {
        return End::Closed;
    }
    let _ = tokio::io::copy(&mut from, &mut to).await;
    End::Opaque
}

fn client_frame_error<H: Hooks>(proxy: &Proxy<H>, e: &FrameError) {
    let kind = match e {
        FrameError::Negative(_) => "frame_negative",
        FrameError::TooLarge { .. } => "frame_too_large",
        FrameError::Truncated { .. } => "frame_truncated",
        FrameError::Io(_) => "client_read",
    };
    proxy.metrics.error(kind);
    match e {
        FrameError::Io(_) => tracing::debug!(error = %e, "client connection failed"),
        _ => tracing::warn!(error = %e, "bad frame from client; closing its connection"),
    }
}
