//! The admin HTTP server: `/live`, `/ready`, `/metrics`, and the quarantine API.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::route::hooks::Hooks;
use crate::route::proxy::Proxy;

/// Builds the router.
pub fn router<H: Hooks>(proxy: Arc<Proxy<H>>) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready::<H>))
        .route("/metrics", get(metrics::<H>))
        .with_state(proxy)
}

/// Ready once the cluster answered Metadata and, when watching, the quarantine state topic
/// has been read: until then watched fetches are held, so the pod must not claim to serve.
async fn ready<H: Hooks>(State(proxy): State<Arc<Proxy<H>>>) -> impl IntoResponse {
    let (status, text) = readiness_of(&proxy);
    proxy.metrics.ready.set(i64::from(status == StatusCode::OK));
    (status, text)
}

/// The readiness answer: every reason to refuse traffic, in the order an operator fixes
/// them. A broker-node listener that failed to bind makes the pod unready: the
/// partitions that broker leads cannot be reached through it.
pub fn readiness_of<H: Hooks>(proxy: &Proxy<H>) -> (StatusCode, String) {
    let unavailable = |text: String| (StatusCode::SERVICE_UNAVAILABLE, text);
    if !proxy.is_ready() {
        return unavailable("waiting for the upstream cluster to answer Metadata\n".into());
    }
    let unbound = proxy.nodes.unbound();
    if !unbound.is_empty() {
        let ids: Vec<String> = unbound.iter().map(i32::to_string).collect();
        return unavailable(format!(
            "cannot listen for broker node(s) {}: the partitions they lead are unreachable through this proxy (see the log; the bind is retried)\n",
            ids.join(", ")
        ));
    }
    if let Some(why) = proxy.hooks.not_ready() {
        return unavailable(format!("{why}\n"));
    }
    (StatusCode::OK, "ready\n".into())
}

async fn metrics<H: Hooks>(State(proxy): State<Arc<Proxy<H>>>) -> impl IntoResponse {
    let ready = readiness_of(&proxy).0 == StatusCode::OK;
    proxy.metrics.ready.set(i64::from(ready));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        proxy.metrics.render(),
    )
}

/// Serves the admin API until shutdown.
pub async fn serve<H: Hooks>(listener: TcpListener, router: Router, proxy: Arc<Proxy<H>>) {
    let shutdown = proxy.shutdown.clone();
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "admin server failed");
    }
}

/// Whether the admin API listens on an address other hosts can reach while no token
/// protects its write routes (`POST /quarantine`, `DELETE /quarantine/...`, re-arm).
pub fn exposed_without_token(addr: std::net::SocketAddr, token: Option<&str>) -> bool {
    !addr.ip().is_loopback() && token.is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_beyond_loopback_without_token() {
        let any: std::net::SocketAddr = "0.0.0.0:9644".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:9644".parse().unwrap();
        let local6: std::net::SocketAddr = "[::1]:9644".parse().unwrap();
        assert!(exposed_without_token(any, None));
        assert!(exposed_without_token(any, Some("")));
        assert!(!exposed_without_token(any, Some("s3cret")));
        assert!(!exposed_without_token(local, None));
        assert!(!exposed_without_token(local6, None));
    }
}
