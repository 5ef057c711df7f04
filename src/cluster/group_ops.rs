//! Group operations of [`Cluster`]: find a group's coordinator and leave a group on a
//! member's behalf (fast failover), with the classic LeaveGroup or the KIP-848 leave
//! heartbeat (`member_epoch = -1`).
//!
//! Requests are built per version (the builders are pure and tested below): LeaveGroup
//! v0-2 names one member id, v3+ a list of `{member_id, group_instance_id}` (v5 adds a
//! reason). Coordinator moves (`NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`,
//! `COORDINATOR_LOAD_IN_PROGRESS`) and connection errors look the coordinator up again, a
//! bounded number of times.

use std::ops::RangeInclusive;

use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, FindCoordinatorRequest, GroupId, LeaveGroupRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::{Cluster, ClusterError, Key};

/// FindCoordinator versions used (v4+ asks for a list of keys).
pub const FIND_COORDINATOR: RangeInclusive<i16> = 0..=4;
/// LeaveGroup versions used.
pub const LEAVE_GROUP: RangeInclusive<i16> = 0..=5;
/// ConsumerGroupHeartbeat versions used.
pub const CONSUMER_GROUP_HEARTBEAT: RangeInclusive<i16> = 0..=1;

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const UNKNOWN_MEMBER_ID: i16 = 25;

/// The KIP-848 member epoch that leaves the group for good.
pub const LEAVE_EPOCH: i32 = -1;

/// What the coordinator said to a leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// The member was removed; the group rebalances now.
    Left,
    /// The coordinator did not know the member any more (its session had expired, or it
    /// had already been replaced).
    UnknownMember,
}

/// Who leaves: one member of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaver<'a> {
    /// Group.
    pub group: &'a str,
    /// Member id.
    pub member_id: &'a str,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<&'a str>,
    /// Why, sent to brokers that take a reason (LeaveGroup v5).
    pub reason: &'a str,
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// FindCoordinator for a consumer group, at `version`.
pub fn find_coordinator_request(version: i16, group: &str) -> FindCoordinatorRequest {
    let request = FindCoordinatorRequest::default().with_key_type(0);
    if version >= 4 {
        request.with_coordinator_keys(vec![text(group)])
    } else {
        request.with_key(text(group))
    }
}

/// LeaveGroup for one member, at `version`.
pub fn leave_group_request(version: i16, who: &Leaver<'_>) -> LeaveGroupRequest {
    let request = LeaveGroupRequest::default().with_group_id(GroupId(text(who.group)));
    if version <= 2 {
        return request.with_member_id(text(who.member_id));
    }
    let mut member = MemberIdentity::default()
        .with_member_id(text(who.member_id))
        .with_group_instance_id(who.instance_id.map(text));
    if version >= 5 {
        member = member.with_reason(Some(text(who.reason)));
    }
    request.with_members(vec![member])
}

/// The KIP-848 leave heartbeat: `member_epoch = -1`, nothing else set.
pub fn consumer_group_leave_request(who: &Leaver<'_>) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(who.group)))
        .with_member_id(text(who.member_id))
        .with_member_epoch(LEAVE_EPOCH)
        .with_instance_id(who.instance_id.map(text))
}

fn coordinator_moved(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

fn outcome(code: i16, what: impl FnOnce() -> String) -> Result<LeaveOutcome, ClusterError> {
    match code {
        0 => Ok(LeaveOutcome::Left),
        UNKNOWN_MEMBER_ID => Ok(LeaveOutcome::UnknownMember),
        code => Err(ClusterError::Broker {
            what: what(),
            code,
            message: None,
        }),
    }
}

impl Cluster {
    /// The node id of `group`'s coordinator.
    pub async fn coordinator(&self, group: &str) -> Result<i32, ClusterError> {
        let version = self
            .version(Key::Any, FindCoordinatorRequest::KEY, &FIND_COORDINATOR)
            .await?;
        let request = find_coordinator_request(version, group);
        let response = self
            .call(Key::Any, &request, version..=version, self.request_timeout)
            .await?;
        let (code, node, host, port) = match response.coordinators.first() {
            Some(c) if version >= 4 => (c.error_code, c.node_id.0, c.host.clone(), c.port),
            _ => (
                response.error_code,
                response.node_id.0,
                response.host.clone(),
                response.port,
            ),
        };
        if code != 0 {
            return Err(ClusterError::Broker {
                what: format!("find the coordinator of group {group}"),
                code,
                message: None,
            });
        }
        let known = self.state().brokers.contains_key(&node);
        if !known {
            tracing::debug!(node, host = %host, port, "coordinator not in the metadata yet");
            self.metadata(&[]).await?;
        }
        Ok(node)
    }

    /// Runs `op` on the group's coordinator, looking it up again after a coordinator move
    /// or a connection error, at most `retries` more times.
    pub(super) async fn on_coordinator<T, F, Fut>(
        &self,
        group: &str,
        op: F,
    ) -> Result<T, ClusterError>
    where
        F: Fn(i32) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClusterError>>,
    {
        let mut attempt = 0;
        loop {
            let result = match self.coordinator(group).await {
                Ok(node) => op(node).await,
                Err(e) => Err(e),
            };
            let retry = match &result {
                Err(ClusterError::Broker { code, .. }) => coordinator_moved(*code),
                Err(e) => e.is_retriable(),
                Ok(_) => false,
            };
            if !retry || attempt >= self.retries {
                return result;
            }
            attempt += 1;
            if let Err(e) = &result {
                tracing::debug!(group, attempt, error = %e, "retrying on the group coordinator");
            }
            Self::backoff(attempt).await;
        }
    }

    /// Sends LeaveGroup for one member of a classic group, on the proxy's own connection
    /// to the group's coordinator.
    pub async fn leave_group(&self, who: &Leaver<'_>) -> Result<LeaveOutcome, ClusterError> {
        self.on_coordinator(who.group, |node| async move {
            let key = Key::Node(node);
            let version = self
                .version(key, LeaveGroupRequest::KEY, &LEAVE_GROUP)
                .await?;
            let request = leave_group_request(version, who);
            let response = self
                .call(key, &request, version..=version, self.request_timeout)
                .await?;
            let what = || format!("leave group {} for member {}", who.group, who.member_id);
            if response.error_code != 0 {
                return outcome(response.error_code, what);
            }
            match response.members.first() {
                Some(m) => outcome(m.error_code, what),
                None => Ok(LeaveOutcome::Left),
            }
        })
        .await
    }

    /// Sends the KIP-848 leave heartbeat (`member_epoch = -1`) for one member of a
    /// consumer group, on the proxy's own connection to the group's coordinator.
    pub async fn leave_consumer_group(
        &self,
        who: &Leaver<'_>,
    ) -> Result<LeaveOutcome, ClusterError> {
        self.on_coordinator(who.group, |node| async move {
            let key = Key::Node(node);
            let version = self
                .version(
                    key,
                    ConsumerGroupHeartbeatRequest::KEY,
                    &CONSUMER_GROUP_HEARTBEAT,
                )
                .await?;
            let request = consumer_group_leave_request(who);
            let response = self
                .call(key, &request, version..=version, self.request_timeout)
                .await?;
            outcome(response.error_code, || {
                format!(
                    "leave consumer group {} for member {}",
                    who.group, who.member_id
                )
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn round_trip<T: Encodable + Decodable>(msg: &T, version: i16) -> T {
        let mut b = BytesMut::new();
        msg.encode(&mut b, version)
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
        T::decode(&mut b.freeze(), version).unwrap()
    }

    const DYNAMIC: Leaver<'static> = Leaver {
        group: "orders",
        member_id: "rdkafka-1f2e",
        instance_id: None,
        reason: "gone",
    };

    #[test]
    fn leave_group_names_the_member_at_every_version() {
        for v in ApiKey::LeaveGroup.valid_versions().min..=ApiKey::LeaveGroup.valid_versions().max {
            let got = round_trip(&leave_group_request(v, &DYNAMIC), v);
            assert_eq!(got.group_id.0.as_str(), "orders");
            if v <= 2 {
                assert_eq!(got.member_id.as_str(), "rdkafka-1f2e", "v{v}");
            } else {
                assert_eq!(got.members.len(), 1, "v{v}");
                assert_eq!(got.members[0].member_id.as_str(), "rdkafka-1f2e");
                assert_eq!(got.members[0].group_instance_id, None);
                let reason = got.members[0].reason.as_ref().map(|r| r.as_str());
                assert_eq!(reason, (v >= 5).then_some("gone"), "v{v}");
            }
        }
    }

    #[test]
    fn leave_group_carries_a_static_members_instance_id() {
        let who = Leaver {
            instance_id: Some("pod-0"),
            ..DYNAMIC
        };
        for v in 3..=5 {
            let got = round_trip(&leave_group_request(v, &who), v);
            let id = got.members[0]
                .group_instance_id
                .as_ref()
                .map(|i| i.as_str());
            assert_eq!(id, Some("pod-0"), "v{v}");
        }
    }

    #[test]
    fn kip848_leave_is_a_heartbeat_with_epoch_minus_one() {
        for v in 0..=1 {
            let got = round_trip(&consumer_group_leave_request(&DYNAMIC), v);
            assert_eq!(got.group_id.0.as_str(), "orders");
            assert_eq!(got.member_id.as_str(), "rdkafka-1f2e");
            assert_eq!(got.member_epoch, -1);
            assert_eq!(got.instance_id, None);
            assert_eq!(
                got.subscribed_topic_names, None,
                "a leave subscribes to nothing"
            );
            assert_eq!(got.topic_partitions, None);
        }
        let who = Leaver {
            instance_id: Some("pod-0"),
            ..DYNAMIC
        };
        let got = round_trip(&consumer_group_leave_request(&who), 0);
        assert_eq!(got.instance_id.as_ref().map(|i| i.as_str()), Some("pod-0"));
        assert_eq!(
            got.member_epoch, LEAVE_EPOCH,
            "-1 leaves for good, -2 would not"
        );
    }

    #[test]
    fn find_coordinator_asks_for_the_group_at_every_version() {
        for v in FIND_COORDINATOR {
            let got = round_trip(&find_coordinator_request(v, "orders"), v);
            if v >= 4 {
                assert_eq!(got.coordinator_keys[0].as_str(), "orders");
            } else {
                assert_eq!(got.key.as_str(), "orders");
            }
            assert_eq!(got.key_type, 0);
        }
    }

    #[test]
    fn leave_outcomes() {
        let what = || "leave".to_string();
        assert_eq!(outcome(0, what).unwrap(), LeaveOutcome::Left);
        assert_eq!(outcome(25, what).unwrap(), LeaveOutcome::UnknownMember);
        assert!(matches!(
            outcome(16, what),
            Err(ClusterError::Broker { code: 16, .. })
        ));
        assert!(coordinator_moved(16) && coordinator_moved(15) && coordinator_moved(14));
        assert!(!coordinator_moved(25));
    }
}
