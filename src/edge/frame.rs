//! Kafka framing: a 4-byte big-endian size, then that many bytes.
//!
//! [`FrameReader`] reads whole frames from one side of a connection. A frame is returned
//! with its size prefix still in front, so a frame that passes through unchanged is written
//! out as the very bytes that came in. A negative or oversized size is an error (a TLS
//! ClientHello on a plaintext port reads as a size of about 369 MB), and so is a stream that
//! ends inside a frame; a stream that ends between frames is a clean `None`.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of the length prefix.
pub const PREFIX: usize = 4;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    Negative(i32),
    /// The size prefix is over the configured limit.
    #[error("frame size {size} is over the limit of {max} bytes{hint}")]
    TooLarge {
        /// The announced size.
        size: usize,
        /// The configured limit.
        max: usize,
        /// A guess at what the peer really sent, or empty.
        hint: &'static str,
    },
    /// The peer closed the stream in the middle of a frame.
    #[error("connection closed mid-frame ({have} of {want} bytes)")]
    Truncated {
        /// Bytes received of the frame (prefix included).
        have: usize,
        /// Bytes the frame needed (prefix included).
        want: usize,
    },
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads frames from one stream, reusing one buffer.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream; `max` is the largest frame body accepted.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
            max,
        }
    }

    /// The next whole frame (prefix included), or `None` at a clean end of stream.
    pub async fn read_frame(&mut self) -> Result<Option<BytesMut>, FrameError> {
        loop {
            if let Some(want) = self.complete_frame_len()? {
                return Ok(Some(self.buf.split_to(want)));
            }
            if let Some(want) = self.announced_len() {
                // Read straight into a buffer big enough for the rest of the frame.
                if self.buf.capacity() < want {
                    self.buf.reserve(want - self.buf.len());
                }
            } else if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Truncated {
                    have: self.buf.len(),
                    want: self.announced_len().unwrap_or(PREFIX),
                });
            }
        }
    }

    /// Waits until the next frame's size prefix and `head` more bytes (or the whole frame,
    /// when it is shorter) are buffered, and returns the frame's size (prefix excluded),
    /// validated as [`Self::read_frame`] does; `None` at a clean end of stream. Nothing is
    /// consumed: the frame is then read whole, or streamed through [`Self::buffer`] and
    /// [`Self::fill`].
    pub async fn peek(&mut self, head: usize) -> Result<Option<usize>, FrameError> {
        loop {
            if self.buf.len() >= PREFIX {
                // Validates the size (negative, over the limit).
                self.complete_frame_len()?;
                let size = self.announced_len().expect("prefix buffered") - PREFIX;
                if self.buf.len() >= PREFIX + head.min(size) {
                    return Ok(Some(size));
                }
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Truncated {
                    have: self.buf.len(),
                    want: self.announced_len().unwrap_or(PREFIX),
                });
            }
        }
    }

    /// The bytes buffered and not handed out, from the front of the current frame.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Reads what the peer has sent next into the buffer, at most 64 KiB more than is
    /// buffered; `false` at end of stream.
    pub async fn fill(&mut self) -> Result<bool, FrameError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
        Ok(self.inner.read_buf(&mut self.buf).await? > 0)
    }

    /// Bytes already buffered beyond the frames handed out (for a switch to raw relaying).
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    fn announced_len(&self) -> Option<usize> {
        if self.buf.len() < PREFIX {
            return None;
        }
        let size = (&self.buf[..PREFIX]).get_i32();
        usize::try_from(size).ok().map(|s| s + PREFIX)
    }

    fn complete_frame_len(&self) -> Result<Option<usize>, FrameError> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        let size = (&self.buf[..PREFIX]).get_i32();
        if size < 0 {
            return Err(FrameError::Negative(size));
        }
        let size = size as usize;
        if size > self.max {
            let hint = if self.buf[0] == 0x16 && self.buf[1] == 0x03 {
                " (this looks like a TLS handshake on a plaintext port)"
            } else if self.buf[..PREFIX].iter().all(u8::is_ascii_graphic) {
                " (this looks like text, not Kafka protocol)"
            } else {
                ""
            };
            return Err(FrameError::TooLarge {
                size,
                max: self.max,
                hint,
            });
        }
        Ok((self.buf.len() >= size + PREFIX).then_some(size + PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn frames(input: Vec<u8>, max: usize) -> (Vec<BytesMut>, Option<FrameError>) {
        let (mut w, r) = tokio::io::duplex(7); // tiny pipe: frames arrive in pieces
        tokio::spawn(async move {
            let _ = w.write_all(&input).await;
        });
        let mut reader = FrameReader::new(r, max);
        let mut out = Vec::new();
        loop {
            match reader.read_frame().await {
                Ok(Some(f)) => out.push(f),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn splits_frames_arriving_in_pieces() {
        let mut input = frame(b"hello");
        input.extend(frame(b""));
        input.extend(frame(&[7u8; 3000]));
        let (got, err) = frames(input, 1 << 20).await;
        assert!(err.is_none());
        assert_eq!(got.len(), 3);
        assert_eq!(&got[0][..], &frame(b"hello")[..]);
        assert_eq!(got[1].len(), 4);
        assert_eq!(got[2].len(), 3004);
    }

    #[tokio::test]
    async fn rejects_bad_sizes_and_truncation() {
        let (_, err) = frames((-5i32).to_be_bytes().to_vec(), 1024).await;
        assert!(matches!(err, Some(FrameError::Negative(-5))));

        let (_, err) = frames(frame(&[0u8; 2048]), 1024).await;
        assert!(matches!(err, Some(FrameError::TooLarge { size: 2048, .. })));

        // A TLS ClientHello starts 16 03 01 ...
        let (_, err) = frames(vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01], 1 << 20).await;
        let msg = err.unwrap().to_string();
        assert!(msg.contains("TLS"), "{msg}");

        let mut input = frame(b"ok");
        input.extend(&frame(b"cut short")[..8]);
        let (got, err) = frames(input, 1024).await;
        assert_eq!(got.len(), 1);
        assert!(matches!(
            err,
            Some(FrameError::Truncated { have: 8, want: 13 })
        ));
    }
}
