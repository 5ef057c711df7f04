//! The client requests the consumer watcher looks inside, parsed by hand with the bounded
//! [`WireReader`]: Fetch positions, OffsetCommit offsets, and the group and member ids of
//! group-membership requests. Only the fields the watcher needs are read; the request
//! itself is always forwarded as its original bytes.

use kafka_protocol::messages::ApiKey;

use crate::protocol::wire::{WireError, WireReader};

/// A topic as a request names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    /// By name (Fetch up to v12, OffsetCommit).
    Name(String),
    /// By topic id (Fetch v13+).
    Id([u8; 16]),
}

/// One partition a Fetch request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPosition {
    /// Topic.
    pub topic: TopicRef,
    /// Partition index.
    pub partition: i32,
    /// The offset the consumer asks for: its position.
    pub offset: i64,
}

/// What a Fetch request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchRequestView {
    /// How long the broker may hold the request when there is no data, in milliseconds.
    pub max_wait_ms: i32,
    /// Fetch session epoch (KIP-227): 0 or -1 is a full fetch, higher is incremental.
    pub session_epoch: i32,
    /// Partitions and positions (for an incremental fetch, only the changed ones).
    pub positions: Vec<FetchPosition>,
    /// Partitions an incremental fetch removes from its session.
    pub forgotten: Vec<(TopicRef, i32)>,
}

/// The partitions and offsets of a Fetch request (v4+).
pub fn fetch_positions(body: &[u8], version: i16) -> Result<FetchRequestView, WireError> {
    let flexible = version >= 12;
    let mut r = WireReader::new(body);
    if version <= 14 {
        r.i32("replica id")?;
    }
    let max_wait_ms = r.i32("max wait")?;
    r.skip(4 + 4 + 1, "fetch limits")?; // min_bytes, max_bytes, isolation
    let mut session_epoch = -1;
    if version >= 7 {
        r.skip(4, "fetch session id")?;
        session_epoch = r.i32("fetch session epoch")?;
    }
    let topics = r.array_len(flexible, 2, "fetch topics")?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let topic = if version >= 13 {
            TopicRef::Id(r.uuid("topic id")?)
        } else {
            TopicRef::Name(r.string(flexible, "topic")?.unwrap_or_default().to_string())
        };
        let partitions = r.array_len(flexible, 16, "fetch partitions")?;
        for _ in 0..partitions {
            let partition = r.i32("partition")?;
            if version >= 9 {
                r.skip(4, "leader epoch")?;
            }
            let offset = r.i64("fetch offset")?;
            if version >= 12 {
                r.skip(4, "last fetched epoch")?;
            }
            if version >= 5 {
                r.skip(8, "log start offset")?;
            }
            r.skip(4, "partition max bytes")?;
            if flexible {
                r.skip_tags("partition tags")?;
            }
            out.push(FetchPosition {
                topic: topic.clone(),
                partition,
                offset,
            });
        }
        if flexible {
            r.skip_tags("topic tags")?;
        }
    }
    let mut forgotten = Vec::new();
    if version >= 7 {
        let topics = r.array_len(flexible, 2, "forgotten topics")?;
        for _ in 0..topics {
            let topic = if version >= 13 {
                TopicRef::Id(r.uuid("topic id")?)
            } else {
                TopicRef::Name(r.string(flexible, "topic")?.unwrap_or_default().to_string())
            };
            let partitions = r.array_len(flexible, 4, "forgotten partitions")?;
            for _ in 0..partitions {
                forgotten.push((topic.clone(), r.i32("partition")?));
            }
            if flexible {
                r.skip_tags("forgotten topic tags")?;
            }
        }
    }
    Ok(FetchRequestView {
        max_wait_ms,
        session_epoch,
        positions: out,
        forgotten,
    })
}

/// What an OffsetCommit request commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// Consumer group.
    pub group: String,
    /// Member id (empty for a commit from outside the group, e.g. an admin tool).
    pub member_id: String,
    /// `(topic, partition, committed offset)`: the next offset the group will consume.
    pub offsets: Vec<(String, i32, i64)>,
}

/// Parses an OffsetCommit request (v2..v9).
pub fn offset_commit(body: &[u8], version: i16) -> Result<CommitRequest, WireError> {
    let flexible = version >= 8;
    let mut r = WireReader::new(body);
    let group = r
        .string(flexible, "group id")?
        .unwrap_or_default()
        .to_string();
    r.skip(4, "generation")?;
    let member_id = r
        .string(flexible, "member id")?
        .unwrap_or_default()
        .to_string();
    if version >= 7 {
        r.string(flexible, "group instance id")?;
    }
    if (2..=4).contains(&version) {
        r.skip(8, "retention time")?;
    }
    let topics = r.array_len(flexible, 2, "commit topics")?;
    let mut offsets = Vec::new();
    for _ in 0..topics {
        let topic = r.string(flexible, "topic")?.unwrap_or_default().to_string();
        let partitions = r.array_len(flexible, 12, "commit partitions")?;
        for _ in 0..partitions {
            let partition = r.i32("partition")?;
            let offset = r.i64("committed offset")?;
            if version >= 6 {
                r.skip(4, "leader epoch")?;
            }
            r.string(flexible, "metadata")?;
            if flexible {
                r.skip_tags("partition tags")?;
            }
            offsets.push((topic.clone(), partition, offset));
        }
        if flexible {
            r.skip_tags("topic tags")?;
        }
    }
    Ok(CommitRequest {
        group,
        member_id,
        offsets,
    })
}

/// The group (and member, where the request names one) of a group request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRequest {
    /// Group ids (OffsetFetch v8+ may name several).
    pub groups: Vec<String>,
    /// Member id, when the request carries one.
    pub member_id: Option<String>,
    /// `group.instance.id` of a static member (JoinGroup v5+, ConsumerGroupHeartbeat).
    pub instance_id: Option<String>,
    /// KIP-848 member epoch (ConsumerGroupHeartbeat only): 0 joins, -1 leaves, -2 leaves
    /// for now keeping a static member's place.
    pub member_epoch: Option<i32>,
}

/// The consumer APIs whose requests the proxy reads: the one place an API key is mapped
/// to the consumer traffic it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerApi {
    /// Fetch: positions of the partitions a consumer reads.
    Fetch,
    /// OffsetCommit: what a group has processed.
    OffsetCommit,
    /// OffsetFetch: where a group resumes.
    OffsetFetch,
    /// JoinGroup (classic protocol).
    JoinGroup,
    /// SyncGroup (classic protocol): the assignment.
    SyncGroup,
    /// Heartbeat (classic protocol).
    Heartbeat,
    /// LeaveGroup (classic protocol).
    LeaveGroup,
    /// ConsumerGroupHeartbeat (KIP-848): joins, assignments and leaves in one API.
    ConsumerGroupHeartbeat,
}

impl ConsumerApi {
    /// The consumer API an API key carries, if any.
    pub fn of(api: ApiKey) -> Option<ConsumerApi> {
        Some(match api {
            ApiKey::Fetch => ConsumerApi::Fetch,
            ApiKey::OffsetCommit => ConsumerApi::OffsetCommit,
            ApiKey::OffsetFetch => ConsumerApi::OffsetFetch,
            ApiKey::JoinGroup => ConsumerApi::JoinGroup,
            ApiKey::SyncGroup => ConsumerApi::SyncGroup,
            ApiKey::Heartbeat => ConsumerApi::Heartbeat,
            ApiKey::LeaveGroup => ConsumerApi::LeaveGroup,
            ApiKey::ConsumerGroupHeartbeat => ConsumerApi::ConsumerGroupHeartbeat,
            _ => return None,
        })
    }

    /// The API key.
    pub fn key(self) -> ApiKey {
        match self {
            ConsumerApi::Fetch => ApiKey::Fetch,
            ConsumerApi::OffsetCommit => ApiKey::OffsetCommit,
            ConsumerApi::OffsetFetch => ApiKey::OffsetFetch,
            ConsumerApi::JoinGroup => ApiKey::JoinGroup,
            ConsumerApi::SyncGroup => ApiKey::SyncGroup,
            ConsumerApi::Heartbeat => ApiKey::Heartbeat,
            ConsumerApi::LeaveGroup => ApiKey::LeaveGroup,
            ConsumerApi::ConsumerGroupHeartbeat => ApiKey::ConsumerGroupHeartbeat,
        }
    }
}

/// A consumer request, read.
#[derive(Debug)]
pub enum ConsumerRequest {
    /// A Fetch.
    Fetch(FetchRequestView),
    /// An OffsetCommit.
    OffsetCommit(CommitRequest),
    /// A group-membership request or OffsetFetch: which one, and its group and member.
    Group(ConsumerApi, GroupRequest),
}

/// Reads a consumer request's body.
pub fn decode(api: ConsumerApi, body: &[u8], version: i16) -> Result<ConsumerRequest, WireError> {
    Ok(match api {
        ConsumerApi::Fetch => ConsumerRequest::Fetch(fetch_positions(body, version)?),
        ConsumerApi::OffsetCommit => ConsumerRequest::OffsetCommit(offset_commit(body, version)?),
        group => ConsumerRequest::Group(group, group_request(group, body, version)?),
    })
}

/// Reads the group id(s) and member id of JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
/// OffsetFetch and ConsumerGroupHeartbeat requests; Fetch and OffsetCommit have their
/// own readers and yield an empty request here.
pub fn group_request(
    api: ConsumerApi,
    body: &[u8],
    version: i16,
) -> Result<GroupRequest, WireError> {
    let mut r = WireReader::new(body);
    let one = |groups: String, member_id: Option<String>| {
        Ok(GroupRequest {
            groups: vec![groups],
            member_id,
            instance_id: None,
            member_epoch: None,
        })
    };
    match api {
        ConsumerApi::JoinGroup => {
            let flexible = version >= 6;
            let group = owned(r.string(flexible, "group id")?);
            r.skip(4, "session timeout")?;
            if version >= 1 {
                r.skip(4, "rebalance timeout")?;
            }
            let member = owned(r.string(flexible, "member id")?);
            let instance_id = if version >= 5 {
                r.string(flexible, "group instance id")?.map(str::to_owned)
            } else {
                None
            };
            Ok(GroupRequest {
                groups: vec![group],
                member_id: Some(member),
                instance_id,
                member_epoch: None,
            })
        }
        ConsumerApi::SyncGroup | ConsumerApi::Heartbeat => {
            let flexible = version >= 4;
            let group = owned(r.string(flexible, "group id")?);
            r.skip(4, "generation")?;
            let member = owned(r.string(flexible, "member id")?);
            one(group, Some(member))
        }
        ConsumerApi::LeaveGroup => {
            let flexible = version >= 4;
            let group = owned(r.string(flexible, "group id")?);
            // v0-2 name one member; v3+ a list of them, of which the first is read.
            let member = if version <= 2 || r.array_len(flexible, 1, "leaving members")? > 0 {
                Some(owned(r.string(flexible, "member id")?))
            } else {
                None
            };
            one(group, member)
        }
        ConsumerApi::OffsetFetch => {
            let flexible = version >= 6;
            if version <= 7 {
                let group = owned(r.string(flexible, "group id")?);
                return one(group, None);
            }
            let n = r.array_len(flexible, 2, "groups")?;
            let mut groups = Vec::with_capacity(n);
            let mut member_id = None;
            for i in 0..n {
                groups.push(owned(r.string(flexible, "group id")?));
                if version >= 9 {
                    let m = r.string(flexible, "member id")?.map(str::to_owned);
                    r.skip(4, "member epoch")?;
                    if i == 0 {
                        member_id = m;
                    }
                }
                let topics = r.array_len(flexible, 2, "topics")?;
                for _ in 0..topics {
                    r.string(flexible, "topic")?;
                    let parts = r.array_len(flexible, 4, "partitions")?;
                    r.skip(parts * 4, "partition indexes")?;
                    r.skip_tags("topic tags")?;
                }
                r.skip_tags("group tags")?;
            }
            Ok(GroupRequest {
                groups,
                member_id,
                instance_id: None,
                member_epoch: None,
            })
        }
        ConsumerApi::ConsumerGroupHeartbeat => {
            let group = owned(r.string(true, "group id")?);
            let member = owned(r.string(true, "member id")?);
            let epoch = r.i32("member epoch")?;
            let instance_id = r.string(true, "instance id")?.map(str::to_owned);
            Ok(GroupRequest {
                groups: vec![group],
                member_id: Some(member),
                instance_id,
                member_epoch: Some(epoch),
            })
        }
        ConsumerApi::Fetch | ConsumerApi::OffsetCommit => one(String::new(), None),
    }
}

fn owned(s: Option<&str>) -> String {
    s.unwrap_or_default().to_string()
}

/// The partitions of a consumer-protocol assignment (the bytes a SyncGroup response
/// carries): a 2-byte version, then `[topic, [partition]]`, then user data.
pub fn consumer_assignment(bytes: &[u8]) -> Result<Vec<(String, i32)>, WireError> {
    if bytes.is_empty() {
        return Ok(Vec::new()); // no assignment (e.g. a member that lost the rebalance)
    }
    let mut r = WireReader::new(bytes);
    r.i16("assignment version")?;
    let topics = r.array_len(false, 6, "assigned topics")?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let topic = owned(r.string(false, "assigned topic")?);
        let parts = r.array_len(false, 4, "assigned partitions")?;
        for _ in 0..parts {
            out.push((topic.clone(), r.i32("assigned partition")?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use uuid::Uuid;

    fn encode<T: Encodable>(msg: &T, version: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        msg.encode(&mut b, version).unwrap();
        b.to_vec()
    }

    fn fetch_request(version: i16) -> FetchRequest {
        let partition = |p, o| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(o)
                .with_partition_max_bytes(1 << 20)
        };
        FetchRequest::default()
            .with_max_wait_ms(500)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_topic_id(Uuid::from_bytes([7; 16]))
                .with_partitions(vec![partition(0, 42), partition(3, 7)])])
            .with_session_epoch(if version >= 7 { 5 } else { -1 })
            .with_forgotten_topics_data(if version < 7 {
                vec![]
            } else {
                vec![
                    kafka_protocol::messages::fetch_request::ForgottenTopic::default()
                        .with_topic(TopicName(StrBytes::from_static_str("old")))
                        .with_topic_id(Uuid::from_bytes([9; 16]))
                        .with_partitions(vec![4]),
                ]
            })
            .with_rack_id(if version >= 11 {
                StrBytes::from_static_str("rack")
            } else {
                StrBytes::default()
            })
    }

    #[test]
    fn fetch_positions_every_version() {
        for v in ApiKey::Fetch.valid_versions().min..=ApiKey::Fetch.valid_versions().max {
            let body = encode(&fetch_request(v), v);
            let got = fetch_positions(&body, v).unwrap_or_else(|e| panic!("v{v}: {e}"));
            let topic = if v >= 13 {
                TopicRef::Id([7; 16])
            } else {
                TopicRef::Name("orders".into())
            };
            assert_eq!(got.max_wait_ms, 500);
            if v >= 7 {
                assert_eq!(got.session_epoch, 5);
                let old = if v >= 13 {
                    TopicRef::Id([9; 16])
                } else {
                    TopicRef::Name("old".into())
                };
                assert_eq!(got.forgotten, vec![(old, 4)]);
            }
            assert_eq!(
                got.positions,
                vec![
                    FetchPosition {
                        topic: topic.clone(),
                        partition: 0,
                        offset: 42
                    },
                    FetchPosition {
                        topic,
                        partition: 3,
                        offset: 7
                    },
                ],
                "v{v}"
            );
            // Every strict prefix is an error, never a panic.
            for cut in 0..body.len() {
                let _ = fetch_positions(&body[..cut], v);
            }
        }
    }

    #[test]
    fn offset_commit_every_version() {
        for v in 2..=9 {
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("billing")))
                .with_member_id(StrBytes::from_static_str("m-1"))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("orders")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(2)
                        .with_committed_offset(1234)
                        .with_committed_metadata(Some(StrBytes::from_static_str("m")))])]);
            let got = offset_commit(&encode(&req, v), v).unwrap();
            assert_eq!(got.group, "billing", "v{v}");
            assert_eq!(got.member_id, "m-1");
            assert_eq!(got.offsets, vec![("orders".to_string(), 2, 1234)]);
        }
    }

    #[test]
    fn group_ids_of_membership_requests() {
        let g = || GroupId(StrBytes::from_static_str("g1"));
        let m = || StrBytes::from_static_str("member-9");
        for v in ApiKey::JoinGroup.valid_versions().min..=ApiKey::JoinGroup.valid_versions().max {
            let body = encode(
                &JoinGroupRequest::default()
                    .with_group_id(g())
                    .with_member_id(m()),
                v,
            );
            let got = group_request(ConsumerApi::JoinGroup, &body, v).unwrap();
            assert_eq!(
                (got.groups, got.member_id),
                (vec!["g1".to_string()], Some("member-9".into())),
                "join v{v}"
            );
        }
        for v in 0..=5 {
            let body = encode(
                &SyncGroupRequest::default()
                    .with_group_id(g())
                    .with_member_id(m()),
                v,
            );
            let got = group_request(ConsumerApi::SyncGroup, &body, v).unwrap();
            assert_eq!(got.member_id.as_deref(), Some("member-9"), "sync v{v}");
        }
        for v in 0..=4 {
            let body = encode(
                &HeartbeatRequest::default()
                    .with_group_id(g())
                    .with_member_id(m()),
                v,
            );
            assert_eq!(
                group_request(ConsumerApi::Heartbeat, &body, v)
                    .unwrap()
                    .groups,
                vec!["g1"]
            );
        }
        for v in 1..=7 {
            let body = encode(&OffsetFetchRequest::default().with_group_id(g()), v);
            assert_eq!(
                group_request(ConsumerApi::OffsetFetch, &body, v)
                    .unwrap()
                    .groups,
                vec!["g1"],
                "offsetfetch v{v}"
            );
        }
        let body = encode(
            &LeaveGroupRequest::default()
                .with_group_id(g())
                .with_members(vec![
                    kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                        .with_member_id(m()),
                ]),
            4,
        );
        assert_eq!(
            group_request(ConsumerApi::LeaveGroup, &body, 4)
                .unwrap()
                .member_id
                .as_deref(),
            Some("member-9")
        );
    }

    #[test]
    fn static_member_ids_and_kip848_epochs() {
        let g = || GroupId(StrBytes::from_static_str("g1"));
        for v in ApiKey::JoinGroup.valid_versions().min..=ApiKey::JoinGroup.valid_versions().max {
            let body = encode(
                &JoinGroupRequest::default()
                    .with_group_id(g())
                    .with_member_id(StrBytes::from_static_str("m"))
                    .with_group_instance_id((v >= 5).then(|| StrBytes::from_static_str("pod-0"))),
                v,
            );
            let got = group_request(ConsumerApi::JoinGroup, &body, v).unwrap();
            let want = (v >= 5).then(|| "pod-0".to_string());
            assert_eq!(got.instance_id, want, "join v{v}");
            assert_eq!(got.member_epoch, None);
        }
        for (epoch, instance) in [
            (0, None),
            (7, Some("pod-1")),
            (-1, None),
            (-2, Some("pod-1")),
        ] {
            let body = encode(
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(g())
                    .with_member_id(StrBytes::from_static_str("uuid-1"))
                    .with_member_epoch(epoch)
                    .with_instance_id(instance.map(StrBytes::from_static_str)),
                0,
            );
            let got = group_request(ConsumerApi::ConsumerGroupHeartbeat, &body, 0).unwrap();
            assert_eq!(got.member_id.as_deref(), Some("uuid-1"));
            assert_eq!(got.member_epoch, Some(epoch));
            assert_eq!(got.instance_id.as_deref(), instance);
        }
    }

    #[test]
    fn consumer_assignment_bytes() {
        let mut b = BytesMut::new();
        b.put_i16(3);
        b.put_i32(1);
        b.put_i16(6);
        b.put_slice(b"orders");
        b.put_i32(2);
        b.put_i32(0);
        b.put_i32(5);
        b.put_i32(-1); // user data null
        assert_eq!(
            consumer_assignment(&b).unwrap(),
            vec![("orders".to_string(), 0), ("orders".to_string(), 5)]
        );
        assert!(consumer_assignment(&b[..9]).is_err());
        assert!(consumer_assignment(&[]).unwrap().is_empty());
    }
}
