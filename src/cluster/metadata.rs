//! What a Metadata answer says: brokers, controller, topics, partitions and leaders.

use std::collections::BTreeMap;

use kafka_protocol::messages::MetadataResponse;

/// One broker's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host as advertised.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// One partition in a Metadata answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Leader node id, -1 when there is none.
    pub leader: i32,
    /// Partition-level error code.
    pub error_code: i16,
}

/// One topic in a Metadata answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic-level error code (3 = does not exist).
    pub error_code: i16,
    /// Topic id, when the broker sent one (Metadata v10+).
    pub topic_id: Option<[u8; 16]>,
    /// Whether Kafka marks it internal.
    pub is_internal: bool,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionInfo>,
}

/// What a Metadata request told about the cluster and some topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsInfo {
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, BrokerAddr>,
    /// Controller node id, -1 when unknown.
    pub controller_id: i32,
    /// Topics by name, including ones that came back with an error.
    pub topics: BTreeMap<String, TopicInfo>,
}

impl TopicsInfo {
    pub(super) fn from_response(md: MetadataResponse) -> Self {
        let brokers = md
            .brokers
            .into_iter()
            .filter_map(|b| {
                let port = u16::try_from(b.port).ok()?;
                Some((
                    b.node_id.0,
                    BrokerAddr {
                        host: b.host.to_string(),
                        port,
                    },
                ))
            })
            .collect();
        let topics = md
            .topics
            .into_iter()
            .filter_map(|t| {
                let name = t.name?.0.to_string();
                let id = *t.topic_id.as_bytes();
                let info = TopicInfo {
                    error_code: t.error_code,
                    topic_id: (id != [0; 16]).then_some(id),
                    is_internal: t.is_internal,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            (
                                p.partition_index,
                                PartitionInfo {
                                    leader: p.leader_id.0,
                                    error_code: p.error_code,
                                },
                            )
                        })
                        .collect(),
                };
                Some((name, info))
            })
            .collect();
        TopicsInfo {
            brokers,
            controller_id: md.controller_id.0,
            topics,
        }
    }

    /// Number of brokers in the cluster.
    pub fn broker_count(&self) -> usize {
        self.brokers.len()
    }

    /// The topic, if it exists (no topic-level error).
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name).filter(|t| t.error_code == 0)
    }

    /// Partition count of an existing topic.
    pub fn partition_count(&self, name: &str) -> Option<i32> {
        self.topic(name)
            .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))
    }

    /// Leader of a partition, if it has one.
    pub fn leader(&self, name: &str, partition: i32) -> Option<i32> {
        self.topic(name)?
            .partitions
            .get(&partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }
}
