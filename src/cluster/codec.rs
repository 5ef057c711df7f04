//! Record batches for the proxy's own produce and fetch, behind two functions so the
//! `kafka-protocol` crate's codec can be swapped for the project's own `record_batch`
//! module later without touching the callers.
//!
//! Limitation of this stand-in: `kafka-protocol` keeps headers in a map, so a record with
//! the same header key twice keeps only the last value on encode.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::record::{Header, Record};

/// Why records could not be turned into a batch or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed.
    #[error("cannot encode a record batch: {0}")]
    Encode(String),
    /// A batch in a fetch response could not be read.
    #[error("cannot decode the record batch at offset {offset}: {message}")]
    Decode {
        /// Base offset of the batch.
        offset: i64,
        /// What went wrong.
        message: String,
    },
}

/// Records decoded from a fetch response's record set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Data records in offset order (control records left out).
    pub records: Vec<Record>,
    /// The offset after the last complete batch, if there was one; a reader continues
    /// here even when every record of the batch was a control record.
    pub next_offset: Option<i64>,
}

/// Encodes records as one uncompressed v2 batch for a Produce request. Offsets and
/// sequence numbers are assigned here (relative offsets 0..n, no producer id); each
/// record's timestamp is kept.
pub fn encode_records(records: &[Record]) -> Result<Bytes, CodecError> {
    let converted: Vec<kafka_protocol::records::Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut headers = IndexMap::with_capacity(r.headers.len());
            for h in &r.headers {
                headers.insert(StrBytes::from_string(h.key.clone()), h.value.clone());
            }
            kafka_protocol::records::Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch while offset - sequence is
                // constant; this makes the base sequence -1 (none).
                sequence: (i as i32).wrapping_sub(1),
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &converted,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

/// Size of a batch's offset and length fields.
const LOG_OVERHEAD: usize = 12;
/// Smallest v2 batch header, after the offset and length fields.
const MIN_BATCH_BODY: usize = 49;

/// Decodes the record set of a fetch response. A trailing partial batch (the broker cuts
/// at `max_bytes`) is ignored; a malformed complete batch is an error. Batches of older
/// message formats are skipped.
pub fn decode_records(data: &Bytes) -> Result<Decoded, CodecError> {
    let mut rest = data.clone();
    let mut out = Decoded::default();
    while rest.len() >= LOG_OVERHEAD {
        let base = (&rest[0..8]).get_i64();
        let len = (&rest[8..12]).get_i32();
        let bad = |message: String| CodecError::Decode {
            offset: base,
            message,
        };
        let Ok(len) = usize::try_from(len) else {
            return Err(bad(format!("negative batch length {len}")));
        };
        if rest.len() < LOG_OVERHEAD + len {
            break;
        }
        let mut batch = rest.split_to(LOG_OVERHEAD + len);
        let magic = batch.get(16).copied().unwrap_or(0);
        if magic != 2 {
            out.next_offset = Some(base + 1);
            continue;
        }
        if len < MIN_BATCH_BODY {
            return Err(bad(format!("batch length {len} is too short")));
        }
        let last_delta = (&batch[23..27]).get_i32();
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| bad(e.to_string()))?;
        out.next_offset = Some(base + i64::from(last_delta) + 1);
        out.records
            .extend(set.records.into_iter().filter(|r| !r.control).map(|r| {
                Record {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| Header {
                            key: k.to_string(),
                            value: v,
                        })
                        .collect(),
                }
            }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i64) -> Record {
        Record {
            offset: 100 + i,
            timestamp: 1_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: (i != 1).then(|| Bytes::from(format!("v{i}"))),
            headers: vec![Header::new("h", format!("{i}"))],
        }
    }

    #[test]
    fn round_trips_as_one_batch_with_relative_offsets() {
        let records: Vec<Record> = (0..3).map(rec).collect();
        let bytes = encode_records(&records).unwrap();
        // One batch: its length field covers everything after the first 12 bytes.
        let len = (&bytes[8..12]).get_i32() as usize;
        assert_eq!(len + 12, bytes.len());
        let decoded = decode_records(&bytes).unwrap();
        assert_eq!(decoded.next_offset, Some(3));
        for (i, r) in decoded.records.iter().enumerate() {
            let mut want = rec(i as i64);
            want.offset = i as i64;
            assert_eq!(r, &want);
        }
    }

    #[test]
    fn a_partial_trailing_batch_is_ignored() {
        let a = encode_records(&[rec(0)]).unwrap();
        let b = encode_records(&[rec(1), rec(2)]).unwrap();
        let mut both = BytesMut::from(&a[..]);
        both.extend_from_slice(&b[..b.len() - 5]);
        let decoded = decode_records(&both.freeze()).unwrap();
        assert_eq!(decoded.records.len(), 1);
        assert_eq!(decoded.next_offset, Some(1));
        assert_eq!(decode_records(&Bytes::new()).unwrap(), Decoded::default());
    }

    #[test]
    fn a_corrupt_batch_is_an_error_not_a_panic() {
        let mut bytes = BytesMut::from(&encode_records(&[rec(0)]).unwrap()[..]);
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        assert!(decode_records(&bytes.freeze()).is_err());
        let mut short = BytesMut::new();
        short.extend_from_slice(&0i64.to_be_bytes());
        short.extend_from_slice(&20i32.to_be_bytes());
        short.extend_from_slice(&[0u8; 4]);
        short.extend_from_slice(&[2u8]);
        short.extend_from_slice(&[0u8; 15]);
        assert!(decode_records(&short.freeze()).is_err());
        let mut negative = BytesMut::new();
        negative.extend_from_slice(&0i64.to_be_bytes());
        negative.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_records(&negative.freeze()).is_err());
    }
}
