//! Builders shared by the record-batch tests: sample records with every awkward shape,
//! batches in every codec, and hand-made control batches and legacy messages that the
//! encoder itself refuses to produce.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::record::{Header, Record};
use crate::protocol::record_batch::header::{
    BatchHeader, Compression, CRC_COVERED_FROM, CRC_POS, LOG_OVERHEAD,
};
use crate::protocol::record_batch::record_wire::encode_record;
use crate::protocol::record_batch::{encode_batch_framed, SnappyFraming};

/// Base timestamp used by the samples.
pub(crate) const T0: i64 = 1_700_000_000_000;

/// Every codec with the snappy framings spelled out.
pub(crate) const CODECS: [(Compression, SnappyFraming); 6] = [
    (Compression::None, SnappyFraming::Xerial),
    (Compression::Gzip, SnappyFraming::Xerial),
    (Compression::Snappy, SnappyFraming::Xerial),
    (Compression::Snappy, SnappyFraming::Raw),
    (Compression::Lz4, SnappyFraming::Xerial),
    (Compression::Zstd, SnappyFraming::Xerial),
];

/// The `i`-th sample record at `offset`: shapes rotate through plain, null key,
/// tombstone, duplicate header keys, null header value, empty key and value.
pub(crate) fn sample_record(offset: i64, i: usize) -> Record {
    let value = format!("{{\"id\":{offset},\"body\":\"{}\"}}", "x".repeat(i % 7));
    let mut record = Record {
        offset,
        timestamp: T0 + (i as i64 % 5) * 10,
        key: Some(Bytes::from(format!("key-{offset}"))),
        value: Some(Bytes::from(value)),
        headers: vec![Header::new("trace", format!("t{i}"))],
    };
    match i % 6 {
        1 => record.key = None,
        2 => record.value = None,
        3 => {
            record.headers = vec![
                Header::new("dup", "a"),
                Header::new("dup", "b"),
                Header::new("other", ""),
            ]
        }
        4 => record.headers.push(Header {
            key: "nullable".into(),
            value: None,
        }),
        5 => {
            record.key = Some(Bytes::new());
            record.value = Some(Bytes::new());
            record.headers.clear();
        }
        _ => {}
    }
    record
}

/// `count` sample records at consecutive offsets from `base`.
pub(crate) fn sample_records(base: i64, count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| sample_record(base + i as i64, i))
        .collect()
}

/// A header fitting `records` (all offsets `base..base+span`), codec `codec`.
pub(crate) fn header_for(
    base: i64,
    span: i32,
    codec: Compression,
    records: &[Record],
) -> BatchHeader {
    BatchHeader {
        base_offset: base,
        batch_length: 0,
        partition_leader_epoch: 5,
        magic: 2,
        crc: 0,
        attributes: i16::from(codec.id()),
        last_offset_delta: span - 1,
        base_timestamp: records.first().map_or(T0, |r| r.timestamp),
        max_timestamp: records.iter().map(|r| r.timestamp).max().unwrap_or(T0),
        producer_id: 4242,
        producer_epoch: 1,
        base_sequence: 100,
        record_count: records.len() as i32,
    }
}

/// A batch of `count` consecutive sample records from `base`.
pub(crate) fn batch(codec: Compression, framing: SnappyFraming, base: i64, count: usize) -> Bytes {
    let records = sample_records(base, count);
    let header = header_for(base, count as i32, codec, &records);
    encode_batch_framed(&header, &records, framing).expect("sample batch encodes")
}

/// Assembles an uncompressed batch under `header` without the encoder's checks (for
/// control batches and deliberately odd input); length, count and CRC are filled in.
pub(crate) fn raw_batch(header: &BatchHeader, records: &[Record]) -> Bytes {
    let mut out = BytesMut::new();
    BatchHeader {
        record_count: records.len() as i32,
        ..header.clone()
    }
    .write(&mut out);
    for record in records {
        encode_record(&mut out, record, header.base_offset, header.base_timestamp)
            .expect("record encodes");
    }
    seal(&mut out);
    out.freeze()
}

/// Recomputes the length and CRC of the batch in `out`.
pub(crate) fn seal(out: &mut [u8]) {
    let length = (out.len() - LOG_OVERHEAD) as i32;
    (&mut out[8..LOG_OVERHEAD]).put_i32(length);
    let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
    (&mut out[CRC_POS..CRC_COVERED_FROM]).put_u32(crc);
}

/// A transaction marker (commit) at `offset`: a transactional control batch.
pub(crate) fn control_batch(offset: i64) -> Bytes {
    let marker = Record {
        offset,
        timestamp: T0,
        // Control record key: version 0, type 1 (commit); value: version 0, coordinator epoch 3.
        key: Some(Bytes::from_static(&[0, 0, 0, 1])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 3])),
        headers: Vec::new(),
    };
    let header = BatchHeader {
        attributes: (1 << 4) | (1 << 5),
        last_offset_delta: 0,
        ..header_for(offset, 1, Compression::None, std::slice::from_ref(&marker))
    };
    raw_batch(&header, &[marker])
}

/// A legacy magic-1 message at `offset` (its CRC is not checked by anything here).
pub(crate) fn legacy_message(offset: i64, value: &[u8], attributes: u8) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u32(0); // crc, unchecked
    body.put_i8(1); // magic
    body.put_u8(attributes);
    body.put_i64(T0);
    body.put_i32(-1); // null key
    body.put_i32(value.len() as i32);
    body.put_slice(value);
    let mut out = BytesMut::new();
    out.put_i64(offset);
    out.put_i32(body.len() as i32);
    out.put_slice(&body);
    out.freeze()
}

/// Concatenates record-set pieces.
pub(crate) fn concat(parts: &[&Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for part in parts {
        out.extend_from_slice(part);
    }
    out.freeze()
}
