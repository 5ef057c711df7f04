//! Rewriting a record set record by record (hiding quarantined records, applying
//! transforms): only the batches that hold a changed record are decoded and re-encoded;
//! every other entry, control batches, legacy entries and a truncated tail are copied
//! byte for byte.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use super::codec::decode_batch;
use super::header::{BatchHeader, TimestampType};
use super::scan::{Entries, RawBatch};
use super::BatchError;
use crate::protocol::record::Record;

/// What an edit callback decides for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver the record (as the callback left it).
    Keep,
    /// Remove the record; its offset becomes a gap the consumer steps over.
    Drop,
}

/// Builds a new record set lazily: nothing is copied until the first entry changes.
pub(crate) struct Rebuilder<'a> {
    original: &'a Bytes,
    out: Option<BytesMut>,
}

impl<'a> Rebuilder<'a> {
    pub(crate) fn new(original: &'a Bytes) -> Self {
        Rebuilder {
            original,
            out: None,
        }
    }

    /// The output, started with the original bytes before position `at`.
    fn changed_from(&mut self, at: usize) -> &mut BytesMut {
        let original = self.original;
        self.out.get_or_insert_with(|| {
            let mut out = BytesMut::with_capacity(original.len());
            out.extend_from_slice(&original[..at]);
            out
        })
    }

    /// Keeps an entry as it is.
    pub(crate) fn keep(&mut self, bytes: &[u8]) {
        if let Some(out) = &mut self.out {
            out.extend_from_slice(bytes);
        }
    }

    /// Replaces the entry starting at `at` with `bytes`.
    pub(crate) fn replace(&mut self, at: usize, bytes: &[u8]) {
        self.changed_from(at).extend_from_slice(bytes);
    }

    /// Leaves out the entry starting at `at`.
    pub(crate) fn drop_entry(&mut self, at: usize) {
        self.changed_from(at);
    }

    /// The new record set, or `None` when nothing changed.
    pub(crate) fn finish(self) -> Option<Bytes> {
        self.out.map(BytesMut::freeze)
    }
}

/// What happened to one record inside [`edit_batch`].
enum Outcome {
    /// Not offered to the callback.
    Untouched,
    /// Kept; `changed` if any field differs, `retimed` if the timestamp does.
    Kept { changed: bool, retimed: bool },
    /// Removed.
    Dropped,
}

/// Runs the user's callback on one record and tells what it did.
fn apply(record: &mut Record, edit: &mut impl FnMut(&mut Record) -> Verdict) -> Outcome {
    let before = record.clone();
    match edit(record) {
        Verdict::Drop => Outcome::Dropped,
        Verdict::Keep => Outcome::Kept {
            changed: *record != before,
            retimed: record.timestamp != before.timestamp,
        },
    }
}

/// Decodes a batch, runs `step` on every record, and re-encodes it if anything changed.
/// A batch left without records stays as an empty batch with the same offset range.
fn edit_batch(
    batch: &RawBatch,
    step: &mut impl FnMut(&mut Record) -> Outcome,
) -> Result<Option<Bytes>, BatchError> {
    let mut decoded = decode_batch(batch)?;
    let mut changed = false;
    let mut retimed = false;
    decoded.records.retain_mut(|record| match step(record) {
        Outcome::Untouched => true,
        Outcome::Kept {
            changed: c,
            retimed: t,
        } => {
            changed |= c;
            retimed |= t;
            true
        }
        Outcome::Dropped => {
            changed = true;
            false
        }
    });
    if !changed {
        return Ok(None);
    }
    if retimed && decoded.header.timestamp_type() == TimestampType::CreateTime {
        if let Some(max) = decoded.records.iter().map(|r| r.timestamp).max() {
            decoded.header.max_timestamp = max;
        }
    }
    decoded.encode().map(Some)
}

/// The shared loop: offers each editable batch that `select` accepts to `step`.
fn rewrite_with(
    records: &Bytes,
    mut select: impl FnMut(&BatchHeader) -> bool,
    mut step: impl FnMut(&mut Record) -> Outcome,
) -> Result<Option<Bytes>, BatchError> {
    let mut rebuild = Rebuilder::new(records);
    let mut entries = Entries::new(records);
    loop {
        let at = entries.position();
        let Some(entry) = entries.next() else { break };
        let entry = entry?;
        let replacement = match entry.editable() {
            Some(batch) if batch.header.record_count != 0 && select(&batch.header) => {
                edit_batch(batch, &mut step)?
            }
            _ => None,
        };
        match replacement {
            Some(bytes) => rebuild.replace(at, &bytes),
            None => rebuild.keep(entry.bytes()),
        }
    }
    rebuild.keep(&entries.remainder());
    Ok(rebuild.finish())
}

/// Offers every record of every editable batch to `edit`, which may change it in place or
/// drop it. Returns the new record set, or `None` when nothing changed (forward the
/// original). A batch that fails to decode is an error.
pub fn rewrite(
    records: &Bytes,
    edit: impl FnMut(&mut Record) -> Verdict,
) -> Result<Option<Bytes>, BatchError> {
    rewrite_batches(records, |_| true, edit)
}

/// Like [`rewrite`], but batches whose header `select` refuses are neither decompressed
/// nor offered to `edit`.
pub fn rewrite_batches(
    records: &Bytes,
    select: impl FnMut(&BatchHeader) -> bool,
    mut edit: impl FnMut(&mut Record) -> Verdict,
) -> Result<Option<Bytes>, BatchError> {
    rewrite_with(records, select, |record| apply(record, &mut edit))
}

/// `offsets` sorted ascending, copying only when the caller's slice is not.
fn sorted(offsets: &[i64]) -> Cow<'_, [i64]> {
    if offsets.is_sorted() {
        Cow::Borrowed(offsets)
    } else {
        let mut owned = offsets.to_vec();
        owned.sort_unstable();
        Cow::Owned(owned)
    }
}

/// Whether any of the sorted `offsets` falls inside the batch.
fn batch_holds_any(header: &BatchHeader, offsets: &[i64]) -> bool {
    let first = offsets.partition_point(|&offset| offset < header.base_offset);
    offsets
        .get(first)
        .is_some_and(|&offset| offset <= header.last_offset())
}

/// Offers only the records at `offsets` to `edit`. Batches holding none of them are not
/// even decompressed. `offsets` need not be sorted.
pub fn rewrite_offsets(
    records: &Bytes,
    offsets: &[i64],
    mut edit: impl FnMut(&mut Record) -> Verdict,
) -> Result<Option<Bytes>, BatchError> {
    if offsets.is_empty() {
        return Ok(None);
    }
    let offsets = sorted(offsets);
    rewrite_with(
        records,
        |header| batch_holds_any(header, &offsets),
        |record| {
            if offsets.binary_search(&record.offset).is_ok() {
                apply(record, &mut edit)
            } else {
                Outcome::Untouched
            }
        },
    )
}

/// Removes the records at `offsets` (the quarantine's hide), keeping every batch's base
/// offset and last offset delta so the consumer moves past them.
pub fn hide_offsets(records: &Bytes, offsets: &[i64]) -> Result<Option<Bytes>, BatchError> {
    rewrite_offsets(records, offsets, |_| Verdict::Drop)
}
