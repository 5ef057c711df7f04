//! The admin HTTP server: `/live`, `/ready`, `/metrics`, and the quarantine API.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::proxy::Proxy;

/// Builds the router.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(proxy)
}

/// Ready once the cluster answered Metadata and, when watching, the quarantine state topic
/// has been read: until then watched fetches are held, so the pod must not claim to serve.
async fn ready(State(proxy): State<Arc<Proxy>>) -> impl IntoResponse {
    if !proxy.is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the upstream cluster to answer Metadata\n",
        )
    } else if proxy.watch.as_ref().is_some_and(|w| !w.store.is_loaded()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the quarantine state topic (watched fetches are held until it is read)\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn metrics(State(proxy): State<Arc<Proxy>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        proxy.metrics.render(),
    )
}

/// Serves the admin API until shutdown.
pub async fn serve(listener: TcpListener, router: Router, proxy: Arc<Proxy>) {
    let shutdown = proxy.shutdown.clone();
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "admin server failed");
    }
}
