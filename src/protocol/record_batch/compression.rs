//! Decompressing and compressing the records section of a batch with the five Kafka
//! codecs. Snappy comes in two framings (xerial from the Java producer, raw blocks from
//! librdkafka); both are read and the one found is written back.

use std::io::{Read, Write};

use bytes::{BufMut, Bytes, BytesMut};

use super::{BatchError, Compression};

/// Largest decompressed records section accepted, to bound memory on hostile input.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// The 8-byte magic opening a xerial snappy stream.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Xerial stream header: magic, version 1, minimum compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Block size the Java producer's snappy stream uses.
const XERIAL_BLOCK: usize = 32 * 1024;
/// Kafka's default compression levels (gzip 6, zstd 3).
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// How a snappy payload is framed. Only meaningful for snappy batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnappyFraming {
    /// xerial `SnappyOutputStream` framing: 16-byte header, then length-prefixed blocks.
    /// What the Java producer writes.
    #[default]
    Xerial,
    /// One raw snappy block, as librdkafka writes it.
    Raw,
}

impl SnappyFraming {
    /// The framing of a snappy payload, told by its first bytes.
    pub fn detect(payload: &[u8]) -> SnappyFraming {
        if payload.starts_with(XERIAL_MAGIC) {
            SnappyFraming::Xerial
        } else {
            SnappyFraming::Raw
        }
    }
}

fn decompress_error(codec: Compression, reason: impl ToString) -> BatchError {
    BatchError::Decompress {
        codec,
        reason: reason.to_string(),
    }
}

fn compress_error(codec: Compression, reason: impl ToString) -> BatchError {
    BatchError::Compress {
        codec,
        reason: reason.to_string(),
    }
}

/// Reads a decompressing stream to its end, stopping at the size limit.
fn read_limited(codec: Compression, reader: impl Read, hint: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(hint.min(MAX_DECOMPRESSED_BYTES));
    reader
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| decompress_error(codec, e))?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(BatchError::DecompressedTooLarge {
            codec,
            limit: MAX_DECOMPRESSED_BYTES,
        });
    }
    Ok(out)
}

/// Decompresses the records section of a batch. For `Compression::None` this is a cheap
/// clone of `payload`.
pub(crate) fn decompress(codec: Compression, payload: &Bytes) -> Result<Bytes, BatchError> {
    let hint = payload.len().saturating_mul(4);
    let data = match codec {
        Compression::None => return Ok(payload.clone()),
        Compression::Gzip => {
            read_limited(codec, flate2::read::MultiGzDecoder::new(&payload[..]), hint)?
        }
        Compression::Lz4 => read_limited(
            codec,
            lz4_flex::frame::FrameDecoder::new(&payload[..]),
            hint,
        )?,
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(&payload[..])
                .map_err(|e| decompress_error(codec, e))?;
            read_limited(codec, decoder, hint)?
        }
        Compression::Snappy => match SnappyFraming::detect(payload) {
            SnappyFraming::Raw => snappy_raw_block(payload, 0)?,
            SnappyFraming::Xerial => snappy_xerial(payload)?,
        },
    };
    Ok(Bytes::from(data))
}

/// Decompresses one raw snappy block, appending to nothing; `already` counts bytes
/// decompressed before it, for the size limit.
fn snappy_raw_block(block: &[u8], already: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|e| decompress_error(codec, e))?;
    if already.saturating_add(len) > MAX_DECOMPRESSED_BYTES {
        return Err(BatchError::DecompressedTooLarge {
            codec,
            limit: MAX_DECOMPRESSED_BYTES,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|e| decompress_error(codec, e))
}

/// Decompresses a xerial stream: header, then `u32` big-endian length + raw block, repeated.
/// A second header in the middle (concatenated streams) is skipped, as xerial does.
fn snappy_xerial(payload: &[u8]) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Snappy;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        let rest = &payload[pos..];
        if rest.starts_with(XERIAL_MAGIC) {
            if rest.len() < XERIAL_HEADER.len() {
                return Err(decompress_error(codec, "truncated xerial header"));
            }
            pos += XERIAL_HEADER.len();
            continue;
        }
        let Some(len_bytes) = rest.get(..4) else {
            return Err(decompress_error(codec, "truncated xerial block length"));
        };
        let len =
            u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        let Some(block) = rest.get(4..4usize.saturating_add(len)) else {
            return Err(decompress_error(
                codec,
                "xerial block runs past the payload",
            ));
        };
        let data = snappy_raw_block(block, out.len())?;
        out.extend_from_slice(&data);
        pos += 4 + len;
    }
    Ok(out)
}

/// Compresses `data` with `codec` (and `framing`, for snappy), appending to `out`.
pub(crate) fn compress(
    codec: Compression,
    framing: SnappyFraming,
    data: &[u8],
    out: &mut BytesMut,
) -> Result<(), BatchError> {
    match codec {
        Compression::None => out.extend_from_slice(data),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(out.writer(), flate2::Compression::new(GZIP_LEVEL));
            encoder
                .write_all(data)
                .map_err(|e| compress_error(codec, e))?;
            encoder.finish().map_err(|e| compress_error(codec, e))?;
        }
        Compression::Lz4 => {
            // Independent 64 KiB blocks, no checksums: what Kafka's Java client writes and
            // the only block mode its reader supports.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out.writer());
            encoder
                .write_all(data)
                .map_err(|e| compress_error(codec, e))?;
            encoder.finish().map_err(|e| compress_error(codec, e))?;
        }
        Compression::Zstd => {
            zstd::stream::copy_encode(data, out.writer(), ZSTD_LEVEL)
                .map_err(|e| compress_error(codec, e))?;
        }
        Compression::Snappy => match framing {
            SnappyFraming::Raw => {
                snappy_raw_into(data, out)?;
            }
            SnappyFraming::Xerial => {
                out.extend_from_slice(XERIAL_HEADER);
                for chunk in data.chunks(XERIAL_BLOCK) {
                    let len_at = out.len();
                    out.put_u32(0);
                    let written = snappy_raw_into(chunk, out)?;
                    let len = u32::try_from(written)
                        .map_err(|_| compress_error(codec, "block too large"))?;
                    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
                }
            }
        },
    }
    Ok(())
}

/// Appends `data` as one raw snappy block; returns the block's size.
fn snappy_raw_into(data: &[u8], out: &mut BytesMut) -> Result<usize, BatchError> {
    let start = out.len();
    out.resize(start + snap::raw::max_compress_len(data.len()), 0);
    let written = snap::raw::Encoder::new()
        .compress(data, &mut out[start..])
        .map_err(|e| compress_error(Compression::Snappy, e))?;
    out.truncate(start + written);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"{\"user\":\"ada\",\"n\":"[i % 18] ^ (i / 97) as u8)
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let cases: &[(Compression, SnappyFraming)] = &[
            (Compression::None, SnappyFraming::Xerial),
            (Compression::Gzip, SnappyFraming::Xerial),
            (Compression::Snappy, SnappyFraming::Xerial),
            (Compression::Snappy, SnappyFraming::Raw),
            (Compression::Lz4, SnappyFraming::Xerial),
            (Compression::Zstd, SnappyFraming::Xerial),
        ];
        for &(codec, framing) in cases {
            for len in [0, 1, 1000, XERIAL_BLOCK, 3 * XERIAL_BLOCK + 17, 200_000] {
                let data = sample(len);
                let mut out = BytesMut::new();
                compress(codec, framing, &data, &mut out).expect("compress");
                if codec == Compression::Snappy {
                    assert_eq!(SnappyFraming::detect(&out), framing, "{codec} {len}");
                }
                let back = decompress(codec, &out.freeze()).expect("decompress");
                assert_eq!(&back[..], &data[..], "{codec} {framing:?} {len}");
            }
        }
    }

    #[test]
    fn garbage_names_the_codec() {
        let garbage =
            Bytes::from_static(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xffzz");
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            match decompress(codec, &garbage) {
                Err(BatchError::Decompress { codec: named, .. }) => assert_eq!(named, codec),
                other => panic!("{codec}: {other:?}"),
            }
        }
        let raw_garbage = Bytes::from_static(b"\xff\xff\xff\xff\x0f\x01\x02");
        assert!(matches!(
            decompress(Compression::Snappy, &raw_garbage),
            Err(BatchError::Decompress {
                codec: Compression::Snappy,
                ..
            }) | Err(BatchError::DecompressedTooLarge { .. })
        ));
    }

    #[test]
    fn oversized_snappy_claims_are_refused_before_allocating() {
        // A raw block that claims 2^32-1 bytes of output.
        let claim = Bytes::from_static(b"\xff\xff\xff\xff\x0f\x00");
        assert!(matches!(
            decompress(Compression::Snappy, &claim),
            Err(BatchError::DecompressedTooLarge { .. }) | Err(BatchError::Decompress { .. })
        ));
    }

    #[test]
    fn concatenated_xerial_streams_decode() {
        let mut out = BytesMut::new();
        compress(
            Compression::Snappy,
            SnappyFraming::Xerial,
            b"hello ",
            &mut out,
        )
        .expect("first");
        compress(
            Compression::Snappy,
            SnappyFraming::Xerial,
            b"world",
            &mut out,
        )
        .expect("second");
        let back = decompress(Compression::Snappy, &out.freeze()).expect("decompress");
        assert_eq!(&back[..], b"hello world");
    }
}
