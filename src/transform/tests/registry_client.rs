//! The schema-registry check against a real HTTP server on 127.0.0.1:0 that serves JSON
//! Schema, Avro and Protobuf schemas, counts its hits and can fail on demand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use super::support::{compile, record, GROUP, PARTITION, TOPIC};
use crate::protocol::record::Record;
use crate::transform::{
    Outcome, Pipelines, RecordContext, Stage, DATA_EXCEPTION, SERIALIZATION_EXCEPTION,
};

const AVRO_SCHEMA: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;

#[derive(Default)]
struct FakeRegistry {
    hits: AtomicUsize,
    failing: AtomicBool,
    schemas: HashMap<u32, serde_json::Value>,
    authorization: Mutex<Option<String>>,
}

async fn schema_by_id(
    State(reg): State<Arc<FakeRegistry>>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> Response {
    reg.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        *reg.authorization.lock().unwrap() = Some(auth.to_string());
    }
    if reg.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance").into_response();
    }
    match reg.schemas.get(&id) {
        Some(body) => Json(body.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error_code": 40403, "message": "Schema not found"})),
        )
            .into_response(),
    }
}

async fn serve(reg: Arc<FakeRegistry>) -> SocketAddr {
    let app = Router::new()
        .route("/schemas/ids/{id}", get(schema_by_id))
        .with_state(reg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn registry_with_schemas() -> Arc<FakeRegistry> {
    let mut schemas = HashMap::new();
    let order = json!({"type": "object", "required": ["couponId"], "properties": {"couponId": {"type": "string"}}});
    schemas.insert(
        1,
        json!({"schema": order.to_string(), "schemaType": "JSON"}),
    );
    schemas.insert(2, json!({"schema": AVRO_SCHEMA}));
    schemas.insert(
        3,
        json!({"schema": "syntax = \"proto3\"; message M {}", "schemaType": "PROTOBUF"}),
    );
    schemas.insert(4, json!({"schema": "{not avro", "schemaType": "AVRO"}));
    Arc::new(FakeRegistry {
        schemas,
        ..Default::default()
    })
}

fn pipelines(url: &str, extra: &str) -> Pipelines {
    compile(&format!(
        "pipelines:\n- topics: [orders]\n  config:\n    errors.tolerance: all\n  checks:\n  - type: schema_registry\n    registry:\n      url: \"{url}\"\n{extra}"
    ))
}

fn wire(id: u32, payload: &[u8]) -> Record {
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(payload);
    let mut rec = record(None, None, &[]);
    rec.value = Some(Bytes::from(bytes));
    rec
}

fn avro_order(id: i64, name: &str) -> Vec<u8> {
    use apache_avro::types::Value;
    let schema = apache_avro::Schema::parse_str(AVRO_SCHEMA).unwrap();
    let value = Value::Record(vec![
        ("id".to_string(), Value::Long(id)),
        ("name".to_string(), Value::String(name.to_string())),
    ]);
    apache_avro::to_avro_datum(&schema, value).unwrap()
}

async fn run_batch(p: &Pipelines, records: &mut [Record]) -> Vec<Outcome> {
    let pipeline = p.for_record(TOPIC, Some(GROUP)).unwrap();
    assert!(pipeline.needs_prepare());
    pipeline.prepare(records).await;
    let ctx = RecordContext {
        topic: TOPIC,
        partition: PARTITION,
        group: Some(GROUP),
    };
    records
        .iter_mut()
        .map(|r| pipeline.apply(&ctx, r))
        .collect()
}

fn failure(outcome: &Outcome) -> (Stage, &'static str, String) {
    match outcome {
        Outcome::Failed(f) => (f.stage, f.exception_class, f.message.clone()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn decodes_json_schema_and_avro_payloads_and_caches_lookups() {
    let reg = registry_with_schemas();
    let addr = serve(reg.clone()).await;
    let p = pipelines(&format!("http://{addr}"), "");
    let mut avro_trailing = avro_order(1, "x");
    avro_trailing.push(0);
    let avro_good = avro_order(7, "ünïcode");
    let mut records = vec![
        wire(1, br#"{"couponId":"c1"}"#),
        wire(1, br#"{"amount":5}"#),
        wire(1, b"not json"),
        wire(2, &avro_good),
        wire(2, &avro_good[..avro_good.len() - 2]),
        wire(2, &avro_trailing),
        wire(3, b"\x08\x01"),
        wire(99, b"{}"),
        wire(4, b"{}"),
        record(None, Some(r#"{"couponId":"c1"}"#), &[]),
    ];
    let out = run_batch(&p, &mut records).await;
    assert_eq!(out[0], Outcome::unchanged());
    assert_eq!(
        failure(&out[1]),
        (
            Stage::ValueConverter,
            DATA_EXCEPTION,
            "schema 1: required property couponId is missing".to_string()
        )
    );
    assert!(failure(&out[2])
        .2
        .contains("after the schema id is not valid JSON"));
    assert_eq!(out[3], Outcome::unchanged());
    assert_eq!(
        failure(&out[4]),
        (
            Stage::ValueConverter,
            DATA_EXCEPTION,
            "the record value does not decode against Avro schema 2".to_string()
        )
    );
    assert_eq!(failure(&out[5]).1, DATA_EXCEPTION);
    assert_eq!(
        out[6],
        Outcome::unchanged(),
        "PROTOBUF: the id is checked, not the payload"
    );
    assert_eq!(
        failure(&out[7]),
        (
            Stage::ValueConverter,
            SERIALIZATION_EXCEPTION,
            "schema id 99 of the record value is unknown to the schema registry".to_string()
        )
    );
    match &out[8] {
        Outcome::Pass {
            changed: false,
            unverified: Some(why),
        } => {
            assert!(
                why.contains("schema id 4 cannot be used: invalid Avro schema"),
                "{why}"
            )
        }
        other => panic!("an unusable schema passes unverified: {other:?}"),
    }
    assert!(failure(&out[9]).2.contains("Unknown magic byte"));
    assert_eq!(
        reg.hits.load(Ordering::SeqCst),
        5,
        "ids 1, 2, 3, 4 and 99 once each"
    );

    // A second batch with the same ids asks nothing (404 is remembered too).
    let mut again = vec![
        wire(1, br#"{"couponId":"c2"}"#),
        wire(99, b"{}"),
        wire(2, &avro_good),
    ];
    let out = run_batch(&p, &mut again).await;
    assert_eq!(out[0], Outcome::unchanged());
    assert!(matches!(out[1], Outcome::Failed(_)));
    assert_eq!(reg.hits.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn an_unreachable_registry_lets_records_pass_unverified() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let p = pipelines(&format!("http://{addr}"), "");
    let mut records = vec![wire(1, br#"{"couponId":"c1"}"#)];
    let original = records[0].clone();
    let out = run_batch(&p, &mut records).await;
    match &out[0] {
        Outcome::Pass {
            changed: false,
            unverified: Some(why),
        } => {
            assert!(why.contains("schema id 1 could not be looked up"), "{why}");
            assert!(why.contains("cannot connect"), "{why}");
        }
        other => panic!("expected an unverified pass, got {other:?}"),
    }
    assert_eq!(records[0], original);
}

#[tokio::test]
async fn registry_errors_are_cached_briefly() {
    let reg = registry_with_schemas();
    reg.failing.store(true, Ordering::SeqCst);
    let addr = serve(reg.clone()).await;

    // Default error cache: a second batch does not ask again.
    let cached = pipelines(&format!("http://{addr}/"), "");
    for _ in 0..2 {
        let out = run_batch(&cached, &mut [wire(1, br#"{"couponId":"c"}"#)]).await;
        assert!(
            matches!(&out[0], Outcome::Pass { unverified: Some(why), .. } if why.contains("HTTP 500")),
            "{out:?}"
        );
    }
    assert_eq!(reg.hits.load(Ordering::SeqCst), 1);

    // No error cache: every batch asks, and once the registry is back the check runs.
    let retrying = pipelines(&format!("http://{addr}"), "      error_cache_ms: 0\n");
    run_batch(&retrying, &mut [wire(1, b"{}")]).await;
    assert_eq!(reg.hits.load(Ordering::SeqCst), 2);
    reg.failing.store(false, Ordering::SeqCst);
    let out = run_batch(&retrying, &mut [wire(1, b"{}")]).await;
    assert_eq!(reg.hits.load(Ordering::SeqCst), 3);
    assert!(failure(&out[0])
        .2
        .contains("required property couponId is missing"));
}

#[tokio::test]
async fn a_silent_registry_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        // Accept and never answer.
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let p = pipelines(&format!("http://{addr}"), "      timeout_ms: 100\n");
    let out = run_batch(&p, &mut [wire(1, b"{}")]).await;
    assert!(
        matches!(&out[0], Outcome::Pass { unverified: Some(why), .. } if why.contains("no answer within 100 ms")),
        "{out:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn allowed_ids_are_checked_before_asking_and_auth_is_sent() {
    let reg = registry_with_schemas();
    let addr = serve(reg.clone()).await;
    let p = pipelines(
        &format!("http://{addr}"),
        "      basic_auth_user_info: \"u:p\"\n    allowed_ids: [1]\n",
    );
    let out = run_batch(
        &p,
        &mut [
            wire(2, &avro_order(1, "a")),
            wire(1, br#"{"couponId":"c"}"#),
        ],
    )
    .await;
    assert!(failure(&out[0]).2.contains("not one of the allowed ids"));
    assert_eq!(out[1], Outcome::unchanged());
    assert_eq!(
        reg.hits.load(Ordering::SeqCst),
        1,
        "id 2 was never looked up"
    );
    assert_eq!(
        reg.authorization.lock().unwrap().as_deref(),
        Some("Basic dTpw")
    );
}

#[test]
fn apply_without_prepare_passes_unverified() {
    let p = pipelines("http://127.0.0.1:9", "");
    let pipeline = p.for_record(TOPIC, None).unwrap();
    let mut rec = wire(5, b"{}");
    let ctx = RecordContext {
        topic: TOPIC,
        partition: 0,
        group: None,
    };
    assert!(matches!(
        pipeline.apply(&ctx, &mut rec),
        Outcome::Pass { unverified: Some(why), .. } if why.contains("not resolved")
    ));
}

#[test]
fn pipelines_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let p = pipelines(
        "http://127.0.0.1:9",
        "      basic_auth_user_info: \"user:hunter2\"\n",
    );
    send_sync(&p);
    let pipeline = p.for_record(TOPIC, None).unwrap();
    let records = vec![wire(1, b"{}")];
    let prepare = pipeline.prepare(&records);
    send(&prepare);
    drop(prepare);
    let config = crate::transform::TransformConfig::from_yaml(
        "pipelines:\n- topics: [a]\n  checks:\n  - type: schema_registry\n    registry: {url: \"http://r\", basic_auth_user_info: \"user:hunter2\"}\n",
    )
    .unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
    assert!(!format!("{p:?}").contains("hunter2"));
}
