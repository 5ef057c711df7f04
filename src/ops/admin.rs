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
    if !proxy.is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the upstream cluster to answer Metadata\n".to_string(),
        )
    } else if let Some(why) = proxy.hooks.not_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
    } else {
        (StatusCode::OK, "ready\n".to_string())
    }
}

async fn metrics<H: Hooks>(State(proxy): State<Arc<Proxy<H>>>) -> impl IntoResponse {
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
