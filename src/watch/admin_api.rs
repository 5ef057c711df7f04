//! The admin API's quarantine routes: list quarantined records, quarantine one by hand,
//! release one; list the deploy guards and re-arm one (`/quarantine/guards`). Write routes (and, when a token is configured, every route) need
//! `Authorization: Bearer <admin.token>`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::ConsumerWatch;

/// State of the quarantine routes.
#[derive(Clone)]
pub struct QuarantineApi {
    watch: Arc<ConsumerWatch>,
    token: Option<String>,
}

/// Body of `POST /quarantine`.
#[derive(Debug, Deserialize)]
pub struct ManualQuarantine {
    /// Consumer group to hide the record from.
    pub group: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Why, in the operator's words (goes into the DLQ headers).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The routes, to merge into the admin router.
pub fn routes(watch: Arc<ConsumerWatch>, token: Option<String>) -> Router {
    let api = QuarantineApi { watch, token };
    Router::new()
        .route("/quarantine", get(list).post(quarantine))
        .route("/quarantine/searches", get(searches))
        .route(
            "/quarantine/{group}/{topic}/{partition}/{offset}",
            delete(release),
        )
        .route("/quarantine/guards", get(guards))
        .route("/quarantine/guards/{group}/rearm", post(rearm))
        // The token is checked before anything reads the request body, so an
        // unauthenticated request gets 401 whatever its body or content type.
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            require_token,
        ))
        .with_state(api)
}

async fn require_token(
    State(api): State<QuarantineApi>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !authorized(&api, request.headers()) {
        return unauthorized();
    }
    next.run(request).await
}

/// Whether the request carries the configured token (`Authorization: Bearer ...`), compared
/// in constant time; always true when no token is configured.
fn authorized(api: &QuarantineApi, headers: &HeaderMap) -> bool {
    let Some(token) = &api.token else {
        return true;
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    given.is_some_and(|g| same_bytes(g, token.as_bytes()))
}

/// Equality that takes the same time wherever the first difference is.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "admin token required\n").into_response()
}

async fn list(State(api): State<QuarantineApi>, headers: HeaderMap) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    Json(api.watch.store.list()).into_response()
}

async fn searches(State(api): State<QuarantineApi>, headers: HeaderMap) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    Json(super::searches::views(&api.watch)).into_response()
}

async fn quarantine(
    State(api): State<QuarantineApi>,
    headers: HeaderMap,
    Json(body): Json<ManualQuarantine>,
) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    use super::source_check::{check_record, check_shape};
    let checked = match check_shape(&body.group, &body.topic, body.partition, body.offset) {
        Ok(()) => {
            check_record(
                api.watch.diverter.cluster(),
                &body.topic,
                body.partition,
                body.offset,
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = checked {
        return (e.status(), format!("{e}\n")).into_response();
    }
    match api.watch.quarantine_by_hand(&body).await {
        Ok(q) => (StatusCode::CREATED, Json(q)).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

async fn release(
    State(api): State<QuarantineApi>,
    headers: HeaderMap,
    Path((group, topic, partition, offset)): Path<(String, String, i32, i64)>,
) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    if let Err(e) = super::source_check::check_shape(&group, &topic, partition, offset) {
        return (e.status(), format!("{e}\n")).into_response();
    }
    match api
        .watch
        .store
        .release(&group, &topic, partition, offset)
        .await
    {
        Ok(was) => {
            tracing::warn!(
                group,
                topic,
                partition,
                offset,
                was_hidden = was,
                "quarantine released by hand"
            );
            Json(serde_json::json!({ "released": was })).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

async fn guards(State(api): State<QuarantineApi>, headers: HeaderMap) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    Json(api.watch.guard_status()).into_response()
}

async fn rearm(
    State(api): State<QuarantineApi>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    let was = api.watch.guard_rearm(&group);
    if !was {
        tracing::info!(
            group,
            "deploy guard re-arm asked for, but it was not tripped"
        );
    }
    Json(serde_json::json!({ "rearmed": was })).into_response()
}
