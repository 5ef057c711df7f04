//! Corrupt, truncated and random input: every entry point answers with an error or a
//! correct result, never a panic.

use bytes::{BufMut, Bytes, BytesMut};

use super::support::*;
use crate::protocol::record_batch::*;

/// Runs every entry point on `bytes`. Only a panic fails; results are ignored.
fn exercise(bytes: &Bytes) {
    if let Ok(view) = scan(bytes) {
        for batch in view.batches() {
            let _ = decode_batch(batch).map(|d| d.encode());
        }
        if let Some(tail) = &view.tail {
            let _ = tail_info(tail);
        }
    }
    let _ = RawBatch::new(bytes.clone()).map(|b| decode_batch(&b));
    let _ = rewrite(bytes, |r| {
        if r.offset % 2 == 0 {
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    });
    let _ = hide_offsets(bytes, &[1, 2, 40]);
    let _ = trim_after(bytes, 3);
}

/// A tiny deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn every_prefix_of_a_batch_is_a_tail_and_never_decodes() {
    for (codec, framing) in CODECS {
        let whole = batch(codec, framing, 10, 8);
        for cut in 0..whole.len() {
            let prefix = whole.slice(..cut);
            let view = scan(&prefix).expect("a prefix scans");
            assert!(view.entries.is_empty(), "{codec} cut {cut}");
            assert_eq!(view.tail.map(|t| t.len()).unwrap_or(0), cut);
            assert!(RawBatch::new(prefix.clone()).is_err(), "{codec} cut {cut}");
            assert!(rewrite(&prefix, |_| Verdict::Drop)
                .expect("tail only")
                .is_none());
            exercise(&prefix);
            // Claim the prefix is the whole batch, with a valid CRC: decoding must fail,
            // or (when only a codec trailer such as lz4's end mark was cut) give back
            // every record intact. Never fewer or altered records.
            if cut >= HEADER_SIZE {
                let mut sealed = prefix.to_vec();
                seal(&mut sealed);
                let raw = RawBatch::new(Bytes::from(sealed)).expect("sealed prefix parses");
                if let Ok(decoded) = decode_batch(&raw) {
                    assert_eq!(
                        decoded.records,
                        sample_records(10, 8),
                        "{codec} {framing:?} cut {cut}"
                    );
                    assert!(
                        whole.len() - cut <= 8,
                        "{codec} {framing:?} cut {cut} decoded"
                    );
                }
            }
        }
    }
}

#[test]
fn flipped_bits_never_panic() {
    for (codec, framing) in CODECS {
        let whole = batch(codec, framing, 0, 6);
        let set = concat(&[&whole, &whole.slice(..40)]);
        for pos in 0..whole.len() {
            for bit in [0, 3, 7] {
                let mut bytes = set.to_vec();
                bytes[pos] ^= 1 << bit;
                exercise(&Bytes::from(bytes.clone()));
                // With the CRC fixed, the damage reaches the decompressor and record parser.
                let mut resealed = bytes[..whole.len()].to_vec();
                if pos >= 12 {
                    seal(&mut resealed);
                    exercise(&Bytes::from(resealed));
                }
                if pos >= 21 {
                    let raw = RawBatch::new(Bytes::from(bytes[..whole.len()].to_vec()));
                    if let Ok(raw) = raw {
                        assert!(
                            matches!(decode_batch(&raw), Err(BatchError::CrcMismatch { .. })),
                            "{codec} pos {pos}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let header = batch(Compression::None, SnappyFraming::Xerial, 0, 1).slice(..HEADER_SIZE);
    for round in 0..3000 {
        let len = (rng.next() % 300) as usize;
        exercise(&Bytes::from(rng.bytes(len)));
        // A valid header with a random payload under each codec, CRC fixed.
        let mut bytes = header.to_vec();
        bytes[22] = (round % 5) as u8;
        bytes[57..61].copy_from_slice(&((rng.next() % 4) as i32).to_be_bytes());
        bytes.extend(rng.bytes(len));
        seal(&mut bytes);
        exercise(&Bytes::from(bytes));
    }
}

/// An uncompressed batch claiming `count` records over the hand-written `payload`.
fn with_payload(count: i32, payload: &[u8]) -> RawBatch {
    let mut out = BytesMut::new();
    BatchHeader {
        record_count: count,
        ..header_for(0, 5, Compression::None, &[])
    }
    .write(&mut out);
    out.put_slice(payload);
    let mut bytes = out.to_vec();
    seal(&mut bytes);
    RawBatch::new(Bytes::from(bytes)).expect("parses")
}

#[test]
fn malformed_records_are_named() {
    // A valid record: length 7, attributes, ts delta 0, offset delta 0, null key, value "v", no headers.
    const GOOD: &[u8] = &[0x0e, 0, 0, 0, 0x01, 0x02, b'v', 0];
    let cases: &[(&str, i32, &[u8], &str)] = &[
        ("valid", 1, GOOD, ""),
        (
            "length past end",
            1,
            &[0x1e, 0, 0, 0, 0x01, 0x02, b'v', 0],
            "length runs past the records",
        ),
        (
            "negative length",
            1,
            &[0x01, 0, 0, 0, 0x01, 0x02, b'v', 0],
            "negative length",
        ),
        (
            "negative header count",
            1,
            &[0x0e, 0, 0, 0, 0x01, 0x02, b'v', 0x01],
            "negative header count",
        ),
        (
            "null header key",
            1,
            &[0x12, 0, 0, 0, 0x01, 0x02, b'v', 0x02, 0x01, 0x01],
            "null header key",
        ),
        (
            "slack in record",
            1,
            &[0x10, 0, 0, 0, 0x01, 0x02, b'v', 0, 0xaa],
            "fields do not fill the declared length",
        ),
        (
            "value past record",
            1,
            &[0x0e, 0, 0, 0, 0x01, 0x0a, b'v', 0],
            "field runs past the record",
        ),
        (
            "varint past record",
            1,
            &[0x0e, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            "truncated",
        ),
        ("count too high", 2, GOOD, "the records end early"),
        ("huge count", i32::MAX, GOOD, "the records end early"),
        (
            "count too low",
            1,
            &[0x0e, 0, 0, 0, 0x01, 0x02, b'v', 0, 0x00],
            "bytes remain after the last record",
        ),
        ("negative count", -1, GOOD, "the count is negative"),
    ];
    for &(name, count, payload, expected) in cases {
        let result = decode_records(&with_payload(count, payload));
        let reason = match &result {
            Ok(records) => {
                assert_eq!(records.len(), 1, "{name}");
                assert_eq!(records[0].value.as_deref(), Some(&b"v"[..]), "{name}");
                ""
            }
            Err(BatchError::BadRecord { reason, .. }) => reason,
            Err(BatchError::BadVarint { reason, .. }) => reason,
            Err(BatchError::RecordCount { detail, .. }) => detail,
            Err(other) => panic!("{name}: unexpected {other}"),
        };
        assert_eq!(reason, expected, "{name}");
    }
}

#[test]
fn errors_read_well() {
    let err =
        decode_batch(&with_payload(1, &[0x1e, 0, 0, 0, 0x01, 0x02, b'v', 0])).expect_err("bad");
    assert_eq!(
        err.to_string(),
        "record 0 of batch at offset 0 is malformed: length runs past the records"
    );
    let mut bytes = batch(Compression::Gzip, SnappyFraming::Xerial, 0, 2).to_vec();
    let at = bytes.len() - 12;
    bytes[at] ^= 0xff;
    seal(&mut bytes);
    let err = decode_batch(&RawBatch::new(Bytes::from(bytes)).expect("parses"))
        .expect_err("corrupt gzip");
    assert!(
        err.to_string().starts_with("gzip decompression failed"),
        "{err}"
    );
}
