//! One record of a v2 batch on the wire: varint-prefixed, deltas against the batch's base
//! offset and base timestamp, nullable key and value, and a list of headers.

use bytes::{BufMut, Bytes};

use super::header::{BatchHeader, TimestampType};
use super::varint::{put_varint, put_varlong, read_varint, read_varlong, varint_len, varlong_len};
use super::BatchError;
use crate::protocol::record::{Header, Record};

/// Smallest possible encoded record: length, attributes, two deltas, key, value, header
/// count, one byte each.
const MIN_RECORD_BYTES: usize = 7;

/// Decodes the `header.record_count` records of an uncompressed records section.
/// Keys, values and header values are slices of `data`, not copies.
pub(crate) fn decode_records(
    data: &Bytes,
    header: &BatchHeader,
) -> Result<Vec<Record>, BatchError> {
    let count_error = |detail| BatchError::RecordCount {
        base_offset: header.base_offset,
        declared: header.record_count,
        detail,
    };
    let count =
        usize::try_from(header.record_count).map_err(|_| count_error("the count is negative"))?;
    let mut records = Vec::with_capacity(count.min(data.len() / MIN_RECORD_BYTES));
    let mut pos = 0;
    for index in 0..count {
        if pos >= data.len() {
            return Err(count_error("the records end early"));
        }
        records.push(decode_record(data, &mut pos, header, index)?);
    }
    if pos != data.len() {
        return Err(count_error("bytes remain after the last record"));
    }
    Ok(records)
}

/// Reads a nullable length-prefixed byte string ending at or before `end`.
fn read_nullable(data: &Bytes, end: usize, pos: &mut usize) -> Result<Option<Bytes>, &'static str> {
    let len = read_varint(&data[..end], pos).map_err(|_| "bad length varint")?;
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    let stop = pos
        .checked_add(len)
        .filter(|&stop| stop <= end)
        .ok_or("field runs past the record")?;
    let bytes = data.slice(*pos..stop);
    *pos = stop;
    Ok(Some(bytes))
}

fn decode_record(
    data: &Bytes,
    pos: &mut usize,
    header: &BatchHeader,
    index: usize,
) -> Result<Record, BatchError> {
    let bad = |reason| BatchError::BadRecord {
        base_offset: header.base_offset,
        index,
        reason,
    };
    let length = read_varint(data, pos)?;
    let length = usize::try_from(length).map_err(|_| bad("negative length"))?;
    let end = pos
        .checked_add(length)
        .filter(|&end| end <= data.len())
        .ok_or_else(|| bad("length runs past the records"))?;
    let body = &data[..end];
    // Record attributes are unused in format v2.
    if *pos >= end {
        return Err(bad("missing attributes"));
    }
    *pos += 1;
    let timestamp_delta = read_varlong(body, pos)?;
    let offset_delta = read_varint(body, pos)?;
    let key = read_nullable(data, end, pos).map_err(bad)?;
    let value = read_nullable(data, end, pos).map_err(bad)?;
    let header_count = read_varint(body, pos)?;
    let header_count = usize::try_from(header_count).map_err(|_| bad("negative header count"))?;
    let mut headers = Vec::with_capacity(header_count.min(end.saturating_sub(*pos) / 2));
    for _ in 0..header_count {
        let key = read_nullable(data, end, pos)
            .map_err(bad)?
            .ok_or_else(|| bad("null header key"))?;
        let value = read_nullable(data, end, pos).map_err(bad)?;
        headers.push(Header {
            // Header keys are UTF-8 by the protocol; invalid bytes become U+FFFD, as the
            // Java client shows them.
            key: String::from_utf8_lossy(&key).into_owned(),
            value,
        });
    }
    if *pos != end {
        return Err(bad("fields do not fill the declared length"));
    }
    let offset = header
        .base_offset
        .checked_add(i64::from(offset_delta))
        .ok_or_else(|| bad("offset overflows"))?;
    let timestamp = match header.timestamp_type() {
        TimestampType::LogAppendTime => header.max_timestamp,
        TimestampType::CreateTime => header.base_timestamp.wrapping_add(timestamp_delta),
    };
    Ok(Record {
        offset,
        timestamp,
        key,
        value,
        headers,
    })
}

/// Encoded size of a nullable byte string with its length prefix.
fn nullable_len(field: Option<&[u8]>, what: &'static str) -> Result<usize, BatchError> {
    match field {
        None => Ok(1),
        Some(bytes) => {
            let len = i32::try_from(bytes.len()).map_err(|_| BatchError::TooLarge {
                what,
                size: bytes.len(),
            })?;
            Ok(varint_len(len) + bytes.len())
        }
    }
}

fn put_nullable(out: &mut impl BufMut, field: Option<&[u8]>) {
    match field {
        None => put_varint(out, -1),
        Some(bytes) => {
            // Lengths were checked by `body_len` before anything is written.
            put_varint(out, bytes.len() as i32);
            out.put_slice(bytes);
        }
    }
}

/// Size of a record after its length prefix.
fn body_len(record: &Record, timestamp_delta: i64, offset_delta: i32) -> Result<usize, BatchError> {
    let header_count = i32::try_from(record.headers.len()).map_err(|_| BatchError::TooLarge {
        what: "header count",
        size: record.headers.len(),
    })?;
    let mut len = 1
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + nullable_len(record.key.as_deref(), "record key")?
        + nullable_len(record.value.as_deref(), "record value")?
        + varint_len(header_count);
    for header in &record.headers {
        len += nullable_len(Some(header.key.as_bytes()), "header key")?;
        len += nullable_len(header.value.as_deref(), "header value")?;
    }
    Ok(len)
}

/// Appends one record, deltas computed against the batch's base offset and timestamp.
/// The caller has checked that `record.offset - base_offset` fits an `i32`.
pub(crate) fn encode_record(
    out: &mut impl BufMut,
    record: &Record,
    base_offset: i64,
    base_timestamp: i64,
) -> Result<(), BatchError> {
    let offset_delta = i32::try_from(record.offset.wrapping_sub(base_offset)).map_err(|_| {
        BatchError::OffsetOutOfRange {
            offset: record.offset,
            base_offset,
            last_offset: base_offset.saturating_add(i64::from(i32::MAX)),
        }
    })?;
    let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
    let len = body_len(record, timestamp_delta, offset_delta)?;
    let len = i32::try_from(len).map_err(|_| BatchError::TooLarge {
        what: "record",
        size: len,
    })?;
    put_varint(out, len);
    out.put_i8(0);
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_nullable(out, record.key.as_deref());
    put_nullable(out, record.value.as_deref());
    put_varint(out, record.headers.len() as i32);
    for header in &record.headers {
        put_nullable(out, Some(header.key.as_bytes()));
        put_nullable(out, header.value.as_deref());
    }
    Ok(())
}
