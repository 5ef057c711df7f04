//! Decoding one v2 batch into owned [`Record`]s and encoding records back into a batch
//! that keeps the original header: base offset, last offset delta, timestamps, producer
//! fields, attributes (so the compression codec) and leader epoch. Only the length, the
//! record count and the CRC are recomputed.

use bytes::{BufMut, Bytes, BytesMut};

use super::compression::{compress, decompress, SnappyFraming};
use super::header::{
    BatchHeader, Compression, CRC_COVERED_FROM, CRC_POS, HEADER_SIZE, LOG_OVERHEAD,
};
use super::record_wire::{decode_records as decode_section, encode_record};
use super::scan::RawBatch;
use super::BatchError;
use crate::protocol::record::Record;

/// A v2 batch decoded into records, with what is needed to encode it the same way again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// The header as it arrived.
    pub header: BatchHeader,
    /// The records, in offset order.
    pub records: Vec<Record>,
    /// Framing of the snappy payload (meaningless for other codecs).
    pub snappy_framing: SnappyFraming,
}

impl DecodedBatch {
    /// Encodes `self.records` under `self.header`, in the framing the batch arrived in.
    pub fn encode(&self) -> Result<Bytes, BatchError> {
        encode_batch_framed(&self.header, &self.records, self.snappy_framing)
    }
}

/// Checks the CRC, decompresses and decodes a batch. Control batches decode too (their
/// records are the transaction markers), but cannot be encoded again. A batch whose
/// record count is 0 yields no records without its payload being looked at.
pub fn decode_batch(batch: &RawBatch) -> Result<DecodedBatch, BatchError> {
    batch.verify_crc()?;
    let codec = batch.header.compression()?;
    let payload = batch.payload();
    let snappy_framing = match codec {
        Compression::Snappy => SnappyFraming::detect(&payload),
        _ => SnappyFraming::default(),
    };
    // An empty batch (what compaction leaves, or a fully hidden batch) is not
    // decompressed, as the Java client does not: its payload may be absent.
    let records = if batch.header.record_count == 0 {
        Vec::new()
    } else {
        decode_section(&decompress(codec, &payload)?, &batch.header)?
    };
    Ok(DecodedBatch {
        header: batch.header.clone(),
        records,
        snappy_framing,
    })
}

/// The records of a batch (see [`decode_batch`]).
pub fn decode_records(batch: &RawBatch) -> Result<Vec<Record>, BatchError> {
    decode_batch(batch).map(|decoded| decoded.records)
}

/// Encodes `records` as a batch under `header`, snappy in xerial framing (the Java
/// producer's). Prefer [`DecodedBatch::encode`] when rebuilding a fetched batch.
pub fn encode_batch(header: &BatchHeader, records: &[Record]) -> Result<Bytes, BatchError> {
    encode_batch_framed(header, records, SnappyFraming::Xerial)
}

/// Checks that records fit the batch's offset range in increasing order.
fn check_offsets(header: &BatchHeader, records: &[Record]) -> Result<(), BatchError> {
    let mut previous: Option<i64> = None;
    for record in records {
        if !header.covers(record.offset) {
            return Err(BatchError::OffsetOutOfRange {
                offset: record.offset,
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
            });
        }
        if let Some(previous) = previous.filter(|&p| p >= record.offset) {
            return Err(BatchError::OffsetsNotIncreasing {
                offset: record.offset,
                previous,
            });
        }
        previous = Some(record.offset);
    }
    Ok(())
}

/// Rough encoded size of the records, to size buffers once.
fn size_hint(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| {
            let headers: usize = r
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 4)
                .sum();
            r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())
                + headers
                + 16
        })
        .sum()
}

/// Encodes `records` as a batch under `header`, with the given snappy framing. Every
/// header field is written as given except `batch_length`, `crc` and `record_count`.
/// Record deltas are `offset - base_offset` and `timestamp - base_timestamp`.
/// Refuses control batches and non-v2 headers, and records outside the header's offset
/// range or out of order.
pub fn encode_batch_framed(
    header: &BatchHeader,
    records: &[Record],
    snappy_framing: SnappyFraming,
) -> Result<Bytes, BatchError> {
    if header.magic != 2 {
        return Err(BatchError::NotEditable {
            base_offset: header.base_offset,
            reason: "not a v2 batch",
        });
    }
    if header.is_control() {
        return Err(BatchError::NotEditable {
            base_offset: header.base_offset,
            reason: "control batch",
        });
    }
    let codec = header.compression()?;
    check_offsets(header, records)?;
    let record_count = i32::try_from(records.len()).map_err(|_| BatchError::TooLarge {
        what: "record count",
        size: records.len(),
    })?;

    let hint = size_hint(records);
    let mut out = BytesMut::with_capacity(HEADER_SIZE + hint);
    let draft = BatchHeader {
        batch_length: 0,
        crc: 0,
        record_count,
        ..header.clone()
    };
    draft.write(&mut out);
    if codec == Compression::None {
        for record in records {
            encode_record(&mut out, record, header.base_offset, header.base_timestamp)?;
        }
    } else {
        let mut plain = BytesMut::with_capacity(hint);
        for record in records {
            encode_record(
                &mut plain,
                record,
                header.base_offset,
                header.base_timestamp,
            )?;
        }
        compress(codec, snappy_framing, &plain, &mut out)?;
    }

    let length = out.len() - LOG_OVERHEAD;
    let length = i32::try_from(length).map_err(|_| BatchError::TooLarge {
        what: "record batch",
        size: length,
    })?;
    (&mut out[8..LOG_OVERHEAD]).put_i32(length);
    let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
    (&mut out[CRC_POS..CRC_COVERED_FROM]).put_u32(crc);
    Ok(out.freeze())
}
