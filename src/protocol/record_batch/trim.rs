//! Cutting a record set so the last offset delivered is exactly a given one (isolation:
//! stop a consumer just before a suspect record).

use bytes::Bytes;

use super::codec::decode_batch;
use super::rewrite::Rebuilder;
use super::scan::{tail_info, Entries, Entry, RawBatch};
use super::BatchError;

/// Rewrites the batch holding `last_offset` so it ends there: records after it removed,
/// `lastOffsetDelta = last_offset - base_offset`.
fn cut_batch(batch: &RawBatch, last_offset: i64) -> Result<Bytes, BatchError> {
    let mut decoded = decode_batch(batch)?;
    decoded
        .records
        .retain(|record| record.offset <= last_offset);
    // `last_offset` lies inside the batch, so the new delta is below the old one.
    decoded.header.last_offset_delta = i32::try_from(last_offset - decoded.header.base_offset)
        .map_err(|_| BatchError::NotTrimmable {
            last_offset,
            base_offset: batch.header.base_offset,
            batch_last_offset: batch.header.last_offset(),
            reason: "batch with an inconsistent header",
        })?;
    decoded.encode()
}

/// Cuts `records` so that the last offset delivered is `last_offset`: entries entirely
/// after it are dropped, the batch containing it is rewritten to end at it. Returns
/// `None` when nothing needed cutting, and an empty record set when everything was after
/// `last_offset`. A truncated tail is kept only when it provably ends at or before
/// `last_offset`. Control batches and legacy compressed wrappers cannot be cut inside;
/// that is a [`BatchError::NotTrimmable`].
pub fn trim_after(records: &Bytes, last_offset: i64) -> Result<Option<Bytes>, BatchError> {
    let mut rebuild = Rebuilder::new(records);
    let mut entries = Entries::new(records);
    loop {
        let at = entries.position();
        let Some(entry) = entries.next() else { break };
        let entry = entry?;
        if entry.last_offset() <= last_offset {
            rebuild.keep(entry.bytes());
            continue;
        }
        match &entry {
            Entry::Batch(batch) if batch.header.base_offset > last_offset => rebuild.drop_entry(at),
            Entry::Batch(batch) if batch.is_editable() => {
                rebuild.replace(at, &cut_batch(batch, last_offset)?)
            }
            Entry::Batch(batch) => {
                return Err(BatchError::NotTrimmable {
                    last_offset,
                    base_offset: batch.header.base_offset,
                    batch_last_offset: batch.header.last_offset(),
                    reason: "control batch",
                })
            }
            Entry::Legacy(legacy) if legacy.is_compressed_wrapper() => {
                return Err(BatchError::NotTrimmable {
                    last_offset,
                    base_offset: legacy.offset,
                    batch_last_offset: legacy.offset,
                    reason: "legacy compressed message set",
                })
            }
            Entry::Legacy(_) => rebuild.drop_entry(at),
        }
    }
    let at = entries.position();
    let tail = entries.remainder();
    if !tail.is_empty() {
        match tail_info(&tail).last_offset {
            Some(end) if end <= last_offset => rebuild.keep(&tail),
            _ => rebuild.drop_entry(at),
        }
    }
    Ok(rebuild.finish())
}

/// The record set that delivers nothing (isolation before the first fetched record).
pub fn deliver_nothing() -> Bytes {
    Bytes::new()
}
