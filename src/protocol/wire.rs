//! The byte edge: request and response headers, a bounds-checked reader for the few client
//! requests the proxy looks inside, and typed decode/encode of broker responses.
//!
//! Client requests are parsed by hand with [`WireReader`], which refuses any length larger
//! than the bytes left, so a hostile frame can never make the proxy allocate more than the
//! frame itself. Broker responses are decoded with the `kafka-protocol` crate.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::edge::frame::PREFIX;

/// Why bytes could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than a field needs.
    #[error("{0} truncated")]
    Truncated(&'static str),
    /// A length field that cannot be right.
    #[error("bad length {len} for {what}")]
    BadLength {
        /// The field.
        what: &'static str,
        /// The value read.
        len: i64,
    },
    /// A string that is not UTF-8.
    #[error("{0} is not UTF-8")]
    Utf8(&'static str),
    /// The `kafka-protocol` crate refused the bytes.
    #[error("cannot decode {api:?} v{version}: {message}")]
    Decode {
        /// API of the message.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// What the decoder said.
        message: String,
    },
    /// The `kafka-protocol` crate could not encode a message.
    #[error("cannot encode {api:?} v{version}: {message}")]
    Encode {
        /// API of the message.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// What the encoder said.
        message: String,
    },
}

/// A bounds-checked cursor over a frame body.
pub struct WireReader<'a> {
    buf: &'a [u8],
}

impl<'a> WireReader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        WireReader { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// An `int8`.
    pub fn i8(&mut self, what: &'static str) -> Result<i8, WireError> {
        Ok(self.take(1, what)?[0] as i8)
    }
    /// An `int16`.
    pub fn i16(&mut self, what: &'static str) -> Result<i16, WireError> {
        Ok((&self.take(2, what)?[..]).get_i16())
    }
    /// An `int32`.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        Ok((&self.take(4, what)?[..]).get_i32())
    }
    /// An `int64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
        Ok((&self.take(8, what)?[..]).get_i64())
    }
    /// A 16-byte UUID.
    pub fn uuid(&mut self, what: &'static str) -> Result<[u8; 16], WireError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(self.take(16, what)?);
        Ok(id)
    }
    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), WireError> {
        self.take(n, what).map(|_| ())
    }

    /// An unsigned varint (as used by compact lengths and tagged fields).
    pub fn uvarint(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1, what)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::BadLength {
            what,
            len: value as i64,
        })
    }

    /// A length that must fit in what is left of the buffer (each item at least
    /// `min_item` bytes). `None` for a null (-1).
    fn checked_len(
        &self,
        len: i64,
        min_item: usize,
        what: &'static str,
    ) -> Result<Option<usize>, WireError> {
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || (len as u128) * (min_item.max(1) as u128) > self.buf.len() as u128 {
            return Err(WireError::BadLength { what, len });
        }
        Ok(Some(len as usize))
    }

    /// A string or nullable string; `compact` for flexible versions.
    pub fn string(
        &mut self,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<&'a str>, WireError> {
        let len = if compact {
            self.uvarint(what)? as i64 - 1
        } else {
            i64::from(self.i16(what)?)
        };
        match self.checked_len(len, 1, what)? {
            None => Ok(None),
            Some(n) => std::str::from_utf8(self.take(n, what)?)
                .map(Some)
                .map_err(|_| WireError::Utf8(what)),
        }
    }

    /// Bytes or nullable bytes; `compact` for flexible versions.
    pub fn bytes(
        &mut self,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<&'a [u8]>, WireError> {
        let len = if compact {
            self.uvarint(what)? as i64 - 1
        } else {
            i64::from(self.i32(what)?)
        };
        match self.checked_len(len, 1, what)? {
            None => Ok(None),
            Some(n) => self.take(n, what).map(Some),
        }
    }

    /// An array length (null reads as 0); each item needs at least `min_item` bytes.
    pub fn array_len(
        &mut self,
        compact: bool,
        min_item: usize,
        what: &'static str,
    ) -> Result<usize, WireError> {
        let len = if compact {
            self.uvarint(what)? as i64 - 1
        } else {
            i64::from(self.i32(what)?)
        };
        Ok(self.checked_len(len, min_item, what)?.unwrap_or(0))
    }

    /// Skips a tagged-field section (flexible versions).
    pub fn skip_tags(&mut self, what: &'static str) -> Result<(), WireError> {
        let n = self.uvarint(what)?;
        if n > self.buf.len() as u64 {
            return Err(WireError::BadLength {
                what,
                len: n as i64,
            });
        }
        for _ in 0..n {
            self.uvarint(what)?;
            let size = self.uvarint(what)?;
            let size = self.checked_len(size as i64, 1, what)?.unwrap_or(0);
            self.skip(size, what)?;
        }
        Ok(())
    }
}

/// The fixed start of every request: enough to route it and answer it.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// API key (may be one this proxy does not know).
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// The client's correlation id.
    pub correlation_id: i32,
    /// The client id (header v1+), if present and valid.
    pub client_id: Option<String>,
    /// Offset of the request body within the frame (prefix included), when the API is known.
    pub body_offset: Option<usize>,
}

impl RequestHead {
    /// The API, if this proxy knows its key.
    pub fn api(&self) -> Option<ApiKey> {
        ApiKey::try_from(self.api_key).ok()
    }
}

/// Reads the request header of a frame (prefix included).
pub fn request_head(frame: &[u8]) -> Result<RequestHead, WireError> {
    let mut r = WireReader::new(frame.get(PREFIX..).unwrap_or_default());
    let api_key = r.i16("request api key")?;
    let api_version = r.i16("request api version")?;
    let correlation_id = r.i32("correlation id")?;
    let api = ApiKey::try_from(api_key).ok();
    let header_version = api.map(|a| a.request_header_version(api_version));
    // Header v0 (only ControlledShutdown v0) has no client id.
    let mut client_id = None;
    if header_version != Some(0) && r.remaining() >= 2 {
        client_id = r.string(false, "client id")?.map(str::to_owned);
    }
    let mut body_offset = None;
    if let Some(hv) = header_version {
        if hv >= 2 {
            r.skip_tags("request header tags")?;
        }
        body_offset = Some(frame.len() - r.remaining());
    }
    Ok(RequestHead {
        api_key,
        api_version,
        correlation_id,
        client_id,
        body_offset,
    })
}

/// Byte range of the correlation id in a request frame (prefix included).
pub const REQUEST_CORRELATION: std::ops::Range<usize> = 8..12;
/// Byte range of the correlation id in a response frame (prefix included).
pub const RESPONSE_CORRELATION: std::ops::Range<usize> = 4..8;

/// Overwrites the correlation id of a frame in place.
pub fn set_correlation(frame: &mut [u8], range: std::ops::Range<usize>, id: i32) {
    frame[range].copy_from_slice(&id.to_be_bytes());
}

/// The length of the tagged-field section at the front of `buf`, or `None` while it is
/// not all there (or not well formed).
pub fn tagged_fields_len(buf: &[u8]) -> Option<usize> {
    let mut r = WireReader::new(buf);
    let count = r.uvarint("tag count").ok()?;
    for _ in 0..count {
        r.uvarint("tag").ok()?;
        let size = r.uvarint("tag size").ok()?;
        r.skip(usize::try_from(size).ok()?, "tag").ok()?;
    }
    Some(buf.len() - r.remaining())
}

/// Reads the correlation id of a response frame.
pub fn response_correlation(frame: &[u8]) -> Result<i32, WireError> {
    WireReader::new(frame.get(PREFIX..).unwrap_or_default()).i32("response correlation id")
}

/// Decodes a response frame (prefix included) of a known API and version.
pub fn decode_response<T: Decodable>(
    frame: &[u8],
    api: ApiKey,
    version: i16,
) -> Result<(ResponseHeader, T), WireError> {
    let mut buf = Bytes::copy_from_slice(&frame[PREFIX.min(frame.len())..]);
    let err = |e: anyhow::Error| WireError::Decode {
        api,
        version,
        message: e.to_string(),
    };
    let header =
        ResponseHeader::decode(&mut buf, api.response_header_version(version)).map_err(err)?;
    let body = T::decode(&mut buf, version).map_err(err)?;
    Ok((header, body))
}

/// Encodes a response (header and body) into a frame with its size prefix.
pub fn encode_response<T: Encodable>(
    header: &ResponseHeader,
    body: &T,
    api: ApiKey,
    version: i16,
) -> Result<BytesMut, WireError> {
    encode_frame(
        header,
        api.response_header_version(version),
        body,
        api,
        version,
    )
}

/// Encodes a request (header and body) into a frame with its size prefix.
pub fn encode_request<T: Encodable>(
    header: &kafka_protocol::messages::RequestHeader,
    body: &T,
    api: ApiKey,
) -> Result<BytesMut, WireError> {
    let version = header.request_api_version;
    encode_frame(
        header,
        api.request_header_version(version),
        body,
        api,
        version,
    )
}

fn encode_frame<H: Encodable, T: Encodable>(
    header: &H,
    header_version: i16,
    body: &T,
    api: ApiKey,
    version: i16,
) -> Result<BytesMut, WireError> {
    let err = |e: anyhow::Error| WireError::Encode {
        api,
        version,
        message: e.to_string(),
    };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    header.encode(&mut out, header_version).map_err(err)?;
    body.encode(&mut out, version).map_err(err)?;
    let size = (out.len() - PREFIX) as i32;
    out[..PREFIX].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn reads_request_heads_of_known_and_unknown_apis() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(12)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("app-1")));
        let frame = encode_request(&header, &MetadataRequest::default(), ApiKey::Metadata).unwrap();
        let head = request_head(&frame).unwrap();
        assert_eq!(
            (head.api_key, head.api_version, head.correlation_id),
            (3, 12, 42)
        );
        assert_eq!(head.client_id.as_deref(), Some("app-1"));
        // v12 is flexible: header v2 ends with an empty tag section.
        assert_eq!(head.body_offset, Some(4 + 2 + 2 + 4 + 2 + 5 + 1));

        let mut unknown = frame.clone();
        unknown[4..6].copy_from_slice(&999i16.to_be_bytes());
        let head = request_head(&unknown).unwrap();
        assert_eq!(head.api(), None);
        assert_eq!(head.body_offset, None);
        assert_eq!(head.client_id.as_deref(), Some("app-1"));
    }

    #[test]
    fn hostile_lengths_are_refused_not_allocated() {
        let body = [0x7f, 0xff, 0xff, 0xff, 0, 0];
        let mut r = WireReader::new(&body);
        assert!(matches!(
            r.array_len(false, 4, "topics"),
            Err(WireError::BadLength { .. })
        ));
        let mut r = WireReader::new(&[0x00, 0x10, b'a']);
        assert!(r.string(false, "s").is_err());
        let mut r = WireReader::new(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert!(r.uvarint("v").is_err());
        assert!(request_head(&[0, 0, 0, 3, 0, 1, 0]).is_err());
    }
}
