//! A fetched partition's record set as the broker (or anyone in between) may send it:
//! scanning, decoding, rewriting, hiding and trimming never panic, and a batch that
//! decodes re-encodes to a batch that decodes to the same records (decode → encode →
//! decode is identity), under its own header and codec.
//!
//! The first input byte is a mode: when its low bit is set, the CRC of every v2 batch in
//! the rest is recomputed first, so that mutations reach the decoders behind the CRC check
//! (a mutated batch almost never has a valid CRC; the broker's own data always does).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::batches::{
    decode_batch, hide_offsets, rewrite, scan, trim_after, Entries, Entry, Verdict,
};

/// Recomputes the CRC-32C of each whole v2 batch in `set`, front to back.
fn fix_crcs(set: &mut [u8]) {
    let mut pos = 0;
    while set.len() - pos >= 21 {
        let length = i32::from_be_bytes([set[pos + 8], set[pos + 9], set[pos + 10], set[pos + 11]]);
        let Ok(length) = usize::try_from(length) else {
            return;
        };
        let end = pos + 12 + length;
        if length < 49 || end > set.len() || set[pos + 16] != 2 {
            return;
        }
        let crc = crc32c::crc32c(&set[pos + 21..end]);
        set[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut set = rest.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut set);
    }
    let records = Bytes::from(set);
    if let Ok(view) = scan(&records) {
        for batch in view.batches() {
            let Ok(decoded) = decode_batch(batch) else {
                continue;
            };
            let Ok(encoded) = decoded.encode() else {
                continue;
            };
            let again = scan(&encoded).expect("a re-encoded batch scans");
            let batches: Vec<_> = again.batches().collect();
            assert_eq!(batches.len(), 1, "one batch in, one batch out");
            let redecoded = decode_batch(batches[0]).expect("a re-encoded batch decodes");
            assert_eq!(
                decoded.records, redecoded.records,
                "decode → encode → decode"
            );
        }
    }
    let mut entries = Entries::new(&records);
    let mut offsets = Vec::new();
    for entry in entries.by_ref() {
        if let Ok(Entry::Batch(b)) = &entry {
            offsets.push(b.header.base_offset);
        }
    }
    let _ = entries.remainder();
    let _ = hide_offsets(&records, &offsets);
    let _ = rewrite(&records, |r| {
        if r.offset % 2 == 0 {
            Verdict::Drop
        } else {
            r.value = None;
            Verdict::Keep
        }
    });
    if let Some(&o) = offsets.first() {
        let _ = trim_after(&records, o);
    }
});
