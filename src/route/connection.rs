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

use crate::edge::frame::{FrameError, FrameReader, PREFIX};
use crate::edge::stream::{ReadHalf, Stream, WriteHalf};
use crate::ops::metrics::{api_name, ApiLabel, DirectionLabel};
use crate::protocol::fetch_scan::{FetchScanner, ScanError, ScannedPartition, Step};
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
        // The size first: a large frame waits for room in the budget before it is read.
        let size = tokio::select! {
            s = client.peek(0) => s,
            _ = proxy.shutdown.cancelled() => return End::Drain,
        };
        let share = match size {
            Ok(Some(size)) => take_share(proxy, PREFIX + size).await,
            Ok(None) => return End::Closed,
            Err(e) => {
                client_frame_error(proxy, &e);
                return End::Failed;
            }
        };
        let mut frame = match client.read_frame().await {
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
        drop(share);
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
        // The size and correlation id first: whether the response is streamed or held
        // whole is decided before its body is read.
        let size = match upstream.peek(RESPONSE_CORRELATION.end - PREFIX).await {
            Ok(Some(size)) => size,
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
        let Ok(correlation) = wire::response_correlation(upstream.buffer()) else {
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
        wire::set_correlation(
            upstream.buffer(),
            RESPONSE_CORRELATION,
            entry.client_correlation,
        );
        let api = ApiLabel {
            api: api_name(entry.api_key),
        };
        let written = match stream_plan(proxy, conn, &entry, PREFIX + size) {
            Some(plan) => {
                match stream(&mut upstream, &mut client, PREFIX + size, plan).await {
                    Ok(Streamed::Raw) => {}
                    Ok(Streamed::Fetch(partitions)) => {
                        metrics.fetch_streamed.inc();
                        if let Handling::Fetch(Some(x)) = &mut entry.handling {
                            proxy.hooks.on_fetch_streamed(conn, x, &partitions);
                        }
                    }
                    Err(StreamError::Upstream(e)) => {
                        broker_ended.store(true, Ordering::Relaxed);
                        metrics.error("upstream_read");
                        tracing::warn!(error = %e, api = api.api, "broker connection failed mid-response; closing");
                        return End::Failed;
                    }
                    Err(StreamError::Scan(e)) => {
                        metrics.error("response_rewrite");
                        tracing::warn!(error = %e, api = api.api, "cannot read broker response; closing");
                        return End::Failed;
                    }
                    Err(StreamError::Client(e)) => {
                        tracing::debug!(error = %e, "client went away before its response");
                        return End::Closed;
                    }
                }
                PREFIX + size
            }
            None => {
                // Held whole: it may be changed. Wait for room in the budget first.
                if matches!(entry.handling, Handling::Fetch(_)) {
                    metrics.fetch_held.inc();
                }
                let _share = take_share(proxy, PREFIX + size).await;
                let frame = match upstream.read_frame().await {
                    Ok(Some(f)) => f,
                    Ok(None) | Err(_) => {
                        broker_ended.store(true, Ordering::Relaxed);
                        metrics.error("upstream_read");
                        tracing::warn!("broker connection failed mid-response; closing");
                        return End::Failed;
                    }
                };
                let out: BytesMut = match exchange::respond(proxy, conn, &mut entry, frame).await {
                    Ok(f) => f,
                    Err(e) => {
                        metrics.error("response_rewrite");
                        tracing::warn!(error = %e, api = api.api, "cannot rewrite broker response; closing");
                        return End::Failed;
                    }
                };
                if let Err(e) = client.write_all(&out).await {
                    tracing::debug!(error = %e, "client went away before its response");
                    return End::Closed;
                }
                out.len()
            }
        };
        to_client.inc_by(written as u64);
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

/// Room in the buffer budget for a frame held whole (see [`crate::route::budget`]),
/// counted in the metrics while held.
async fn take_share<H: Hooks>(proxy: &Proxy<H>, bytes: usize) -> Option<Held<'_>> {
    if bytes > crate::route::budget::SMALL && proxy.budget.would_wait(bytes) {
        proxy.metrics.budget_waits.inc();
    }
    let share = proxy.budget.take_large(bytes).await?;
    proxy
        .metrics
        .buffered_bytes
        .set(proxy.budget.in_use() as i64);
    Some(Held {
        metrics: &proxy.metrics,
        budget: &proxy.budget,
        share: Some(share),
    })
}

/// A share of the budget; the gauge follows when it is given back.
struct Held<'a> {
    metrics: &'a crate::ops::metrics::Metrics,
    budget: &'a crate::route::budget::Budget,
    share: Option<crate::route::budget::Share>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.share.take());
        self.metrics.buffered_bytes.set(self.budget.in_use() as i64);
    }
}

/// How a response that is not held whole goes through.
enum Plan {
    /// As bytes.
    Raw,
    /// A Fetch response, read on the way; `flexible_header` when its header carries
    /// tagged fields after the correlation id.
    Fetch {
        flexible_header: bool,
        scanner: FetchScanner,
    },
}

/// What streaming a response learned.
enum Streamed {
    Raw,
    Fetch(Vec<ScannedPartition>),
}

/// Why streaming a response stopped half-way (the connection cannot go on).
enum StreamError {
    Upstream(FrameError),
    Client(std::io::Error),
    Scan(ScanError),
}

/// Whether a response is streamed: everything forwarded unchanged is, and so is a Fetch
/// response over 64 KiB the hooks cannot want to change (and whose version the scanner
/// reads).
fn stream_plan<H: Hooks>(
    proxy: &Proxy<H>,
    conn: &ConnInfo,
    entry: &InFlight<H::Exchange>,
    total: usize,
) -> Option<Plan> {
    match &entry.handling {
        Handling::Forward | Handling::ThenOpaque => Some(Plan::Raw),
        // A small response costs little held whole, and held it keeps every rewrite,
        // KIP-951 leader endpoints included (they come with errors, in small answers).
        Handling::Fetch(_) if total <= crate::route::budget::SMALL => None,
        Handling::Fetch(x) => {
            let scanner = FetchScanner::new(entry.api_version)?;
            let may = x
                .as_ref()
                .is_none_or(|x| proxy.hooks.fetch_may_stream(conn, x));
            may.then_some(Plan::Fetch {
                flexible_header: entry.api_version >= 12,
                scanner,
            })
        }
        _ => None,
    }
}

/// Streams one response of `total` bytes (prefix included; its correlation id already the
/// client's) from the broker to the client, through a small buffer.
async fn stream(
    upstream: &mut FrameReader<ReadHalf>,
    client: &mut WriteHalf,
    total: usize,
    plan: Plan,
) -> Result<Streamed, StreamError> {
    /// Forwarded in pieces of at least this much, unless the response ends or the broker
    /// has sent nothing more yet.
    const PIECE: usize = 64 * 1024;
    let mut out = Out {
        left: total,
        ready: 0,
    };
    let (flexible_header, mut scanner) = match plan {
        Plan::Raw => {
            while out.left > 0 {
                let n = upstream.buffer().len().min(out.left);
                out.ready = n;
                out.flush(upstream, client).await?;
                if out.left > 0 && !fill(upstream).await? {
                    return Err(StreamError::Upstream(truncated(total, out.left)));
                }
            }
            return Ok(Streamed::Raw);
        }
        Plan::Fetch {
            flexible_header,
            scanner,
        } => (flexible_header, scanner),
    };
    // The response header: the correlation id, then (flexible versions) tagged fields.
    out.ready = RESPONSE_CORRELATION.end;
    if flexible_header {
        loop {
            let buf = &upstream.buffer()[out.ready..];
            match wire::tagged_fields_len(buf) {
                Some(n) => {
                    out.ready += n;
                    break;
                }
                None if buf.len() >= 64 * 1024 => {
                    return Err(StreamError::Scan(ScanError(
                        "response header tags too long",
                    )))
                }
                None => {
                    out.flush(upstream, client).await?;
                    if !fill(upstream).await? {
                        return Err(StreamError::Upstream(truncated(total, out.left)));
                    }
                }
            }
        }
    }
    if out.ready > total {
        return Err(StreamError::Scan(ScanError(
            "response shorter than its header",
        )));
    }
    let mut skip = 0usize;
    loop {
        if skip > 0 {
            let n = skip.min(upstream.buffer().len() - out.ready);
            out.ready += n;
            skip -= n;
            if skip > 0 {
                out.flush(upstream, client).await?;
                if !fill(upstream).await? {
                    return Err(StreamError::Upstream(truncated(total, out.left)));
                }
            }
            continue;
        }
        if out.ready >= PIECE {
            out.flush(upstream, client).await?;
        }
        let body_left = out.left - out.ready;
        let avail = (upstream.buffer().len() - out.ready).min(body_left);
        let step = scanner
            .step(&upstream.buffer()[out.ready..out.ready + avail])
            .map_err(StreamError::Scan)?;
        match step {
            Step::Pass(n) => out.ready += n,
            Step::Replace(bytes) => {
                let at = out.ready;
                upstream.buffer()[at..at + bytes.len()].copy_from_slice(&bytes);
                out.ready += bytes.len();
            }
            Step::Skip(n) => {
                if n > body_left {
                    return Err(StreamError::Scan(ScanError(
                        "records run past the response",
                    )));
                }
                skip = n;
            }
            Step::Need(n) => {
                if n > body_left {
                    return Err(StreamError::Scan(ScanError("response ends mid-field")));
                }
                out.flush(upstream, client).await?;
                while upstream.buffer().len() < n {
                    if !fill(upstream).await? {
                        return Err(StreamError::Upstream(truncated(total, out.left)));
                    }
                }
            }
            Step::Done => {
                if body_left != 0 {
                    return Err(StreamError::Scan(ScanError("bytes after the response")));
                }
                out.flush(upstream, client).await?;
                return Ok(Streamed::Fetch(scanner.into_partitions()));
            }
        }
    }
}

/// The part of a streamed response not yet written: `ready` bytes at the front of the
/// reader's buffer may go now, `left` bytes of the response are still to go in all.
struct Out {
    left: usize,
    ready: usize,
}

impl Out {
    async fn flush(
        &mut self,
        upstream: &mut FrameReader<ReadHalf>,
        client: &mut WriteHalf,
    ) -> Result<(), StreamError> {
        if self.ready == 0 {
            return Ok(());
        }
        let piece = upstream.buffer().split_to(self.ready);
        self.left -= self.ready;
        self.ready = 0;
        client.write_all(&piece).await.map_err(StreamError::Client)
    }
}

async fn fill(upstream: &mut FrameReader<ReadHalf>) -> Result<bool, StreamError> {
    upstream.fill().await.map_err(StreamError::Upstream)
}

fn truncated(total: usize, left: usize) -> FrameError {
    FrameError::Truncated {
        have: total - left,
        want: total,
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
