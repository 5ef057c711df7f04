//! Record batches for the proxy's own produce and fetch, on top of the project's
//! `record_batch` codec (which keeps duplicate header keys and every codec).

use bytes::Bytes;

use crate::protocol::record::Record;
use crate::protocol::record_batch::{self, BatchHeader, Entry};

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

/// Encodes records as one uncompressed v2 batch for a Produce request. Offsets are
/// assigned here (relative offsets 0..n, no producer id); each record's timestamp is kept.
pub fn encode_records(records: &[Record]) -> Result<Bytes, CodecError> {
    let base_timestamp = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let renumbered: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as i64,
            ..r.clone()
        })
        .collect();
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: renumbered.len().saturating_sub(1) as i32,
        base_timestamp,
        max_timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: renumbered.len() as i32,
    };
    record_batch::encode_batch(&header, &renumbered).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes the record set of a fetch response. A trailing partial batch (the broker cuts
/// at `max_bytes`) is ignored; a malformed complete batch is an error. Entries of older
/// message formats are skipped.
pub fn decode_records(data: &Bytes) -> Result<Decoded, CodecError> {
    let view = record_batch::scan(data).map_err(|e| CodecError::Decode {
        offset: -1,
        message: e.to_string(),
    })?;
    let mut out = Decoded::default();
    for entry in &view.entries {
        out.next_offset = Some(entry.last_offset() + 1);
        let Entry::Batch(batch) = entry else { continue };
        if batch.header.is_control() {
            continue;
        }
        let records = record_batch::decode_records(batch).map_err(|e| CodecError::Decode {
            offset: batch.header.base_offset,
            message: e.to_string(),
        })?;
        out.records.extend(records);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record::Header;
    use bytes::{Buf, BytesMut};

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
