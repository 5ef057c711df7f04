//! A group's committed offsets (OffsetFetch v1-7, one group per request), for tools that
//! wait for a group to commit past records they wrote (`quarantine dlq replay --wait`).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};

use super::{Cluster, ClusterError, Key};

/// OffsetFetch versions used (v8+ asks for several groups at once).
pub const OFFSET_FETCH: RangeInclusive<i16> = 1..=7;

impl Cluster {
    /// The committed offsets of `group` on `partitions` of `topic`; a partition without a
    /// commit is absent.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, ClusterError> {
        self.on_coordinator(group, |node| async move {
            let key = Key::Node(node);
            let version = self
                .version(key, OffsetFetchRequest::KEY, &OFFSET_FETCH)
                .await?;
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_indexes(partitions.to_vec())]));
            let response = self
                .call(key, &request, version..=version, self.request_timeout)
                .await?;
            if response.error_code != 0 {
                return Err(ClusterError::Broker {
                    what: format!("committed offsets of group {group}"),
                    code: response.error_code,
                    message: None,
                });
            }
            let mut out = BTreeMap::new();
            for p in response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
            {
                if p.error_code != 0 {
                    return Err(ClusterError::Broker {
                        what: format!(
                            "committed offset of group {group} on {topic}[{}]",
                            p.partition_index
                        ),
                        code: p.error_code,
                        message: None,
                    });
                }
                if p.committed_offset >= 0 {
                    out.insert(p.partition_index, p.committed_offset);
                }
            }
            Ok(out)
        })
        .await
    }
}
