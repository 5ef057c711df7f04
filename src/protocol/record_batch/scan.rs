//! Splitting a record set (the `records` field of a fetched partition) into batches
//! without decompressing anything: one header parse and one `Bytes` slice per batch.

use bytes::Bytes;

use super::header::{
    BatchHeader, CRC_COVERED_FROM, HEADER_SIZE, LAST_OFFSET_DELTA_POS, LOG_OVERHEAD, MAGIC_POS,
    MIN_V2_LENGTH,
};
use super::BatchError;

/// Smallest size a legacy (magic 0/1) message can declare, as Kafka checks it.
const MIN_LEGACY_LENGTH: usize = 14;
/// Position of the attributes byte of a legacy message.
const LEGACY_ATTRIBUTES_POS: usize = 17;

/// One complete v2 batch: its parsed header and its bytes, untouched.
#[derive(Debug, Clone)]
pub struct RawBatch {
    /// The parsed header.
    pub header: BatchHeader,
    /// The whole batch as it arrived, header included.
    pub bytes: Bytes,
}

impl RawBatch {
    /// Parses one whole batch; `bytes` must hold exactly the batch.
    pub fn new(bytes: Bytes) -> Result<RawBatch, BatchError> {
        let header = BatchHeader::parse(&bytes)?;
        if header.magic != 2 {
            return Err(BatchError::BadMagic {
                base_offset: header.base_offset,
                magic: header.magic,
            });
        }
        if header.batch_length < MIN_V2_LENGTH as i32 || header.total_size() != bytes.len() {
            return Err(BatchError::BadLength {
                base_offset: header.base_offset,
                length: header.batch_length,
            });
        }
        Ok(RawBatch { header, bytes })
    }

    /// The records section (compressed when the batch is), without copying.
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(HEADER_SIZE..)
    }

    /// Whether the stored CRC-32C matches the content.
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let computed = crc32c::crc32c(&self.bytes[CRC_COVERED_FROM..]);
        if computed == self.header.crc {
            Ok(())
        } else {
            Err(BatchError::CrcMismatch {
                base_offset: self.header.base_offset,
                stored: self.header.crc,
                computed,
            })
        }
    }

    /// Whether this codec may rebuild the batch (not a control batch).
    pub fn is_editable(&self) -> bool {
        self.header.is_editable()
    }
}

/// A legacy (magic 0 or 1) message or compressed wrapper message: passed through untouched.
#[derive(Debug, Clone)]
pub struct LegacyEntry {
    /// The entry's offset field: the message's offset, or for a compressed wrapper the
    /// offset of its last inner message.
    pub offset: i64,
    /// Magic byte (0 or 1).
    pub magic: i8,
    /// The whole entry as it arrived.
    pub bytes: Bytes,
}

impl LegacyEntry {
    /// Whether this is a compressed wrapper holding several inner messages.
    pub fn is_compressed_wrapper(&self) -> bool {
        self.bytes
            .get(LEGACY_ATTRIBUTES_POS)
            .is_some_and(|attributes| attributes & 0x07 != 0)
    }
}

/// One complete entry of a record set.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A v2 record batch (data or control).
    Batch(RawBatch),
    /// A legacy message set entry; never editable.
    Legacy(LegacyEntry),
}

impl Entry {
    /// The entry's bytes as they arrived.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Entry::Batch(batch) => &batch.bytes,
            Entry::Legacy(legacy) => &legacy.bytes,
        }
    }

    /// The batch, if this entry can be decoded and rebuilt by this codec.
    pub fn editable(&self) -> Option<&RawBatch> {
        match self {
            Entry::Batch(batch) if batch.is_editable() => Some(batch),
            _ => None,
        }
    }

    /// Last offset the entry covers.
    pub fn last_offset(&self) -> i64 {
        match self {
            Entry::Batch(batch) => batch.header.last_offset(),
            Entry::Legacy(legacy) => legacy.offset,
        }
    }
}

/// Iterator over the complete entries of a record set. Stops at the end or at a truncated
/// trailing batch, which [`Entries::remainder`] then returns. After an error it yields
/// nothing more.
#[derive(Debug, Clone)]
pub struct Entries {
    records: Bytes,
    pos: usize,
    failed: bool,
}

impl Entries {
    /// Iterates over `records`.
    pub fn new(records: &Bytes) -> Entries {
        Entries {
            records: records.clone(),
            pos: 0,
            failed: false,
        }
    }

    /// Byte position of the next entry in the record set.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not yielded yet: once the iterator is exhausted without error, the
    /// truncated trailing batch (empty when there is none).
    pub fn remainder(&self) -> Bytes {
        self.records.slice(self.pos..)
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, BatchError> {
        let rest = &self.records[self.pos..];
        if rest.len() < LOG_OVERHEAD {
            return Ok(None);
        }
        let base_offset = i64::from_be_bytes([
            rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], rest[7],
        ]);
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let bad_length = || BatchError::BadLength {
            base_offset,
            length,
        };
        let body = usize::try_from(length)
            .ok()
            .filter(|&body| body >= MIN_LEGACY_LENGTH)
            .ok_or_else(bad_length)?;
        let size = LOG_OVERHEAD + body;
        if rest.len() < size {
            return Ok(None);
        }
        let bytes = self.records.slice(self.pos..self.pos + size);
        let magic = bytes[MAGIC_POS] as i8;
        let entry = match magic {
            0 | 1 => Entry::Legacy(LegacyEntry {
                offset: base_offset,
                magic,
                bytes,
            }),
            2 if body >= MIN_V2_LENGTH => Entry::Batch(RawBatch::new(bytes)?),
            2 => return Err(bad_length()),
            _ => return Err(BatchError::BadMagic { base_offset, magic }),
        };
        self.pos += size;
        Ok(Some(entry))
    }
}

impl Iterator for Entries {
    type Item = Result<Entry, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_entry() {
            Ok(entry) => entry.map(Ok),
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// A record set split into its entries, with the truncated trailing batch kept aside.
#[derive(Debug, Clone, Default)]
pub struct RecordSetView {
    /// Complete entries, in order.
    pub entries: Vec<Entry>,
    /// A trailing partial batch cut by the fetch size limit, if any; forward it as it is.
    pub tail: Option<Bytes>,
}

impl RecordSetView {
    /// The v2 batches among the entries, control batches included.
    pub fn batches(&self) -> impl Iterator<Item = &RawBatch> {
        self.entries.iter().filter_map(|entry| match entry {
            Entry::Batch(batch) => Some(batch),
            Entry::Legacy(_) => None,
        })
    }

    /// Last offset covered by a complete entry, if any.
    pub fn last_offset(&self) -> Option<i64> {
        self.entries.last().map(Entry::last_offset)
    }
}

/// Splits a record set into entries and tail without decompressing or checking CRCs.
/// Cheap: one allocation for the entry list, none per record.
pub fn scan(records: &Bytes) -> Result<RecordSetView, BatchError> {
    let mut iter = Entries::new(records);
    let mut entries = Vec::new();
    for entry in iter.by_ref() {
        entries.push(entry?);
    }
    let rest = iter.remainder();
    Ok(RecordSetView {
        entries,
        tail: (!rest.is_empty()).then_some(rest),
    })
}

/// What can be read from the first bytes of a truncated trailing batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailInfo {
    /// Base offset, when the first 8 bytes are present.
    pub base_offset: Option<i64>,
    /// Last offset, when the tail is a v2 batch cut after its `lastOffsetDelta`.
    pub last_offset: Option<i64>,
}

/// Reads what is readable of a truncated trailing batch.
pub fn tail_info(tail: &[u8]) -> TailInfo {
    let base_offset = tail
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes);
    let last_offset = match (
        base_offset,
        tail.get(MAGIC_POS),
        tail.get(LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4),
    ) {
        (Some(base), Some(&2), Some(delta)) => <[u8; 4]>::try_from(delta)
            .ok()
            .map(|d| base.saturating_add(i64::from(i32::from_be_bytes(d)))),
        _ => None,
    };
    TailInfo {
        base_offset,
        last_offset,
    }
}
