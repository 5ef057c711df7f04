//! Writes the seed corpus kept in git (`fuzz/seeds/<target>/`): real frames, requests,
//! batches in every codec, state messages, configs. Run from `fuzz/`:
//! `cargo run --example seeds` (the fuzz script does not need it; the seeds are committed).

use std::fs;
use std::path::Path;

use bytes::Bytes;
use quarantine_fuzz::batches::{
    encode_batch_framed, BatchHeader, Compression, Header, Record, SnappyFraming,
};

/// The README's minimal config.
const CONFIG: &str = r#"proxy:
  listen: 127.0.0.1:9092
  advertised_host: 127.0.0.1
  node_port_base: 19000
upstream:
  bootstrap_servers: [kafka-0.kafka:9092]
  tls: {enabled: false}
admin:
  listen: 127.0.0.1:9644
watch:
  topics: {include: [".*"], exclude: []}
  groups: {include: [".*"]}
  detection: {max_deliveries: 3, stall_timeout: 60s, backoff_initial: 0s}
  guard: {max_consecutive: 3, max_ratio: 0.05, window: 5m}
  dead_letter: {topic_template: "{topic}.dlq", header_style: connect, retention_ms: 1209600000, replication_factor: 3}
pipelines:
  - topics: [order.confirmed]
    checks: [{type: json}]
    config:
      errors.tolerance: all
      transforms: mask
      transforms.mask.type: MaskField$Value
      transforms.mask.fields: email
"#;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    fs::create_dir_all(&dir).expect("seed dir");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&7i32.to_be_bytes());
    string(&mut payload, "seed-client");
    payload.extend_from_slice(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

fn fetch_v4() -> Vec<u8> {
    let mut b = Vec::new();
    for v in [-1i32, 500, 1, 1 << 20] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.push(0);
    b.extend_from_slice(&1i32.to_be_bytes());
    string(&mut b, "orders");
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&42i64.to_be_bytes());
    b.extend_from_slice(&(1i32 << 20).to_be_bytes());
    b
}

fn offset_commit_v2() -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, "billing");
    b.extend_from_slice(&3i32.to_be_bytes());
    string(&mut b, "member-1");
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    string(&mut b, "orders");
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&43i64.to_be_bytes());
    string(&mut b, "");
    b
}

fn assignment() -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&1i32.to_be_bytes());
    string(&mut b, "orders");
    b.extend_from_slice(&2i32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&5i32.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b
}

fn join_group_v0() -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, "billing");
    b.extend_from_slice(&6000i32.to_be_bytes());
    string(&mut b, "");
    string(&mut b, "consumer");
    b.extend_from_slice(&1i32.to_be_bytes());
    string(&mut b, "range");
    b.extend_from_slice(&0i32.to_be_bytes());
    b
}

fn records(base: i64) -> Vec<Record> {
    (0..5)
        .map(|i| Record {
            offset: base + i,
            timestamp: 1_700_000_000_000 + i,
            key: (i != 1).then(|| Bytes::from(format!("order-{i}"))),
            value: (i != 2).then(|| Bytes::from(format!("{{\"order\":{i},\"email\":\"a@b.c\"}}"))),
            headers: vec![Header {
                key: "trace".into(),
                value: Some(Bytes::from(format!("t{i}"))),
            }],
        })
        .collect()
}

fn batch(codec: Compression, framing: SnappyFraming, base: i64) -> Vec<u8> {
    let rs = records(base);
    let header = BatchHeader {
        base_offset: base,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: i16::from(codec.id()),
        last_offset_delta: 4,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_004,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 5,
    };
    encode_batch_framed(&header, &rs, framing)
        .expect("seed batch")
        .to_vec()
}

fn main() {
    let api_versions = frame(18, 0, &[]);
    write("frame_reader", "api_versions", &api_versions);
    write(
        "frame_reader",
        "two_frames",
        &[api_versions.clone(), frame(3, 1, &(-1i32).to_be_bytes())].concat(),
    );
    write("frame_reader", "negative", &(-16i32).to_be_bytes());

    write(
        "client_requests",
        "fetch_v4",
        &[&[0x04][..], &fetch_v4()].concat(),
    );
    write(
        "client_requests",
        "fetch_v4_frame",
        &[&[0x04][..], &frame(1, 4, &fetch_v4())].concat(),
    );
    write(
        "client_requests",
        "offset_commit_v2",
        &[&[0x12][..], &offset_commit_v2()].concat(),
    );
    write(
        "client_requests",
        "assignment",
        &[&[0x20][..], &assignment()].concat(),
    );
    write(
        "client_requests",
        "join_group_v0",
        &[&[0x30][..], &join_group_v0()].concat(),
    );

    let codecs = [
        ("none", Compression::None, SnappyFraming::Xerial),
        ("gzip", Compression::Gzip, SnappyFraming::Xerial),
        ("snappy_xerial", Compression::Snappy, SnappyFraming::Xerial),
        ("snappy_raw", Compression::Snappy, SnappyFraming::Raw),
        ("lz4", Compression::Lz4, SnappyFraming::Xerial),
        ("zstd", Compression::Zstd, SnappyFraming::Xerial),
    ];
    for (name, codec, framing) in codecs {
        write(
            "record_set",
            name,
            &[&[1u8][..], &batch(codec, framing, 100)].concat(),
        );
    }
    let two = [
        batch(Compression::None, SnappyFraming::Xerial, 0),
        batch(Compression::Zstd, SnappyFraming::Xerial, 5),
    ]
    .concat();
    write("record_set", "two_batches", &[&[1u8][..], &two].concat());
    write(
        "record_set",
        "truncated_tail",
        &[&[1u8][..], &two[..two.len() - 9]].concat(),
    );

    write("batch_hide", "a", &[7u8; 64]);
    write("batch_hide", "b", &(0u8..=255).collect::<Vec<_>>());

    write("state_record", "quarantine", br#"{"action":"quarantine","group":"billing","topic":"orders","partition":3,"offset":42,"reason":"crash-loop","dlq":["orders.dlq",3,7],"deliveries":3,"at_ms":1700000000000,"instance":"pod-a"}"#);
    write(
        "state_record",
        "release",
        br#"{"action":"release","group":"billing","topic":"orders","partition":3,"offset":42}"#,
    );
    write("state_record", "counts", br#"{"action":"counts"}"#);

    let mut dlq = Vec::new();
    for (k, v) in [
        ("__connect.errors.topic", "orders"),
        ("__connect.errors.partition", "3"),
        ("__connect.errors.offset", "42"),
        ("__quarantine.reason", "crash-loop"),
    ] {
        dlq.push(0u8);
        dlq.push(k.len() as u8);
        dlq.extend_from_slice(k.as_bytes());
        dlq.push(v.len() as u8);
        dlq.extend_from_slice(v.as_bytes());
    }
    write("dlq_headers", "connect", &dlq);

    for t in 0u8..4 {
        write("transform_json", &format!("t{t}"), &[&[t][..], br#"{"id":7}"#, &[0xff], br#"{"id":7,"email":"a@b.c","a":1,"n":"12","f":1.5,"nested":{"x":[1,2]},"h":"hv","secret":"s","tags":["a"]}"#, &[0xff], b"hdr"].concat());
    }

    write("config_yaml", "minimal", CONFIG.as_bytes());
    write("config_yaml", "empty", b"");
}
