//! The one error type of the record-batch codec, with messages that say which batch and
//! which field went wrong.

use super::Compression;

/// Everything that can go wrong while scanning, decoding, encoding or rewriting record
/// batches. Corrupt input always ends in one of these, never in a panic.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a complete batch header (or declared batch) needs.
    #[error("record batch truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },

    /// A batch length that cannot describe any valid batch.
    #[error("record batch at offset {base_offset} declares an invalid length {length}")]
    BadLength {
        /// Base offset of the offending batch.
        base_offset: i64,
        /// The declared `batchLength`.
        length: i32,
    },

    /// A magic byte this codec does not know (only 0, 1 and 2 exist).
    #[error("record batch at offset {base_offset} has unknown magic {magic}")]
    BadMagic {
        /// Base offset of the offending batch.
        base_offset: i64,
        /// The magic byte found.
        magic: i8,
    },

    /// The stored CRC-32C does not match the batch content.
    #[error("record batch at offset {base_offset} fails its CRC: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// Base offset of the offending batch.
        base_offset: i64,
        /// CRC found in the batch header.
        stored: u32,
        /// CRC computed over the batch content.
        computed: u32,
    },

    /// Compression bits 5, 6 or 7 in the batch attributes.
    #[error("record batch at offset {base_offset} uses unknown compression codec {codec}")]
    UnknownCompression {
        /// Base offset of the offending batch.
        base_offset: i64,
        /// The three compression bits of the attributes.
        codec: u8,
    },

    /// The compressed payload could not be decompressed.
    #[error("{codec} decompression failed: {reason}")]
    Decompress {
        /// Codec named by the batch attributes.
        codec: Compression,
        /// What the decompressor said.
        reason: String,
    },

    /// The payload expands past [`super::MAX_DECOMPRESSED_BYTES`].
    #[error("{codec} payload expands past the {limit}-byte limit")]
    DecompressedTooLarge {
        /// Codec named by the batch attributes.
        codec: Compression,
        /// The limit that was hit.
        limit: usize,
    },

    /// The records could not be compressed again.
    #[error("{codec} compression failed: {reason}")]
    Compress {
        /// Codec the batch is re-encoded with.
        codec: Compression,
        /// What the compressor said.
        reason: String,
    },

    /// A varint that runs past its maximum length or past the end of the data.
    #[error("bad varint at byte {at} of the records: {reason}")]
    BadVarint {
        /// Position in the (decompressed) records where the varint starts.
        at: usize,
        /// `"truncated"` or `"too long"`.
        reason: &'static str,
    },

    /// A record whose fields do not fit its declared length, or are otherwise invalid.
    #[error("record {index} of batch at offset {base_offset} is malformed: {reason}")]
    BadRecord {
        /// Base offset of the batch holding the record.
        base_offset: i64,
        /// Position of the record in its batch, from 0.
        index: usize,
        /// What was wrong.
        reason: &'static str,
    },

    /// `recordCount` disagrees with the records actually present.
    #[error("record batch at offset {base_offset} declares {declared} records but {detail}")]
    RecordCount {
        /// Base offset of the offending batch.
        base_offset: i64,
        /// The declared `recordCount`.
        declared: i32,
        /// What was found instead.
        detail: &'static str,
    },

    /// Control batches and legacy message sets are passed through, never decoded or rebuilt.
    #[error("record batch at offset {base_offset} is not editable: {reason}")]
    NotEditable {
        /// Base offset of the batch.
        base_offset: i64,
        /// Why (control batch, legacy magic).
        reason: &'static str,
    },

    /// A record handed to the encoder lies outside the batch's offset range.
    #[error("record offset {offset} is outside batch range {base_offset}..={last_offset}")]
    OffsetOutOfRange {
        /// The record's offset.
        offset: i64,
        /// First offset of the batch.
        base_offset: i64,
        /// Last offset of the batch.
        last_offset: i64,
    },

    /// Records handed to the encoder are not in strictly increasing offset order.
    #[error("record offset {offset} does not follow {previous}: offsets must increase")]
    OffsetsNotIncreasing {
        /// The offending offset.
        offset: i64,
        /// The offset before it.
        previous: i64,
    },

    /// An encoded field or batch does not fit the protocol's 32-bit sizes.
    #[error("{what} is too large to encode ({size} bytes)")]
    TooLarge {
        /// Which field overflowed.
        what: &'static str,
        /// Its size.
        size: usize,
    },

    /// Trimming would have to cut inside a batch that cannot be rewritten.
    #[error("cannot trim at offset {last_offset}: it falls inside a {reason} spanning {base_offset}..={batch_last_offset}")]
    NotTrimmable {
        /// The requested last delivered offset.
        last_offset: i64,
        /// First offset of the batch in the way.
        base_offset: i64,
        /// Last offset of the batch in the way.
        batch_last_offset: i64,
        /// What kind of batch it is.
        reason: &'static str,
    },
}
