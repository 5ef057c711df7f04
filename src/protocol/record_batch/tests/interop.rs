//! Cross-checks against an independent implementation, the `kafka-protocol` crate: it
//! decodes what this codec encodes (including rewritten and emptied batches), and this
//! codec decodes what it encodes.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as TheirCompression, Record as TheirRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as TheirTimestampType,
};

use super::support::*;
use crate::protocol::record::{Header, Record};
use crate::protocol::record_batch::*;

fn theirs(codec: Compression) -> TheirCompression {
    match codec {
        Compression::None => TheirCompression::None,
        Compression::Gzip => TheirCompression::Gzip,
        Compression::Snappy => TheirCompression::Snappy,
        Compression::Lz4 => TheirCompression::Lz4,
        Compression::Zstd => TheirCompression::Zstd,
    }
}

/// Their records keep headers in a map, so compare only records without duplicate keys.
fn comparable(records: &[Record]) -> Vec<Record> {
    records
        .iter()
        .filter(|r| {
            let mut keys: Vec<&str> = r.headers.iter().map(|h| h.key.as_str()).collect();
            keys.sort_unstable();
            keys.windows(2).all(|w| w[0] != w[1])
        })
        .cloned()
        .collect()
}

fn to_theirs(record: &Record) -> TheirRecord {
    let headers: IndexMap<StrBytes, Option<Bytes>> = record
        .headers
        .iter()
        .map(|h| (StrBytes::from_string(h.key.clone()), h.value.clone()))
        .collect();
    TheirRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 5,
        producer_id: 4242,
        producer_epoch: 1,
        timestamp_type: TheirTimestampType::Creation,
        offset: record.offset,
        sequence: 100 + record.offset as i32,
        timestamp: record.timestamp,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    }
}

fn from_theirs(record: &TheirRecord) -> Record {
    Record {
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k.to_string(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// Compares their decoding with what we expect: every field, except that records with
/// duplicate header keys only have their last value per key on their side.
fn assert_same(theirs: &[Record], ours: &[Record], what: &str) {
    let offsets = |rs: &[Record]| rs.iter().map(|r| r.offset).collect::<Vec<_>>();
    assert_eq!(offsets(theirs), offsets(ours), "{what}");
    let ours_plain = comparable(ours);
    let theirs_plain: Vec<Record> = theirs
        .iter()
        .filter(|t| ours_plain.iter().any(|o| o.offset == t.offset))
        .cloned()
        .collect();
    assert_eq!(theirs_plain, ours_plain, "{what}");
    for (t, o) in theirs.iter().zip(ours) {
        assert_eq!(
            (&t.key, &t.value, t.timestamp),
            (&o.key, &o.value, o.timestamp),
            "{what}"
        );
    }
}

/// Decodes a whole record set with their decoder.
fn their_decode(set: &Bytes) -> Vec<Record> {
    let mut buf = set.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).expect("kafka-protocol decodes our bytes");
    sets.iter()
        .flat_map(|s| s.records.iter().map(from_theirs))
        .collect()
}

#[test]
fn they_decode_what_we_encode() {
    for (codec, framing) in CODECS {
        let records = comparable(&sample_records(500, 30));
        let header = header_for(500, 30, codec, &records);
        let ours = encode_batch_framed(&header, &records, framing).expect("encode");
        assert_eq!(their_decode(&ours), records, "{codec} {framing:?}");
    }
}

#[test]
fn we_decode_what_they_encode() {
    for codec in Compression::ALL {
        let records = comparable(&sample_records(77, 40));
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: theirs(codec),
        };
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter().map(to_theirs).collect::<Vec<_>>().iter(),
            &options,
        )
        .expect("kafka-protocol encodes");
        let set = buf.freeze();
        let view = scan(&set).expect("scan");
        assert!(view.tail.is_none());
        let mut decoded = Vec::new();
        for batch in view.batches() {
            assert_eq!(batch.header.compression().ok(), Some(codec));
            assert_eq!(batch.header.producer_id, 4242);
            decoded.extend(decode_records(batch).expect("we decode their bytes"));
        }
        assert_eq!(decoded, records, "{codec}");
        // And their batches survive our rewrite: hide two records, they read the rest.
        let out = hide_offsets(&set, &[78, 100])
            .expect("hide")
            .expect("changed");
        let expected: Vec<Record> = records
            .iter()
            .filter(|r| r.offset != 78 && r.offset != 100)
            .cloned()
            .collect();
        assert_eq!(their_decode(&out), expected, "{codec}");
    }
}

#[test]
fn they_read_rewritten_emptied_and_trimmed_batches() {
    for (codec, framing) in CODECS {
        let first = batch(codec, framing, 0, 6);
        let second = batch(codec, framing, 6, 6);
        let set = concat(&[&first, &second]);
        let hidden: Vec<i64> = (0..6).chain([8]).collect();
        let out = hide_offsets(&set, &hidden).expect("hide").expect("changed");
        let expected: Vec<Record> = sample_records(6, 6)
            .into_iter()
            .filter(|r| r.offset != 8)
            .collect();
        assert_same(
            &their_decode(&out),
            &expected,
            &format!("hide {codec} {framing:?}"),
        );
        let trimmed = trim_after(&set, 8).expect("trim").expect("changed");
        assert_same(
            &their_decode(&trimmed),
            &[sample_records(0, 6), sample_records(6, 3)].concat(),
            &format!("trim {codec} {framing:?}"),
        );
    }
}
