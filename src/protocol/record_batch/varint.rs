//! Zigzag varints and varlongs as Kafka's record format v2 writes them (protobuf style:
//! seven bits a byte, low bits first, sign folded into bit 0).

use bytes::BufMut;

use super::BatchError;

/// Longest encoding of a 32-bit varint.
const MAX_VARINT_BYTES: usize = 5;
/// Longest encoding of a 64-bit varlong.
const MAX_VARLONG_BYTES: usize = 10;

/// Reads an unsigned LEB128 value of at most `max_bytes` bytes at `*pos`, advancing `*pos`.
fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, BatchError> {
    let start = *pos;
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let Some(&byte) = buf.get(start + i) else {
            return Err(BatchError::BadVarint {
                at: start,
                reason: "truncated",
            });
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *pos = start + i + 1;
            return Ok(value);
        }
    }
    Err(BatchError::BadVarint {
        at: start,
        reason: "too long",
    })
}

/// Reads a zigzag varint (i32) at `*pos`, advancing `*pos`.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, BatchError> {
    // Bits past the 32nd are dropped, as the Java client does.
    let raw = read_unsigned(buf, pos, MAX_VARINT_BYTES)? as u32;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (i64) at `*pos`, advancing `*pos`.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
    let raw = read_unsigned(buf, pos, MAX_VARLONG_BYTES)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn zigzag32(value: i32) -> u64 {
    u64::from(((value << 1) ^ (value >> 31)) as u32)
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn put_unsigned(out: &mut impl BufMut, mut raw: u64) {
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

fn unsigned_len(raw: u64) -> usize {
    let bits = 64 - raw.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends `value` as a zigzag varint.
pub(crate) fn put_varint(out: &mut impl BufMut, value: i32) {
    put_unsigned(out, zigzag32(value));
}

/// Appends `value` as a zigzag varlong.
pub(crate) fn put_varlong(out: &mut impl BufMut, value: i64) {
    put_unsigned(out, zigzag64(value));
}

/// Encoded length of `value` as a zigzag varint.
pub(crate) fn varint_len(value: i32) -> usize {
    unsigned_len(zigzag32(value))
}

/// Encoded length of `value` as a zigzag varlong.
pub(crate) fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_with_the_expected_length() {
        let cases: &[(i32, usize)] = &[
            (0, 1),
            (-1, 1),
            (1, 1),
            (63, 1),
            (-64, 1),
            (64, 2),
            (-65, 2),
            (8191, 2),
            (8192, 3),
            (i32::MAX, 5),
            (i32::MIN, 5),
        ];
        for &(value, len) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), len, "length of {value}");
            assert_eq!(varint_len(value), len, "computed length of {value}");
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos).ok(), Some(value));
            assert_eq!(pos, len);
        }
    }

    #[test]
    fn varlong_round_trips_with_the_expected_length() {
        let cases: &[(i64, usize)] = &[
            (0, 1),
            (-1, 1),
            (300, 2),
            (1_700_000_000_000, 6),
            (i64::MAX, 10),
            (i64::MIN, 10),
        ];
        for &(value, len) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), len, "length of {value}");
            assert_eq!(varlong_len(value), len, "computed length of {value}");
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos).ok(), Some(value));
            assert_eq!(pos, len);
        }
    }

    #[test]
    fn known_encodings_match_kafka() {
        // Values from the Kafka protocol guide: zigzag maps -1 to 1 and 1 to 2.
        let cases: &[(i32, &[u8])] = &[
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (150, &[0xac, 0x02]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "encoding of {value}");
        }
    }

    #[test]
    fn bad_varints_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "truncated"),
            (&[0x80], "truncated"),
            (&[0xff, 0xff, 0xff, 0xff], "truncated"),
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], "too long"),
        ];
        for &(bytes, expected) in cases {
            let mut pos = 0;
            match read_varint(bytes, &mut pos) {
                Err(BatchError::BadVarint { reason, .. }) => {
                    assert_eq!(reason, expected, "{bytes:?}")
                }
                other => panic!("{bytes:?} gave {other:?}"),
            }
        }
        let mut pos = 0;
        let eleven = [0xffu8; 11];
        assert!(matches!(
            read_varlong(&eleven, &mut pos),
            Err(BatchError::BadVarint {
                reason: "too long",
                ..
            })
        ));
    }
}
