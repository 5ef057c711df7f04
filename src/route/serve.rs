//! Serving: the bootstrap listener, the per-broker listeners opened as brokers are
//! learned, one task per client connection, and the drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::hooks::Hooks;
use super::nodes::OpenListener;
use super::proxy::{Proxy, Target};
use crate::edge::listener::{accept_loop, client_stream};

/// Serves the bootstrap listener and opens node listeners as they are learned, until
/// shutdown; then waits up to the grace period for connections to drain.
pub async fn run<H: Hooks>(
    proxy: Arc<Proxy<H>>,
    bootstrap: TcpListener,
    mut open: mpsc::UnboundedReceiver<OpenListener>,
) {
    proxy
        .tasks
        .spawn(accept(proxy.clone(), bootstrap, Target::Bootstrap));
    let this = proxy.clone();
    let opener = async move {
        while let Some(req) = open.recv().await {
            let addr = format!("{}:{}", this.config.bind_host(), req.port);
            match TcpListener::bind(&addr).await {
                Ok(l) => {
                    tracing::info!(node_id = req.node_id, listen = %addr, "broker node listener open");
                    this.tasks
                        .spawn(accept(this.clone(), l, Target::Node(req.node_id)));
                    let _ = req.done.send(Ok(()));
                }
                Err(e) => {
                    this.metrics.error("listener_bind");
                    let _ = req.done.send(Err(format!("bind {addr}: {e}")));
                }
            }
        }
    };
    tokio::select! {
        _ = opener => {}
        _ = proxy.shutdown.cancelled() => {}
    }
    proxy.tasks.close();
    let grace = Duration::from_millis(proxy.config.proxy.shutdown_grace_ms);
    if tokio::time::timeout(grace, proxy.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = proxy.config.proxy.shutdown_grace_ms,
            "connections still open after the shutdown grace period; closing them"
        );
    }
}

async fn accept<H: Hooks>(proxy: Arc<Proxy<H>>, listener: TcpListener, target: Target) {
    let shutdown = proxy.shutdown.clone();
    accept_loop(
        listener,
        &shutdown,
        |socket, peer| {
            // One slot per connection served (`proxy.max_connections`).
            let Ok(slot) = proxy.connection_slots.clone().try_acquire_owned() else {
                proxy.refuse(socket, peer);
                return;
            };
            let this = proxy.clone();
            let id = proxy.next_conn_id();
            let span = tracing::info_span!("conn", id, client = %peer, node = node_of(target));
            proxy.tasks.spawn(
                async move {
                    serve(this, socket, peer, target, id).await;
                    drop(slot);
                }
                .instrument(span),
            );
        },
        |e| {
            proxy.metrics.error("accept");
            tracing::warn!(error = %e, "accept failed");
        },
    )
    .await
}

async fn serve<H: Hooks>(
    proxy: Arc<Proxy<H>>,
    socket: TcpStream,
    peer: SocketAddr,
    target: Target,
    id: u64,
) {
    proxy.metrics.connections_total.inc();
    proxy.metrics.connections_open.inc();
    match client_stream(socket, proxy.downstream_tls.as_ref()).await {
        Ok(client) => super::connection::run(proxy.clone(), client, peer, target, id).await,
        Err(e) => {
            proxy.metrics.error("client_tls");
            tracing::warn!(error = %e, "client TLS handshake failed");
        }
    }
    proxy.metrics.connections_open.dec();
}

fn node_of(target: Target) -> Option<i32> {
    match target {
        Target::Bootstrap => None,
        Target::Node(id) => Some(id),
    }
}
