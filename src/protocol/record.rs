//! One Kafka record as the policy code sees it: decoded, owned, and independent of the
//! batch and the wire format it came in.
//!
//! Detection, transforms, checks and dead-letter writing all take and return this type;
//! only `record_batch` turns it into bytes and back.

use bytes::Bytes;

/// A record header. Kafka allows the same key more than once, so headers are a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key, UTF-8 by the protocol's definition.
    pub key: String,
    /// Header value; `None` is a null value, distinct from an empty one.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// One record of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset in the partition.
    pub offset: i64,
    /// Timestamp in milliseconds (create time or log-append time, as the batch says).
    pub timestamp: i64,
    /// Record key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Record value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Record headers in their original order.
    pub headers: Vec<Header>,
}

impl Record {
    /// The first header with this key, if any.
    pub fn header(&self, key: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.key == key)
    }

    /// Whether the record is a tombstone (null value).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}
