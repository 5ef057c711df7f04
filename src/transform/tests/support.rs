//! Helpers shared by the transform tests.

use bytes::Bytes;
use serde_json::Value;

use crate::protocol::record::{Header, Record};
use crate::transform::{Outcome, Pipelines, RecordContext, TransformConfig};

/// Topic, partition and group every test record comes from.
pub(super) const TOPIC: &str = "orders";
pub(super) const PARTITION: i32 = 3;
pub(super) const GROUP: &str = "billing";
/// Offset and timestamp of every test record.
pub(super) const OFFSET: i64 = 42;
pub(super) const TIMESTAMP: i64 = 1_700_000_000_123;

/// Compile a whole `TransformConfig` YAML document (schema files from testdata/).
pub(super) fn compile(yaml: &str) -> Pipelines {
    let config = TransformConfig::from_yaml(yaml).expect("test YAML parses");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/transform/testdata");
    Pipelines::compile(&config, &dir).expect("test config compiles")
}

/// One pipeline on topic `orders` running one transform `t` of type `ty` with `props`,
/// under `errors.tolerance=all`.
pub(super) fn single(ty: &str, props: &[(&str, &str)]) -> Pipelines {
    let mut yaml = String::from(
        "pipelines:\n- topics: [orders]\n  config:\n    transforms: t\n    errors.tolerance: all\n",
    );
    yaml.push_str(&format!("    transforms.t.type: {}\n", quote(ty)));
    for (k, v) in props {
        yaml.push_str(&format!("    transforms.t.{k}: {}\n", quote(v)));
    }
    compile(&yaml)
}

/// A YAML double-quoted string.
pub(super) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A record with the given key, value and headers.
pub(super) fn record(key: Option<&str>, value: Option<&str>, headers: &[(&str, &str)]) -> Record {
    Record {
        offset: OFFSET,
        timestamp: TIMESTAMP,
        key: key.map(|k| Bytes::from(k.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: headers
            .iter()
            .map(|(k, v)| Header::new(*k, v.to_string()))
            .collect(),
    }
}

/// Run the pipeline for topic `orders`, group `billing` over the record.
pub(super) fn run(pipelines: &Pipelines, record: &mut Record) -> Outcome {
    run_on(pipelines, TOPIC, record)
}

/// Run the pipeline for `topic`, group `billing` over the record.
pub(super) fn run_on(pipelines: &Pipelines, topic: &str, record: &mut Record) -> Outcome {
    let pipeline = pipelines
        .for_record(topic, Some(GROUP))
        .expect("a pipeline applies");
    let ctx = RecordContext {
        topic,
        partition: PARTITION,
        group: Some(GROUP),
    };
    pipeline.apply(&ctx, record)
}

/// Bytes parsed as JSON (panics in tests on non-JSON).
pub(super) fn json(bytes: &Option<Bytes>) -> Option<Value> {
    bytes
        .as_ref()
        .map(|b| serde_json::from_slice(b).expect("output is JSON"))
}

/// The headers as (key, UTF-8 value) pairs.
pub(super) fn headers(record: &Record) -> Vec<(String, Option<String>)> {
    record
        .headers
        .iter()
        .map(|h| {
            (
                h.key.clone(),
                h.value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect()
}
