//! Tests of hiding, editing and trimming records in record sets.

use bytes::Bytes;

use super::support::*;
use crate::protocol::record::{Header, Record};
use crate::protocol::record_batch::*;

/// Three batches of 6 records: offsets 0-5, 6-11, 12-17.
fn three_batches(codec: Compression, framing: SnappyFraming) -> (Bytes, [Bytes; 3]) {
    let parts = [
        batch(codec, framing, 0, 6),
        batch(codec, framing, 6, 6),
        batch(codec, framing, 12, 6),
    ];
    (concat(&[&parts[0], &parts[1], &parts[2]]), parts)
}

fn batches_of(set: &Bytes) -> Vec<RawBatch> {
    let view = scan(set).expect("scan");
    assert!(view.tail.is_none());
    view.batches().cloned().collect()
}

fn offsets(records: &[Record]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}

#[test]
fn hiding_keeps_offsets_consistent_in_every_codec() {
    // (hidden offsets, expected offsets left in the middle batch 6..=11)
    let cases: &[(&[i64], &[i64])] = &[
        (&[6], &[7, 8, 9, 10, 11]),
        (&[8], &[6, 7, 9, 10, 11]),
        (&[11], &[6, 7, 8, 9, 10]),
        (&[7, 9], &[6, 8, 10, 11]),
        (&[6, 7, 8, 9, 10, 11], &[]),
    ];
    for (codec, framing) in CODECS {
        let (set, parts) = three_batches(codec, framing);
        for &(hidden, left) in cases {
            let out = hide_offsets(&set, hidden).expect("hide").expect("changed");
            let batches = batches_of(&out);
            assert_eq!(
                batches.len(),
                3,
                "{codec} {hidden:?}: batches kept, even empty"
            );
            assert_eq!(
                batches[0].bytes, parts[0],
                "untouched batch copied byte for byte"
            );
            assert_eq!(
                batches[2].bytes, parts[2],
                "untouched batch copied byte for byte"
            );
            let middle = &batches[1];
            middle.verify_crc().expect("re-encoded crc");
            let original = &batches_of(&set)[1].header;
            assert_eq!(middle.header.base_offset, 6);
            assert_eq!(middle.header.last_offset_delta, 5);
            assert_eq!(middle.header.record_count as usize, left.len());
            assert_eq!(
                middle.header.attributes, original.attributes,
                "same codec and flags"
            );
            let same_fields = |h: &BatchHeader| {
                (
                    h.partition_leader_epoch,
                    h.base_timestamp,
                    h.max_timestamp,
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                )
            };
            assert_eq!(same_fields(&middle.header), same_fields(original));
            let decoded = decode_batch(middle).expect("decode");
            assert_eq!(offsets(&decoded.records), left, "{codec} {hidden:?}");
            if codec == Compression::Snappy {
                assert_eq!(decoded.snappy_framing, framing, "framing kept");
            }
            let expected: Vec<Record> = sample_records(6, 6)
                .into_iter()
                .filter(|r| !hidden.contains(&r.offset))
                .collect();
            assert_eq!(decoded.records, expected);
        }
    }
}

#[test]
fn hiding_across_batches_and_unsorted_offsets() {
    let (set, _) = three_batches(Compression::Gzip, SnappyFraming::Xerial);
    let out = hide_offsets(&set, &[17, 0, 12])
        .expect("hide")
        .expect("changed");
    let left: Vec<Vec<i64>> = batches_of(&out)
        .iter()
        .map(|b| offsets(&decode_records(b).expect("decode")))
        .collect();
    assert_eq!(
        left,
        vec![vec![1, 2, 3, 4, 5], (6..12).collect(), vec![13, 14, 15, 16]]
    );
}

#[test]
fn nothing_to_do_is_none() {
    let (set, _) = three_batches(Compression::Snappy, SnappyFraming::Raw);
    let gap = {
        let mut records = sample_records(100, 3);
        records[2].offset = 110; // offsets 100, 101, 110: 102..=109 are gaps
        let header = header_for(100, 11, Compression::None, &records);
        encode_batch(&header, &records).expect("encode")
    };
    assert!(hide_offsets(&set, &[]).expect("empty list").is_none());
    assert!(hide_offsets(&set, &[18, 500, -1])
        .expect("outside")
        .is_none());
    assert!(hide_offsets(&gap, &[105]).expect("gap").is_none());
    assert!(rewrite(&set, |_| Verdict::Keep).expect("no-op").is_none());
    // An edit that writes back the same content is not a change either.
    assert!(rewrite(&set, |r| {
        r.value = r.value.clone();
        Verdict::Keep
    })
    .expect("same content")
    .is_none());
}

#[test]
fn edits_are_re_encoded_and_timestamps_follow() {
    let (set, parts) = three_batches(Compression::Lz4, SnappyFraming::Xerial);
    // Change a value and add a duplicate header at offset 8 only.
    let out = rewrite(&set, |r| {
        if r.offset == 8 {
            r.value = Some(Bytes::from_static(b"{\"masked\":true}"));
            r.headers.push(Header::new("trace", "again"));
        }
        Verdict::Keep
    })
    .expect("rewrite")
    .expect("changed");
    let batches = batches_of(&out);
    assert_eq!(batches[0].bytes, parts[0]);
    assert_eq!(batches[2].bytes, parts[2]);
    let original_max = batches_of(&set)[1].header.max_timestamp;
    assert_eq!(
        batches[1].header.max_timestamp, original_max,
        "timestamps untouched"
    );
    let records = decode_records(&batches[1]).expect("decode");
    assert_eq!(records[2].value.as_deref(), Some(&b"{\"masked\":true}"[..]));
    assert_eq!(
        records[2]
            .headers
            .iter()
            .filter(|h| h.key == "trace")
            .count(),
        2
    );

    // Moving a timestamp forward raises the batch's max timestamp.
    let out = rewrite_offsets(&set, &[13], |r| {
        r.timestamp = T0 + 1_000_000;
        Verdict::Keep
    })
    .expect("rewrite")
    .expect("changed");
    let batches = batches_of(&out);
    assert_eq!(batches[2].header.max_timestamp, T0 + 1_000_000);
    assert_eq!(
        batches[2].header.base_timestamp,
        batches_of(&set)[2].header.base_timestamp
    );
    assert_eq!(
        decode_records(&batches[2]).expect("decode")[1].timestamp,
        T0 + 1_000_000
    );
}

#[test]
fn rewrite_offsets_offers_only_listed_records_and_skips_other_batches() {
    let (set, _) = three_batches(Compression::None, SnappyFraming::Xerial);
    // Corrupt the payload of the first batch: it must not even be decoded.
    let mut bytes = set.to_vec();
    bytes[70] ^= 0xff;
    let set = Bytes::from(bytes);
    let mut seen = Vec::new();
    let out = rewrite_offsets(&set, &[9, 7], |r| {
        seen.push(r.offset);
        Verdict::Keep
    })
    .expect("only batch 2 decoded");
    assert!(out.is_none());
    assert_eq!(seen, vec![7, 9]);
    let mut selected = Vec::new();
    let result = rewrite_batches(
        &set,
        |h| {
            selected.push(h.base_offset);
            h.base_offset == 12
        },
        |_| Verdict::Drop,
    )
    .expect("batch 1 skipped by the selector");
    assert_eq!(selected, vec![0, 6, 12]);
    assert!(result.is_some());
    // Without the selector the corrupt batch is an error, not a silent pass.
    assert!(matches!(
        rewrite(&set, |_| Verdict::Keep),
        Err(BatchError::CrcMismatch { base_offset: 0, .. })
    ));
}

#[test]
fn control_legacy_and_tail_pass_through() {
    let data = batch(Compression::Zstd, SnappyFraming::Xerial, 0, 4);
    let marker = control_batch(4);
    let legacy = legacy_message(5, b"old", 0);
    let next = batch(Compression::Zstd, SnappyFraming::Xerial, 6, 4);
    let tail = next.slice(..40);
    let set = concat(&[&data, &marker, &legacy, &tail]);
    let out = rewrite(&set, |_| Verdict::Drop)
        .expect("rewrite")
        .expect("changed");
    let view = scan(&out).expect("scan");
    assert_eq!(view.tail.as_ref(), Some(&tail), "tail kept as it is");
    assert_eq!(view.entries.len(), 3);
    assert_eq!(view.entries[1].bytes(), &marker, "control batch untouched");
    assert_eq!(view.entries[2].bytes(), &legacy, "legacy entry untouched");
    let emptied = view.entries[0].editable().expect("data batch");
    assert_eq!(
        (emptied.header.record_count, emptied.header.last_offset()),
        (0, 3)
    );
    // Hiding the marker's offset changes nothing.
    assert!(hide_offsets(&set, &[4, 5]).expect("hide").is_none());
    // A control batch decodes (read-only) but cannot be encoded.
    let view = scan(&set).expect("scan");
    let Entry::Batch(raw_marker) = &view.entries[1] else {
        panic!("control batch")
    };
    let decoded = decode_batch(raw_marker).expect("decode marker");
    assert_eq!(decoded.records.len(), 1);
    assert!(matches!(
        decoded.encode(),
        Err(BatchError::NotEditable { .. })
    ));
}

#[test]
fn trim_cuts_at_the_last_offset() {
    for (codec, framing) in CODECS {
        let (set, parts) = three_batches(codec, framing);
        let tail = batch(codec, framing, 18, 6).slice(..30);
        let set_with_tail = concat(&[&set, &tail]);
        // (last offset, expected batches as (base, last, offsets) or None for unchanged)
        type Expect = Option<Vec<(i64, i64, Vec<i64>)>>;
        let cases: Vec<(i64, &Bytes, Expect)> = vec![
            (-1, &set, Some(vec![])),
            (0, &set, Some(vec![(0, 0, vec![0])])),
            (5, &set, Some(vec![(0, 5, (0..6).collect())])),
            (
                8,
                &set,
                Some(vec![(0, 5, (0..6).collect()), (6, 8, vec![6, 7, 8])]),
            ),
            (
                16,
                &set,
                Some(vec![
                    (0, 5, (0..6).collect()),
                    (6, 11, (6..12).collect()),
                    (12, 16, (12..17).collect()),
                ]),
            ),
            (17, &set, None),
            (1000, &set, None),
            (1000, &set_with_tail, None),
            (
                17,
                &set_with_tail,
                Some(vec![
                    (0, 5, (0..6).collect()),
                    (6, 11, (6..12).collect()),
                    (12, 17, (12..18).collect()),
                ]),
            ),
        ];
        for (last, input, expected) in cases {
            let out = trim_after(input, last).expect("trim");
            let Some(expected) = expected else {
                assert!(out.is_none(), "{codec} trim {last}: expected no change");
                continue;
            };
            let out = out.expect("changed");
            let view = scan(&out).expect("scan trimmed");
            assert!(view.tail.is_none(), "{codec} trim {last}: tail dropped");
            let got: Vec<(i64, i64, Vec<i64>)> = view
                .batches()
                .map(|b| {
                    b.verify_crc().expect("crc");
                    (
                        b.header.base_offset,
                        b.header.last_offset(),
                        offsets(&decode_records(b).expect("decode")),
                    )
                })
                .collect();
            assert_eq!(got, expected, "{codec} {framing:?} trim {last}");
            // Batches that end at or before the cut are copied byte for byte.
            for batch in view.batches().filter(|b| b.header.last_offset_delta == 5) {
                assert_eq!(batch.bytes, parts[(batch.header.base_offset / 6) as usize]);
            }
        }
    }
}

#[test]
fn trim_keeps_tails_that_end_before_the_cut() {
    let a = batch(Compression::None, SnappyFraming::Xerial, 0, 3);
    let b = batch(Compression::None, SnappyFraming::Xerial, 3, 3);
    let cases: &[(usize, i64, bool)] = &[
        (30, 10, true),  // tail's last offset (5) is known and <= 10
        (30, 4, false),  // cut inside the tail's range: dropped
        (20, 10, false), // last offset unknown: dropped
        (5, 10, false),  // base offset unknown: dropped
    ];
    for &(cut, last, kept) in cases {
        let tail = b.slice(..cut);
        let set = concat(&[&a, &tail]);
        let out = trim_after(&set, last).expect("trim");
        let out_tail = match &out {
            None => scan(&set).expect("scan").tail,
            Some(out) => scan(out).expect("scan").tail,
        };
        assert_eq!(out_tail.is_some(), kept, "cut {cut} last {last}");
    }
    assert_eq!(deliver_nothing().len(), 0);
}

#[test]
fn trim_refuses_to_cut_inside_unrewritable_entries() {
    let data = batch(Compression::None, SnappyFraming::Xerial, 0, 3);
    let mut marker_header = scan(&control_batch(3))
        .expect("scan")
        .batches()
        .next()
        .expect("batch")
        .header
        .clone();
    marker_header.last_offset_delta = 2; // a control batch spanning 3..=5
    let wide_marker = raw_batch(&marker_header, &[]);
    let set = concat(&[&data, &wide_marker]);
    assert!(matches!(
        trim_after(&set, 4),
        Err(BatchError::NotTrimmable { base_offset: 3, .. })
    ));
    assert!(trim_after(&set, 5).expect("after the marker").is_none());
    assert_eq!(
        scan(&trim_after(&set, 2).expect("before").expect("changed"))
            .expect("scan")
            .entries
            .len(),
        1
    );

    let wrapper = legacy_message(9, b"compressed", 1);
    let plain = legacy_message(9, b"plain", 0);
    assert!(matches!(
        trim_after(&concat(&[&data, &wrapper]), 5),
        Err(BatchError::NotTrimmable { .. })
    ));
    let out = trim_after(&concat(&[&data, &plain]), 5)
        .expect("trim")
        .expect("changed");
    assert_eq!(out, data);
}
