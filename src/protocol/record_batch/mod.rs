//! Kafka record batches (record format v2) as pure functions over bytes.
//!
//! A fetched partition's `records` field is a record set: batches back to back, maybe
//! ending in a partial batch cut by the fetch size limit. [`scan`] splits it without
//! decompressing; [`decode_batch`] / [`DecodedBatch::encode`] turn one batch into
//! [`Record`](crate::protocol::record::Record)s and back under the original header and codec;
//! [`rewrite`], [`rewrite_offsets`] and [`hide_offsets`] remove or edit records, and
//! [`trim_after`] cuts a record set at an offset. Rewrites keep each batch's base offset
//! and last offset delta, so consumers step over removed records; untouched batches,
//! control batches, legacy (magic 0/1) entries and a truncated tail are copied byte for
//! byte.

mod codec;
mod compression;
mod error;
mod header;
mod record_wire;
mod rewrite;
mod scan;
mod trim;
mod varint;

#[cfg(test)]
pub(crate) mod tests;

pub use codec::{decode_batch, decode_records, encode_batch, encode_batch_framed, DecodedBatch};
pub use compression::{SnappyFraming, MAX_DECOMPRESSED_BYTES};
pub use error::BatchError;
pub use header::{BatchHeader, Compression, TimestampType, HEADER_SIZE, LOG_OVERHEAD};
pub use rewrite::{hide_offsets, rewrite, rewrite_batches, rewrite_offsets, Verdict};
pub use scan::{scan, tail_info, Entries, Entry, LegacyEntry, RawBatch, RecordSetView, TailInfo};
pub use trim::{deliver_nothing, trim_after};
