//! The fixed 61-byte header of a record batch (magic v2), its attribute bits, and the
//! compression codec they name.

use std::fmt;

use bytes::BufMut;

use super::BatchError;

/// Bytes before `batchLength` counts: `baseOffset` (8) and `batchLength` (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the whole v2 batch header, up to and including `recordCount`.
pub const HEADER_SIZE: usize = 61;
/// Smallest `batchLength` a v2 batch can declare (the header without the first 12 bytes).
pub const MIN_V2_LENGTH: usize = HEADER_SIZE - LOG_OVERHEAD;
/// Position of the magic byte from the start of a batch.
pub const MAGIC_POS: usize = 16;
/// Position of the CRC from the start of a batch.
pub const CRC_POS: usize = 17;
/// Position where CRC-32C coverage starts (the attributes).
pub const CRC_COVERED_FROM: usize = 21;
/// Position of `lastOffsetDelta` from the start of a batch.
pub const LAST_OFFSET_DELTA_POS: usize = 23;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Compression codec of a batch, from bits 0-2 of its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records stored as they are.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Snappy, raw or in xerial framing.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// All codecs, in attribute order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec numbered `id` in the attributes, if there is one.
    pub fn from_id(id: u8) -> Option<Compression> {
        Compression::ALL.get(usize::from(id)).copied()
    }

    /// The codec's number in the attributes.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The name Kafka's `compression.type` uses.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What record timestamps mean, from bit 3 of the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer; each record carries its own.
    CreateTime,
    /// Set by the broker on append; every record's timestamp is the batch's `maxTimestamp`.
    LogAppendTime,
}

/// The fixed header of a v2 record batch, as found on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record slot of the batch.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field (header rest plus records).
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Record format version (2 for every batch this type describes).
    pub magic: i8,
    /// Stored CRC-32C of everything after the CRC field.
    pub crc: u32,
    /// Attribute bits (compression, timestamp type, transactional, control, delete horizon).
    pub attributes: i16,
    /// Last offset of the batch minus its base offset; survives record removal.
    pub last_offset_delta: i32,
    /// Timestamp records' deltas are relative to (or the delete horizon, when that bit is set).
    pub base_timestamp: i64,
    /// Largest record timestamp, or the log-append time.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records stored in the batch.
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(raw)
}

impl BatchHeader {
    /// Parses the header at the start of `bytes`. Checks only that the 61 bytes are
    /// present; the magic, length and CRC are the caller's to judge.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: bytes.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length: be_i32(bytes, 8),
            partition_leader_epoch: be_i32(bytes, 12),
            magic: bytes[MAGIC_POS] as i8,
            crc: be_i32(bytes, CRC_POS) as u32,
            attributes: be_i16(bytes, 21),
            last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA_POS),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, 35),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            record_count: be_i32(bytes, 57),
        })
    }

    /// Writes the header as it stands (length, CRC and count included) to `out`.
    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_i64(self.base_offset);
        out.put_i32(self.batch_length);
        out.put_i32(self.partition_leader_epoch);
        out.put_i8(self.magic);
        out.put_u32(self.crc);
        out.put_i16(self.attributes);
        out.put_i32(self.last_offset_delta);
        out.put_i64(self.base_timestamp);
        out.put_i64(self.max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(self.record_count);
    }

    /// Last offset the batch covers: `base_offset + last_offset_delta` (saturating on
    /// nonsense input).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Whether `offset` lies in `base_offset..=last_offset()`.
    pub fn covers(&self, offset: i64) -> bool {
        self.base_offset <= offset && offset <= self.last_offset()
    }

    /// Total size of the batch on the wire, from the declared length (0 if negative).
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// The compression codec, or an error for the undefined codecs 5-7.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        let id = (self.attributes & COMPRESSION_MASK) as u8;
        Compression::from_id(id).ok_or(BatchError::UnknownCompression {
            base_offset: self.base_offset,
            codec: id,
        })
    }

    /// What the record timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds transaction markers rather than data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether `base_timestamp` holds a delete horizon (compacted tombstones).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }

    /// Whether this codec may decode and rebuild the batch: magic 2 and not a control batch.
    pub fn is_editable(&self) -> bool {
        self.magic == 2 && !self.is_control()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchHeader {
        BatchHeader {
            base_offset: 1000,
            batch_length: 49,
            partition_leader_epoch: 7,
            magic: 2,
            crc: 0xdead_beef,
            attributes: 0,
            last_offset_delta: 4,
            base_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_004,
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 17,
            record_count: 5,
        }
    }

    #[test]
    fn write_then_parse_is_identity() {
        let header = sample();
        let mut out = Vec::new();
        header.write(&mut out);
        assert_eq!(out.len(), HEADER_SIZE);
        assert_eq!(BatchHeader::parse(&out).ok(), Some(header));
    }

    #[test]
    fn attribute_bits_are_read() {
        let cases: &[(i16, Compression, TimestampType, bool, bool, bool)] = &[
            (
                0x00,
                Compression::None,
                TimestampType::CreateTime,
                false,
                false,
                false,
            ),
            (
                0x01,
                Compression::Gzip,
                TimestampType::CreateTime,
                false,
                false,
                false,
            ),
            (
                0x0a,
                Compression::Snappy,
                TimestampType::LogAppendTime,
                false,
                false,
                false,
            ),
            (
                0x13,
                Compression::Lz4,
                TimestampType::CreateTime,
                true,
                false,
                false,
            ),
            (
                0x34,
                Compression::Zstd,
                TimestampType::CreateTime,
                true,
                true,
                false,
            ),
            (
                0x40,
                Compression::None,
                TimestampType::CreateTime,
                false,
                false,
                true,
            ),
        ];
        for &(attributes, codec, ts, txn, control, horizon) in cases {
            let header = BatchHeader {
                attributes,
                ..sample()
            };
            assert_eq!(header.compression().ok(), Some(codec), "{attributes:#x}");
            assert_eq!(header.timestamp_type(), ts, "{attributes:#x}");
            assert_eq!(header.is_transactional(), txn, "{attributes:#x}");
            assert_eq!(header.is_control(), control, "{attributes:#x}");
            assert_eq!(header.has_delete_horizon(), horizon, "{attributes:#x}");
            assert_eq!(header.is_editable(), !control, "{attributes:#x}");
        }
    }

    #[test]
    fn unknown_codecs_are_errors() {
        for id in 5..8 {
            let header = BatchHeader {
                attributes: id,
                ..sample()
            };
            assert!(matches!(
                header.compression(),
                Err(BatchError::UnknownCompression { codec, .. }) if i16::from(codec) == id
            ));
        }
    }

    #[test]
    fn offsets_and_sizes() {
        let header = sample();
        assert_eq!(header.last_offset(), 1004);
        assert!(header.covers(1000) && header.covers(1004));
        assert!(!header.covers(999) && !header.covers(1005));
        assert_eq!(header.total_size(), 61);
        let silly = BatchHeader {
            base_offset: i64::MAX,
            last_offset_delta: 9,
            batch_length: -3,
            ..sample()
        };
        assert_eq!(silly.last_offset(), i64::MAX);
        assert_eq!(silly.total_size(), LOG_OVERHEAD);
    }

    #[test]
    fn short_input_is_truncated() {
        assert!(matches!(
            BatchHeader::parse(&[0u8; 60]),
            Err(BatchError::Truncated {
                needed: 61,
                available: 60
            })
        ));
    }
}
