//! Kafka-Connect-style transforms and checks on arbitrary record keys, values and headers
//! (what producers write is outside bytes): four pipelines cover masking, inserting,
//! replacing, flattening, casting, hoisting/extracting, headers from fields, value-to-key
//! and the JSON and JSON-schema checks. A record either passes (maybe changed), is filtered
//! or fails with a tolerated error; nothing panics.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::batches::{Header, Record};
use quarantine_fuzz::transform::{Pipelines, RecordContext, TransformConfig};

const CONFIG: &str = r#"
pipelines:
- topics: [t0]
  config:
    errors.tolerance: all
    transforms: mask,insert,replace
    transforms.mask.type: MaskField$Value
    transforms.mask.fields: email,card
    transforms.insert.type: InsertField$Value
    transforms.insert.static.field: s
    transforms.insert.static.value: v
    transforms.insert.offset.field: o
    transforms.insert.topic.field: t
    transforms.replace.type: ReplaceField$Value
    transforms.replace.exclude: secret
    transforms.replace.renames: a:b,c:d
  checks:
    - type: json
- topics: [t1]
  config:
    errors.tolerance: all
    transforms: flat,cast,hoist,extract
    transforms.flat.type: Flatten$Value
    transforms.flat.delimiter: _
    transforms.cast.type: Cast$Value
    transforms.cast.spec: n:int32,f:string,b:boolean
    transforms.hoist.type: HoistField$Value
    transforms.hoist.field: wrapped
    transforms.extract.type: ExtractField$Key
    transforms.extract.field: id
- topics: [t2]
  config:
    errors.tolerance: all
    transforms: hf,vk,drop
    transforms.hf.type: HeaderFrom$Value
    transforms.hf.fields: h
    transforms.hf.headers: hh
    transforms.hf.operation: copy
    transforms.vk.type: ValueToKey
    transforms.vk.fields: id
    transforms.drop.type: DropHeaders
    transforms.drop.headers: x
  checks:
    - type: json_schema
      schema:
        type: object
        required: [id]
        properties:
          id: {type: integer}
          tags: {type: array, items: {type: string}}
    - type: json
      on: key
- topics: [t3]
  config:
    errors.tolerance: all
    transforms: cast
    transforms.cast.type: Cast$Value
    transforms.cast.spec: int64
"#;

fn pipelines() -> &'static Pipelines {
    static P: OnceLock<Pipelines> = OnceLock::new();
    P.get_or_init(|| {
        let config = TransformConfig::from_yaml(CONFIG).expect("fuzz transform YAML parses");
        Pipelines::compile(&config, std::path::Path::new(".")).expect("fuzz pipelines compile")
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let topic = ["t0", "t1", "t2", "t3"][usize::from(data[0] & 3)];
    // The rest: key, value and one header value split at the next two 0xff bytes.
    let mut parts = data[1..].splitn(3, |&b| b == 0xff);
    let key = parts.next().map(Bytes::copy_from_slice);
    let value = parts.next().map(Bytes::copy_from_slice);
    let header = parts.next().map(Bytes::copy_from_slice);
    let mut record = Record {
        offset: 42,
        timestamp: 1_700_000_000_000,
        key,
        value,
        headers: header
            .into_iter()
            .map(|v| Header {
                key: "x".into(),
                value: Some(v),
            })
            .collect(),
    };
    let ctx = RecordContext {
        topic,
        partition: 0,
        group: Some("g"),
    };
    if let Some(p) = pipelines().for_record(topic, Some("g")) {
        let _ = p.apply(&ctx, &mut record);
    }
});
