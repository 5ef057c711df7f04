//! Reads a Fetch response while it streams past: what the watcher needs (each partition's
//! error and the offsets of its record batches) without holding the response.
//!
//! [`FetchScanner`] is fed the response body (after the response header) from the front,
//! as bytes arrive. Each [`FetchScanner::step`] looks at the bytes buffered so far and
//! says what the caller does next: pass a structural piece through, skip (pass through
//! unread) part of a partition's records, wait for more bytes, or replace a piece with
//! bytes of the same length. Only small pieces are ever needed at once (a batch header is
//! 61 bytes), so a response of any size streams through a small buffer.
//!
//! Versions 4 to 17 are read. In v16+, `node_endpoints` (KIP-951) name real brokers and
//! cannot be rewritten once the length prefix is sent; the scanner renumbers that tagged
//! field to a tag no client reads (same length), so a client learns a moved leader through
//! Metadata instead, as before KIP-951.

use super::consumer_requests::TopicRef;

/// Lowest Fetch version the scanner reads (v4 brought record batches' transactional
/// fields into the response and is what every maintained client sends at least).
pub const MIN_VERSION: i16 = 4;
/// Highest Fetch version the scanner reads.
pub const MAX_VERSION: i16 = 17;

/// The tag `node_endpoints` is renumbered to: clients skip tags they do not know.
const HIDDEN_TAG: u8 = 0x7f;

/// Where one record batch of a partition's records sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    /// First offset of the batch.
    pub base_offset: i64,
    /// Last offset of the batch.
    pub last_offset: i64,
    /// Records in the batch (as the header says).
    pub records: i32,
    /// A control batch (transaction markers).
    pub control: bool,
}

/// What the scanner learned about one partition of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedPartition {
    /// The topic, by name (v4–12) or id (v13+).
    pub topic: TopicRef,
    /// Partition index.
    pub partition: i32,
    /// Partition-level error code.
    pub error_code: i16,
    /// The complete batches, in order (a partial batch at the end is not listed).
    pub batches: Vec<BatchSpan>,
}

/// What to do with the next bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Forward the next `n` bytes; the scanner has read them.
    Pass(usize),
    /// Forward the next `n` bytes unread (they may not be buffered yet).
    Skip(usize),
    /// At least `n` bytes must be buffered before the next step.
    Need(usize),
    /// Forward these bytes instead of the next ones (same length).
    Replace(Vec<u8>),
    /// The response is read; nothing of it is left.
    Done,
}

/// A response that is not a Fetch response of the version it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed fetch response: {0}")]
pub struct ScanError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Top,
    Topic {
        topics_left: usize,
    },
    Partition {
        topics_left: usize,
        parts_left: usize,
    },
    Aborted {
        topics_left: usize,
        parts_left: usize,
        left: usize,
    },
    AfterAborted {
        topics_left: usize,
        parts_left: usize,
    },
    RecordsLen {
        topics_left: usize,
        parts_left: usize,
    },
    Batch {
        topics_left: usize,
        parts_left: usize,
        left: usize,
    },
    BatchBody {
        topics_left: usize,
        parts_left: usize,
        left: usize,
        body: usize,
    },
    PartitionTags {
        topics_left: usize,
        parts_left: usize,
    },
    TopicTags {
        topics_left: usize,
    },
    TopLevelTags,
    TagBody {
        left: usize,
    },
    Done,
}

/// Reads a Fetch response body as it streams; see the module docs.
#[derive(Debug)]
pub struct FetchScanner {
    version: i16,
    flexible: bool,
    state: State,
    topic: Option<TopicRef>,
    partitions: Vec<ScannedPartition>,
    tags_left: usize,
}

/// A cursor over the buffered bytes that fails with `Need` when they run out.
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Not enough bytes buffered: the caller needs this many.
struct Short(usize);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos + n;
        if end > self.buf.len() {
            return Err(Short(end));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn i16(&mut self) -> Result<i16, Short> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, Short> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, Short> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn uvarint(&mut self) -> Result<Result<u32, ScanError>, Short> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Ok(value));
            }
        }
        Ok(Err(ScanError("varint longer than 5 bytes")))
    }
}

/// Reads a step's fields: `Short` becomes `Step::Need`, a bad value an error.
macro_rules! field {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(Short(n)) => return Ok(Step::Need(n)),
        }
    };
}

macro_rules! varint {
    ($c:expr) => {
        field!($c.uvarint())?
    };
}

impl FetchScanner {
    /// A scanner for a response of this version; `None` for versions it does not read.
    pub fn new(version: i16) -> Option<FetchScanner> {
        (MIN_VERSION..=MAX_VERSION)
            .contains(&version)
            .then(|| FetchScanner {
                version,
                flexible: version >= 12,
                state: State::Top,
                topic: None,
                partitions: Vec::new(),
                tags_left: 0,
            })
    }

    /// What was learned so far (all of it once [`Step::Done`] was returned).
    pub fn partitions(&self) -> &[ScannedPartition] {
        &self.partitions
    }

    /// Takes what was learned.
    pub fn into_partitions(self) -> Vec<ScannedPartition> {
        self.partitions
    }

    /// The next step over `buf`, the bytes buffered from the current position on. After
    /// `Pass(n)`/`Replace` the caller drops `n` bytes from the front; after `Skip(n)` it
    /// forwards `n` bytes as they come.
    pub fn step(&mut self, buf: &[u8]) -> Result<Step, ScanError> {
        let mut c = Cur { buf, pos: 0 };
        let f = self.flexible;
        match self.state {
            State::Top => {
                field!(c.i32()); // throttle time
                if self.version >= 7 {
                    field!(c.i16()); // error code
                    field!(c.i32()); // session id
                }
                let topics = self.array_len(&mut c)?;
                let topics = field!(topics);
                self.state = self.next_topic(topics);
            }
            State::Topic { topics_left } => {
                let topic = if self.version >= 13 {
                    let id: [u8; 16] = field!(c.take(16)).try_into().expect("16 bytes");
                    TopicRef::Id(id)
                } else {
                    let len = if f {
                        let n = varint!(c);
                        n.checked_sub(1).ok_or(ScanError("null topic name"))? as usize
                    } else {
                        let n = field!(c.i16());
                        usize::try_from(n).map_err(|_| ScanError("null topic name"))?
                    };
                    let name = field!(c.take(len));
                    TopicRef::Name(
                        std::str::from_utf8(name)
                            .map_err(|_| ScanError("topic name is not UTF-8"))?
                            .to_string(),
                    )
                };
                let parts = self.array_len(&mut c)?;
                let parts = field!(parts);
                self.topic = Some(topic);
                self.state = self.next_partition(topics_left, parts);
            }
            State::Partition {
                topics_left,
                parts_left,
            } => {
                let partition = field!(c.i32());
                let error_code = field!(c.i16());
                field!(c.i64()); // high watermark
                field!(c.i64()); // last stable offset
                if self.version >= 5 {
                    field!(c.i64()); // log start offset
                }
                let aborted = if f {
                    varint!(c).saturating_sub(1) as usize
                } else {
                    field!(c.i32()).max(0) as usize
                };
                self.partitions.push(ScannedPartition {
                    topic: self
                        .topic
                        .clone()
                        .ok_or(ScanError("partition before topic"))?,
                    partition,
                    error_code,
                    batches: Vec::new(),
                });
                self.state = if aborted > 0 {
                    State::Aborted {
                        topics_left,
                        parts_left,
                        left: aborted,
                    }
                } else {
                    State::AfterAborted {
                        topics_left,
                        parts_left,
                    }
                };
            }
            State::Aborted {
                topics_left,
                parts_left,
                left,
            } => {
                field!(c.i64()); // producer id
                field!(c.i64()); // first offset
                if f {
                    field!(read_tags(&mut c)?);
                }
                self.state = if left > 1 {
                    State::Aborted {
                        topics_left,
                        parts_left,
                        left: left - 1,
                    }
                } else {
                    State::AfterAborted {
                        topics_left,
                        parts_left,
                    }
                };
            }
            State::AfterAborted {
                topics_left,
                parts_left,
            } => {
                if self.version >= 11 {
                    field!(c.i32()); // preferred read replica
                }
                self.state = State::RecordsLen {
                    topics_left,
                    parts_left,
                };
            }
            State::RecordsLen {
                topics_left,
                parts_left,
            } => {
                let len = if f {
                    varint!(c).saturating_sub(1) as usize
                } else {
                    field!(c.i32()).max(0) as usize
                };
                self.state = State::Batch {
                    topics_left,
                    parts_left,
                    left: len,
                };
            }
            State::Batch {
                topics_left,
                parts_left,
                left,
            } => {
                if left == 0 {
                    self.state = if f {
                        State::PartitionTags {
                            topics_left,
                            parts_left,
                        }
                    } else {
                        self.after_partition(topics_left, parts_left)
                    };
                    return Ok(Step::Pass(0));
                }
                // A batch header: offset 8, length 4, leader epoch 4, magic 1, crc 4,
                // attributes 2, last offset delta 4, timestamps 16, producer 8+2,
                // sequence 4, record count 4 = 61 bytes.
                const HEADER: usize = 61;
                if left < 12 {
                    return Ok(self.skip_rest(topics_left, parts_left, left));
                }
                let base_offset = field!(c.i64());
                let length = field!(c.i32());
                let total = usize::try_from(length)
                    .unwrap_or(usize::MAX)
                    .saturating_add(12);
                if length < 0 || total > left {
                    // A partial batch at the end (the broker cut at its size limit).
                    return Ok(self.skip_rest_after(topics_left, parts_left, left, 12));
                }
                field!(c.i32()); // partition leader epoch
                let magic = field!(c.take(1))[0];
                if magic < 2 {
                    if total < 17 {
                        return Err(ScanError("message shorter than its header"));
                    }
                    // A v0/v1 message set entry: its offset is the last inner offset.
                    self.push_batch(BatchSpan {
                        base_offset,
                        last_offset: base_offset,
                        records: 1,
                        control: false,
                    });
                    return Ok(self.after_header(topics_left, parts_left, left, total, 17));
                }
                if total < HEADER {
                    return Err(ScanError("record batch shorter than its header"));
                }
                field!(c.i32()); // crc
                let attributes = field!(c.i16());
                let last_delta = field!(c.i32());
                field!(c.take(8 + 8 + 8 + 2 + 4)); // timestamps, producer, sequence
                let records = field!(c.i32());
                self.push_batch(BatchSpan {
                    base_offset,
                    last_offset: base_offset.saturating_add(i64::from(last_delta)),
                    records,
                    control: attributes & 0x20 != 0,
                });
                return Ok(self.after_header(topics_left, parts_left, left, total, HEADER));
            }
            State::BatchBody {
                topics_left,
                parts_left,
                left,
                body,
            } => {
                self.state = State::Batch {
                    topics_left,
                    parts_left,
                    left,
                };
                return Ok(Step::Skip(body));
            }
            State::PartitionTags {
                topics_left,
                parts_left,
            } => {
                field!(read_tags(&mut c)?);
                self.state = self.after_partition(topics_left, parts_left);
            }
            State::TopicTags { topics_left } => {
                field!(read_tags(&mut c)?);
                self.state = self.next_topic(topics_left);
            }
            State::TopLevelTags => {
                let count = varint!(c) as usize;
                let head = c.pos;
                if count == 0 {
                    self.state = State::Done;
                    return Ok(Step::Pass(c.pos));
                }
                // Read each tag's number and size; a node_endpoints field (tag 0) is
                // renumbered. Bodies are skipped as they come.
                let tag_at = c.pos;
                let tag = varint!(c);
                let size = varint!(c) as usize;
                self.tags_left = count - 1;
                self.state = State::TagBody { left: size };
                if tag == 0 && self.version >= 16 && c.pos - tag_at == 2 {
                    let mut bytes = buf[..c.pos].to_vec();
                    bytes[tag_at] = HIDDEN_TAG;
                    let _ = head;
                    return Ok(Step::Replace(bytes));
                }
                return Ok(Step::Pass(c.pos));
            }
            State::TagBody { left } => {
                if left > 0 {
                    self.state = State::TagBody { left: 0 };
                    return Ok(Step::Skip(left));
                }
                if self.tags_left == 0 {
                    self.state = State::Done;
                    return Ok(Step::Pass(0));
                }
                let tag_at = c.pos;
                let tag = varint!(c);
                let size = varint!(c) as usize;
                self.tags_left -= 1;
                self.state = State::TagBody { left: size };
                if tag == 0 && self.version >= 16 && c.pos - tag_at == 2 {
                    let mut bytes = buf[..c.pos].to_vec();
                    bytes[tag_at] = HIDDEN_TAG;
                    return Ok(Step::Replace(bytes));
                }
                return Ok(Step::Pass(c.pos));
            }
            State::Done => return Ok(Step::Done),
        }
        Ok(Step::Pass(c.pos))
    }

    fn array_len(&self, c: &mut Cur<'_>) -> Result<Result<usize, Short>, ScanError> {
        if self.flexible {
            match c.uvarint() {
                Ok(Ok(n)) => Ok(Ok(n.saturating_sub(1) as usize)),
                Ok(Err(e)) => Err(e),
                Err(s) => Ok(Err(s)),
            }
        } else {
            Ok(c.i32().map(|n| n.max(0) as usize))
        }
    }

    fn next_topic(&self, topics_left: usize) -> State {
        if topics_left == 0 {
            if self.flexible {
                State::TopLevelTags
            } else {
                State::Done
            }
        } else {
            State::Topic {
                topics_left: topics_left - 1,
            }
        }
    }

    fn next_partition(&self, topics_left: usize, parts_left: usize) -> State {
        if parts_left == 0 {
            if self.flexible {
                State::TopicTags { topics_left }
            } else {
                self.next_topic(topics_left)
            }
        } else {
            State::Partition {
                topics_left,
                parts_left: parts_left - 1,
            }
        }
    }

    fn after_partition(&self, topics_left: usize, parts_left: usize) -> State {
        self.next_partition(topics_left, parts_left)
    }

    fn push_batch(&mut self, span: BatchSpan) {
        if let Some(p) = self.partitions.last_mut() {
            p.batches.push(span);
        }
    }

    /// After a batch header of `read` bytes: the rest of the batch is skipped.
    fn after_header(
        &mut self,
        topics_left: usize,
        parts_left: usize,
        left: usize,
        total: usize,
        read: usize,
    ) -> Step {
        self.state = State::BatchBody {
            topics_left,
            parts_left,
            left: left - total,
            body: total - read,
        };
        Step::Pass(read)
    }

    /// The rest of the records is a partial batch: skip it.
    fn skip_rest(&mut self, topics_left: usize, parts_left: usize, left: usize) -> Step {
        self.state = State::BatchBody {
            topics_left,
            parts_left,
            left: 0,
            body: 0,
        };
        Step::Skip(left)
    }

    /// Like [`Self::skip_rest`] after `read` bytes of it were read.
    fn skip_rest_after(
        &mut self,
        topics_left: usize,
        parts_left: usize,
        left: usize,
        read: usize,
    ) -> Step {
        self.state = State::BatchBody {
            topics_left,
            parts_left,
            left: 0,
            body: left - read,
        };
        Step::Pass(read)
    }
}

/// Reads a whole tagged-field section (partition, topic and aborted-transaction tags carry
/// a few dozen bytes), all or nothing.
fn read_tags(c: &mut Cur<'_>) -> Result<Result<(), Short>, ScanError> {
    let count = match c.uvarint() {
        Ok(r) => r?,
        Err(s) => return Ok(Err(s)),
    };
    for _ in 0..count {
        match c.uvarint() {
            Ok(r) => r?,
            Err(s) => return Ok(Err(s)),
        };
        let size = match c.uvarint() {
            Ok(r) => r?,
            Err(s) => return Ok(Err(s)),
        };
        if let Err(s) = c.take(size as usize) {
            return Ok(Err(s));
        }
    }
    Ok(Ok(()))
}

/// Runs a scanner over a whole body arriving `chunk` bytes at a time, the way the proxy
/// streams it; returns the bytes forwarded. For tests of the scanner and its callers.
#[cfg(test)]
pub(crate) fn stream_through(
    scanner: &mut FetchScanner,
    body: &[u8],
    chunk: usize,
) -> Result<Vec<u8>, ScanError> {
    let mut out = Vec::with_capacity(body.len());
    let mut arrived = chunk.min(body.len());
    let mut pos = 0;
    loop {
        let step = scanner.step(&body[pos..arrived])?;
        match step {
            Step::Pass(n) => {
                out.extend_from_slice(&body[pos..pos + n]);
                pos += n;
            }
            Step::Replace(bytes) => {
                out.extend_from_slice(&bytes);
                pos += bytes.len();
            }
            Step::Skip(n) => {
                if pos + n > body.len() {
                    return Err(ScanError("skip past the end"));
                }
                out.extend_from_slice(&body[pos..pos + n]);
                pos += n;
                arrived = arrived.max(pos);
            }
            Step::Need(n) => {
                if pos + n > body.len() {
                    return Err(ScanError("needs bytes past the end"));
                }
                assert!(arrived - pos < n, "asked for bytes it has");
                arrived = (arrived + chunk).min(body.len()).max(pos + n);
            }
            Step::Done => {
                if pos != body.len() {
                    return Err(ScanError("done before the end"));
                }
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, FetchResponse, ProducerId, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    use super::*;
    use crate::protocol::record_batch::tests::support::{
        batch, concat, control_batch, legacy_message, CODECS,
    };

    fn records() -> Bytes {
        let (codec, framing) = CODECS[1];
        let mut last = batch(codec, framing, 100, 5).to_vec();
        last.truncate(last.len() - 7); // a partial batch at the end
        concat(&[
            &batch(CODECS[0].0, CODECS[0].1, 90, 10),
            &control_batch(100),
            &batch(codec, framing, 101, 3),
            &Bytes::from(last),
        ])
    }

    fn response(version: i16) -> FetchResponse {
        let part = |i: i32, recs: Option<Bytes>| {
            let mut p = PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(500)
                .with_last_stable_offset(400)
                .with_records(recs);
            if version >= 5 {
                p = p.with_log_start_offset(3);
            }
            if i == 1 {
                p = p.with_aborted_transactions(Some(vec![
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(7))
                        .with_first_offset(95),
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(8))
                        .with_first_offset(96),
                ]));
            }
            if version >= 12 && i == 2 {
                p = p.with_error_code(6).with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(3))
                        .with_leader_epoch(9),
                );
            }
            p
        };
        let topic = |name: &str, id: u8| {
            let t = FetchableTopicResponse::default().with_partitions(vec![
                part(0, Some(records())),
                part(1, Some(Bytes::new())),
                part(2, None),
            ]);
            if version >= 13 {
                t.with_topic_id(uuid::Uuid::from_bytes([id; 16]))
            } else {
                t.with_topic(TopicName(StrBytes::from_string(name.to_string())))
            }
        };
        let mut r = FetchResponse::default()
            .with_throttle_time_ms(1)
            .with_responses(vec![topic("orders", 1), topic("payments.v2", 2)]);
        if version >= 7 {
            r = r.with_session_id(77);
        }
        if version >= 16 {
            r = r.with_node_endpoints(vec![NodeEndpoint::default()
                .with_node_id(BrokerId(3))
                .with_host(StrBytes::from_static_str("broker-3.internal"))
                .with_port(9092)]);
        }
        r
    }

    fn encode(r: &FetchResponse, version: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        r.encode(&mut b, version).unwrap();
        b.to_vec()
    }

    #[test]
    fn reads_every_version_in_any_chunking_and_forwards_the_same_bytes() {
        for version in MIN_VERSION..=MAX_VERSION {
            let r = response(version);
            let body = encode(&r, version);
            for chunk in [1, 2, 7, 61, 64, 4096, body.len()] {
                let mut s = FetchScanner::new(version).unwrap();
                let out = stream_through(&mut s, &body, chunk)
                    .unwrap_or_else(|e| panic!("v{version} chunk {chunk}: {e}"));
                assert_eq!(out.len(), body.len(), "v{version}");
                let parts = s.into_partitions();
                assert_eq!(parts.len(), 6, "v{version}");
                let spans: Vec<(i64, i64, bool)> = parts[0]
                    .batches
                    .iter()
                    .map(|b| (b.base_offset, b.last_offset, b.control))
                    .collect();
                assert_eq!(
                    spans,
                    vec![(90, 99, false), (100, 100, true), (101, 103, false)],
                    "v{version}"
                );
                assert!(parts[1].batches.is_empty() && parts[2].batches.is_empty());
                if version >= 13 {
                    assert_eq!(parts[3].topic, TopicRef::Id([2; 16]));
                } else {
                    assert_eq!(parts[3].topic, TopicRef::Name("payments.v2".into()));
                }
                assert_eq!(parts[5].partition, 2);
                if version >= 12 {
                    assert_eq!(parts[5].error_code, 6);
                }
                let back = FetchResponse::decode(&mut Bytes::from(out.clone()), version).unwrap();
                if version >= 16 {
                    // The real broker address never reaches the client.
                    assert!(back.node_endpoints.is_empty(), "v{version}");
                    assert!(
                        !out.windows(17).any(|w| w == b"broker-3.internal") || {
                            // The bytes are still there, under a tag clients skip.
                            back.unknown_tagged_fields
                                .contains_key(&i32::from(HIDDEN_TAG))
                        }
                    );
                    let mut expect = r.clone();
                    expect.node_endpoints.clear();
                    assert_eq!(back.responses, expect.responses);
                } else {
                    assert_eq!(out, body, "v{version}");
                    assert_eq!(back, r);
                }
            }
        }
    }

    #[test]
    fn legacy_message_sets_name_their_last_offset() {
        let version = 4;
        let recs = concat(&[&legacy_message(5, b"a", 0), &legacy_message(6, b"b", 0)]);
        let r = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![PartitionData::default().with_records(Some(recs))])]);
        let body = encode(&r, version);
        let mut s = FetchScanner::new(version).unwrap();
        assert_eq!(stream_through(&mut s, &body, 3).unwrap(), body);
        let offsets: Vec<i64> = s.partitions()[0]
            .batches
            .iter()
            .map(|b| b.last_offset)
            .collect();
        assert_eq!(offsets, vec![5, 6]);
    }

    #[test]
    fn garbage_is_an_error_or_a_need_never_a_panic() {
        let body = encode(&response(12), 12);
        for cut in 0..body.len() {
            let mut s = FetchScanner::new(12).unwrap();
            // A body cut short asks for more bytes than there are.
            assert!(stream_through(&mut s, &body[..cut], 5).is_err());
        }
        let mut rng = 0x9e37_79b9_u32;
        for _ in 0..2000 {
            let mut bytes = body.clone();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                let i = rng as usize % bytes.len();
                bytes[i] ^= (rng >> 8) as u8;
            }
            let mut s = FetchScanner::new(12).unwrap();
            let _ = stream_through(&mut s, &bytes, 16);
        }
        assert!(FetchScanner::new(3).is_none() && FetchScanner::new(18).is_none());
    }
}
