//! Tests of scanning, decoding and encoding single batches and record sets.

use bytes::Bytes;

use super::support::*;
use crate::protocol::record::Record;
use crate::protocol::record_batch::*;

fn one_batch(bytes: &Bytes) -> RawBatch {
    let view = scan(bytes).expect("scan");
    assert!(view.tail.is_none(), "unexpected tail");
    match view.entries.as_slice() {
        [Entry::Batch(batch)] => batch.clone(),
        other => panic!("expected one batch, got {other:?}"),
    }
}

#[test]
fn every_codec_round_trips_every_record_shape() {
    for (codec, framing) in CODECS {
        for count in [1, 6, 13, 500] {
            let records = sample_records(1000, count);
            let header = header_for(1000, count as i32, codec, &records);
            let bytes = encode_batch_framed(&header, &records, framing).expect("encode");
            let raw = one_batch(&bytes);
            raw.verify_crc().expect("crc of a fresh batch");
            assert_eq!(raw.header.record_count, count as i32);
            assert_eq!(raw.header.compression().ok(), Some(codec));
            let decoded = decode_batch(&raw).expect("decode");
            assert_eq!(decoded.records, records, "{codec} {framing:?} {count}");
            if codec == Compression::Snappy {
                assert_eq!(decoded.snappy_framing, framing);
            }
            // Everything but length, crc and count is written as given.
            let expected = BatchHeader {
                batch_length: raw.header.batch_length,
                crc: raw.header.crc,
                ..header.clone()
            };
            assert_eq!(decoded.header, expected);
            // Decoding then encoding again is byte-identical.
            assert_eq!(
                decoded.encode().expect("re-encode"),
                bytes,
                "{codec} {framing:?} {count}"
            );
        }
    }
}

#[test]
fn awkward_shapes_survive() {
    let records = sample_records(0, 6);
    let bytes = batch(Compression::None, SnappyFraming::Xerial, 0, 6);
    let back = decode_records(&one_batch(&bytes)).expect("decode");
    assert_eq!(back[1].key, None, "null key");
    assert!(back[2].is_tombstone(), "tombstone");
    let dup: Vec<_> = back[3].headers.iter().filter(|h| h.key == "dup").collect();
    assert_eq!(dup.len(), 2, "duplicate header keys");
    assert_eq!(dup[0].value.as_deref(), Some(&b"a"[..]));
    assert_eq!(dup[1].value.as_deref(), Some(&b"b"[..]));
    assert_eq!(
        back[4].header("nullable").map(|h| h.value.clone()),
        Some(None),
        "null header value"
    );
    assert_eq!(
        back[5].key.as_deref(),
        Some(&b""[..]),
        "empty key is not null"
    );
    assert_eq!(back, records);
}

#[test]
fn empty_batches_are_valid_in_every_codec() {
    for (codec, framing) in CODECS {
        let header = header_for(50, 10, codec, &[]);
        let bytes = encode_batch_framed(&header, &[], framing).expect("encode empty");
        let raw = one_batch(&bytes);
        assert_eq!(raw.header.record_count, 0);
        assert_eq!(raw.header.base_offset, 50);
        assert_eq!(raw.header.last_offset(), 59);
        raw.verify_crc().expect("crc");
        assert_eq!(decode_records(&raw).expect("decode").len(), 0, "{codec}");
    }
}

#[test]
fn empty_batches_without_payload_are_not_decompressed() {
    // What a broker writes after compaction: count 0, no payload; here with a codec set.
    for codec in Compression::ALL {
        let header = header_for(40, 10, codec, &[]);
        let bytes = raw_batch(&header, &[]);
        assert_eq!(bytes.len(), HEADER_SIZE);
        let raw = one_batch(&bytes);
        assert_eq!(decode_records(&raw).expect("decode").len(), 0, "{codec}");
        assert!(
            hide_offsets(&bytes, &[45]).expect("hide").is_none(),
            "{codec}"
        );
        let cut = trim_after(&bytes, 44).expect("trim").expect("changed");
        let cut = one_batch(&cut);
        assert_eq!(
            (cut.header.record_count, cut.header.last_offset()),
            (0, 44),
            "{codec}"
        );
    }
}

#[test]
fn log_append_time_records_carry_the_batch_time() {
    let records = sample_records(7, 3);
    let header = BatchHeader {
        attributes: 1 << 3,
        max_timestamp: T0 + 99_999,
        ..header_for(7, 3, Compression::None, &records)
    };
    let bytes = encode_batch(&header, &records).expect("encode");
    let back = decode_records(&one_batch(&bytes)).expect("decode");
    assert!(back.iter().all(|r| r.timestamp == T0 + 99_999));
}

#[test]
fn offset_gaps_and_negative_timestamp_deltas_round_trip() {
    let mut records = sample_records(0, 4);
    records[1].offset = 5;
    records[2].offset = 6;
    records[3].offset = 20;
    records[2].timestamp = T0 - 5_000;
    let header = header_for(0, 21, Compression::Zstd, &records);
    let bytes = encode_batch(&header, &records).expect("encode");
    let raw = one_batch(&bytes);
    assert_eq!(raw.header.last_offset(), 20);
    assert_eq!(decode_records(&raw).expect("decode"), records);
}

#[test]
fn encoder_refuses_what_it_must_not_build() {
    let records = sample_records(10, 3);
    let good = header_for(10, 3, Compression::None, &records);
    let shifted = |offsets: [i64; 3]| -> Vec<Record> {
        let mut out = records.clone();
        for (r, o) in out.iter_mut().zip(offsets) {
            r.offset = o;
        }
        out
    };
    let cases: Vec<(&str, BatchHeader, Vec<Record>)> = vec![
        (
            "control",
            BatchHeader {
                attributes: 1 << 5,
                ..good.clone()
            },
            records.clone(),
        ),
        (
            "magic 1",
            BatchHeader {
                magic: 1,
                ..good.clone()
            },
            records.clone(),
        ),
        (
            "codec 6",
            BatchHeader {
                attributes: 6,
                ..good.clone()
            },
            records.clone(),
        ),
        ("before base", good.clone(), shifted([9, 10, 11])),
        ("after last", good.clone(), shifted([10, 11, 13])),
        ("not increasing", good.clone(), shifted([10, 12, 11])),
        ("duplicate", good.clone(), shifted([10, 11, 11])),
    ];
    for (name, header, records) in cases {
        let result = encode_batch(&header, &records);
        let ok = matches!(
            (name, &result),
            ("control" | "magic 1", Err(BatchError::NotEditable { .. }))
                | (
                    "codec 6",
                    Err(BatchError::UnknownCompression { codec: 6, .. })
                )
                | (
                    "before base" | "after last",
                    Err(BatchError::OffsetOutOfRange { .. })
                )
                | (
                    "not increasing" | "duplicate",
                    Err(BatchError::OffsetsNotIncreasing { .. })
                )
        );
        assert!(ok, "{name}: {result:?}");
    }
}

#[test]
fn scan_splits_batches_legacy_entries_and_tail() {
    let a = batch(Compression::Gzip, SnappyFraming::Xerial, 0, 5);
    let b = control_batch(5);
    let c = legacy_message(6, b"old", 0);
    let d = batch(Compression::Lz4, SnappyFraming::Xerial, 7, 5);
    let whole = concat(&[&a, &b, &c, &d]);
    for cut in 0..d.len() {
        let set = concat(&[&a, &b, &c, &d.slice(..cut)]);
        let view = scan(&set).expect("scan");
        assert_eq!(view.entries.len(), 3, "cut {cut}");
        assert_eq!(view.tail.as_ref().map(Bytes::len).unwrap_or(0), cut);
        assert_eq!(view.last_offset(), Some(6));
    }
    let view = scan(&whole).expect("scan");
    assert!(view.tail.is_none());
    let kinds: Vec<(bool, bool, i64)> = view
        .entries
        .iter()
        .map(|e| {
            (
                matches!(e, Entry::Batch(_)),
                e.editable().is_some(),
                e.last_offset(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (true, true, 4),
            (true, false, 5),
            (false, false, 6),
            (true, true, 11)
        ]
    );
    assert_eq!(view.batches().count(), 3);
    let bytes: Vec<&Bytes> = view.entries.iter().map(Entry::bytes).collect();
    assert_eq!(bytes, vec![&a, &b, &c, &d]);
    assert!(view.batches().all(|b| b.verify_crc().is_ok()));
}

#[test]
fn scan_does_not_decompress_or_check_crc() {
    // A batch whose compressed payload is garbage and whose CRC is wrong still scans.
    let good = batch(Compression::Zstd, SnappyFraming::Xerial, 0, 5);
    let mut broken = good.to_vec();
    let last = broken.len() - 1;
    broken[last] ^= 0xff;
    broken[70] ^= 0xff;
    let broken = Bytes::from(broken);
    let raw = one_batch(&broken);
    assert!(matches!(
        raw.verify_crc(),
        Err(BatchError::CrcMismatch { .. })
    ));
    assert!(matches!(
        decode_batch(&raw),
        Err(BatchError::CrcMismatch { .. })
    ));
}

#[test]
fn scan_rejects_impossible_entries() {
    let good = batch(Compression::None, SnappyFraming::Xerial, 0, 2);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.to_vec();
        f(&mut bytes);
        Bytes::from(bytes)
    };
    let cases: Vec<(&str, Bytes)> = vec![
        ("magic 3", with(&|b| b[16] = 3)),
        ("magic -1", with(&|b| b[16] = 0xff)),
        (
            "negative length",
            with(&|b| b[8..12].copy_from_slice(&(-1i32).to_be_bytes())),
        ),
        (
            "length 13",
            with(&|b| b[8..12].copy_from_slice(&13i32.to_be_bytes())),
        ),
        (
            "v2 length 40",
            with(&|b| b[8..12].copy_from_slice(&40i32.to_be_bytes())),
        ),
    ];
    for (name, bytes) in cases {
        let result = scan(&bytes);
        let ok = matches!(
            (name, &result),
            ("magic 3" | "magic -1", Err(BatchError::BadMagic { .. }))
                | (
                    "negative length" | "length 13" | "v2 length 40",
                    Err(BatchError::BadLength { .. })
                )
        );
        assert!(ok, "{name}: {result:?}");
    }
}

#[test]
fn tail_info_reads_what_is_there() {
    let b = batch(Compression::None, SnappyFraming::Xerial, 300, 4);
    let cases: &[(usize, Option<i64>, Option<i64>)] = &[
        (0, None, None),
        (7, None, None),
        (8, Some(300), None),
        (26, Some(300), None),
        (27, Some(300), Some(303)),
        (80, Some(300), Some(303)),
    ];
    for &(cut, base, last) in cases {
        let info = tail_info(&b[..cut]);
        assert_eq!(
            (info.base_offset, info.last_offset),
            (base, last),
            "cut {cut}"
        );
    }
}
