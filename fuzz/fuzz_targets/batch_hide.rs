//! Hide, in every codec: records built from the input are encoded into batches (none,
//! gzip, snappy in both framings, lz4, zstd; offset gaps allowed), some offsets are hidden,
//! and reading the result back gives exactly the other records, byte-identical (key,
//! value, headers, offset, timestamp), with every batch keeping its base offset and last
//! offset delta.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::batches::{
    decode_batch, encode_batch_framed, hide_offsets, scan, BatchHeader, Compression, Header,
    Record, SnappyFraming,
};

const CODECS: [(Compression, SnappyFraming); 6] = [
    (Compression::None, SnappyFraming::Xerial),
    (Compression::Gzip, SnappyFraming::Xerial),
    (Compression::Snappy, SnappyFraming::Xerial),
    (Compression::Snappy, SnappyFraming::Raw),
    (Compression::Lz4, SnappyFraming::Xerial),
    (Compression::Zstd, SnappyFraming::Xerial),
];

fn bytes(u: &mut Unstructured) -> Result<Option<Bytes>> {
    Ok(if u.ratio(1, 8)? {
        None
    } else {
        let n = u.int_in_range(0..=64)?;
        Some(Bytes::copy_from_slice(u.bytes(n)?))
    })
}

fn record(u: &mut Unstructured, offset: i64, t0: i64) -> Result<Record> {
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let key: String = u.arbitrary()?;
        headers.push(Header {
            key,
            value: bytes(u)?,
        });
    }
    Ok(Record {
        offset,
        timestamp: t0 + i64::from(u.int_in_range(0..=1000u16)?),
        key: bytes(u)?,
        value: bytes(u)?,
        headers,
    })
}

/// A record set of 1-4 batches and the records written into it.
fn record_set(u: &mut Unstructured) -> Result<(Bytes, Vec<Record>)> {
    let mut out = BytesMut::new();
    let mut all = Vec::new();
    let mut base: i64 = u.int_in_range(0..=1_000_000)?;
    for _ in 0..u.int_in_range(1..=4)? {
        let (codec, framing) = CODECS[u.choose_index(CODECS.len())?];
        let t0 = 1_700_000_000_000 + i64::from(u.int_in_range(0..=1000u16)?);
        let mut records = Vec::new();
        let mut offset = base;
        for _ in 0..u.int_in_range(1..=8)? {
            records.push(record(u, offset, t0)?);
            offset += 1 + i64::from(u.int_in_range(0..=2u8)?); // compacted gaps
        }
        let span = (records.last().map_or(base, |r| r.offset) - base + 1) as i32;
        let header = BatchHeader {
            base_offset: base,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: i16::from(codec.id()),
            last_offset_delta: span - 1,
            base_timestamp: t0,
            max_timestamp: records.iter().map(|r| r.timestamp).max().unwrap_or(t0),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: records.len() as i32,
        };
        let batch = encode_batch_framed(&header, &records, framing).expect("fuzz batch encodes");
        out.extend_from_slice(&batch);
        all.extend(records);
        base += i64::from(span);
    }
    Ok((out.freeze(), all))
}

/// Every record of a record set, and each batch's (base offset, last offset).
fn read_back(records: &Bytes) -> (Vec<Record>, Vec<(i64, i64)>) {
    let view = scan(records).expect("a rewritten record set scans");
    let mut out = Vec::new();
    let mut spans = Vec::new();
    for batch in view.batches() {
        spans.push((batch.header.base_offset, batch.header.last_offset()));
        out.extend(
            decode_batch(batch)
                .expect("a rewritten batch decodes")
                .records,
        );
    }
    (out, spans)
}

fn run(u: &mut Unstructured) -> Result<()> {
    let (set, written) = record_set(u)?;
    let (original, spans) = read_back(&set);
    assert_eq!(original, written, "encode then decode");
    let mut hidden = Vec::new();
    for r in &written {
        if u.ratio(1, 3)? {
            hidden.push(r.offset);
        }
    }
    if u.ratio(1, 4)? {
        hidden.push(u.int_in_range(-5..=2_000_000)?); // an offset that is not there
    }
    let rewritten = hide_offsets(&set, &hidden).expect("hide on a valid record set");
    let after = rewritten.unwrap_or_else(|| set.clone());
    let (kept, new_spans) = read_back(&after);
    let expected: Vec<Record> = written
        .into_iter()
        .filter(|r| !hidden.contains(&r.offset))
        .collect();
    assert_eq!(kept, expected, "every other record byte-identical");
    assert_eq!(new_spans, spans, "base offsets and last offsets kept");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
