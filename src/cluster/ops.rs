//! The operations of [`Cluster`]: Metadata, CreateTopics, Produce, Fetch, ListOffsets.

use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{decode_records, encode_records, versions, Cluster, ClusterError, Key, TopicsInfo};
use crate::dead_letter::validate_topic_name;
use crate::protocol::record::Record;

/// Which end of a partition [`Cluster::list_offsets`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset still held (log start).
    Earliest,
    /// The offset the next record will get (high watermark).
    Latest,
}

/// The answer to one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Data records at or after the offset asked for.
    pub records: Vec<Record>,
    /// Where the next fetch should start; the offset asked for when nothing came back.
    pub next_offset: i64,
    /// The partition's high watermark as the broker reported it.
    pub high_watermark: i64,
}

const TOPIC_ALREADY_EXISTS: i16 = 36;
const NOT_CONTROLLER: i16 = 41;
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// The replication factor to ask for: `asked`, lowered to the broker count (at least 1).
pub fn replication_factor_for(asked: i16, brokers: usize) -> i16 {
    let brokers = i16::try_from(brokers.max(1)).unwrap_or(i16::MAX);
    asked.min(brokers)
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

impl Cluster {
    /// Metadata of `topics` (with an empty slice: brokers and controller only). Missing
    /// topics come back with error code 3; topics are never auto-created.
    pub async fn metadata(&self, topics: &[&str]) -> Result<TopicsInfo, ClusterError> {
        let list = topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
            .collect();
        self.metadata_request(Some(list)).await
    }

    /// Metadata of every topic in the cluster.
    pub async fn all_topics(&self) -> Result<TopicsInfo, ClusterError> {
        self.metadata_request(None).await
    }

    async fn metadata_request(
        &self,
        topics: Option<Vec<MetadataRequestTopic>>,
    ) -> Result<TopicsInfo, ClusterError> {
        let request = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        let response = self
            .call(Key::Any, &request, versions::METADATA, self.request_timeout)
            .await?;
        let info = TopicsInfo::from_response(response);
        self.learn(&info);
        Ok(info)
    }

    /// Creates a topic unless the metadata already shows it; `Ok(true)` when created. A
    /// cluster whose topics are made by its operators (and where this client may not
    /// create topics, or the broker has no CreateTopics) works as long as they exist.
    pub async fn create_topic_if_missing(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<bool, ClusterError> {
        let md = self.metadata(&[topic]).await?;
        if md.partition_count(topic).is_some_and(|n| n > 0) {
            return Ok(false);
        }
        self.create_topic(topic, partitions, replication_factor, configs)
            .await
    }

    /// Creates a topic; `Ok(true)` when created, `Ok(false)` when it already existed. The
    /// replication factor is lowered to the broker count, with a warning. Waits (briefly,
    /// bounded) until the metadata shows a leader for every partition.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<bool, ClusterError> {
        validate_topic_name(topic).map_err(|e| ClusterError::Invalid(e.to_string()))?;
        if partitions < 1 || replication_factor < 1 {
            return Err(ClusterError::Invalid(format!(
                "topic {topic}: partitions ({partitions}) and replication factor \
                 ({replication_factor}) must be at least 1"
            )));
        }
        let mut attempt = 0;
        let created = loop {
            match self
                .create_once(topic, partitions, replication_factor, configs)
                .await
            {
                Err(e)
                    if attempt < self.retries
                        && (e.is_retriable()
                            || matches!(e, ClusterError::Broker { code, .. } if code == NOT_CONTROLLER)) =>
                {
                    attempt += 1;
                    tracing::debug!(topic, attempt, error = %e, "retrying topic creation");
                    Self::backoff(attempt).await;
                }
                other => break other?,
            }
        };
        for attempt in 1..=self.retries.max(1) * 2 {
            let md = self.metadata(&[topic]).await?;
            let ready = md.topic(topic).is_some_and(|t| {
                t.partitions.len() >= partitions as usize
                    && t.partitions.values().all(|p| p.leader >= 0)
            });
            if ready {
                break;
            }
            Self::backoff(attempt.min(2)).await;
        }
        Ok(created)
    }

    async fn create_once(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<bool, ClusterError> {
        let md = self.metadata(&[]).await?;
        let rf = replication_factor_for(replication_factor, md.broker_count());
        if rf != replication_factor {
            tracing::warn!(
                topic,
                asked = replication_factor,
                used = rf,
                "replication factor lowered to the number of brokers"
            );
        }
        let key = match md.brokers.contains_key(&md.controller_id) {
            true => Key::Node(md.controller_id),
            false => Key::Any,
        };
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.request_timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(rf)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )]);
        let response = self
            .call(key, &request, versions::CREATE_TOPICS, self.request_timeout)
            .await?;
        let result = response
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == topic)
            .ok_or_else(|| {
                ClusterError::Invalid(format!("CreateTopics answer does not name {topic}"))
            })?;
        match result.error_code {
            0 => {
                tracing::info!(topic, partitions, replication_factor = rf, "topic created");
                Ok(true)
            }
            TOPIC_ALREADY_EXISTS => Ok(false),
            code => Err(ClusterError::Broker {
                what: format!("create topic {topic}"),
                code,
                message: result.error_message.as_ref().map(|m| m.to_string()),
            }),
        }
    }

    /// Produces `records` as one batch to the partition's leader and waits for the
    /// acknowledgement; returns the base offset. `acks` is -1 (all in-sync replicas) or
    /// 1 (leader); 0 is refused, as it gives no acknowledgement to wait for.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[Record],
        acks: i16,
        timeout: Duration,
    ) -> Result<i64, ClusterError> {
        if records.is_empty() {
            return Err(ClusterError::Invalid("nothing to produce".into()));
        }
        if !matches!(acks, -1 | 1) {
            return Err(ClusterError::Invalid(format!(
                "acks must be -1 or 1, not {acks}"
            )));
        }
        let batch = encode_records(records)?;
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let wait = timeout + self.request_timeout;
        self.on_leader(topic, partition, |leader| {
            let request = &request;
            async move {
                let response = self
                    .call(Key::Node(leader), request, versions::PRODUCE, wait)
                    .await?;
                let p = response
                    .responses
                    .iter()
                    .filter(|t| t.name.0.as_str() == topic)
                    .flat_map(|t| t.partition_responses.iter())
                    .find(|p| p.index == partition)
                    .ok_or_else(|| {
                        ClusterError::Invalid(format!(
                            "produce answer does not name {topic}[{partition}]"
                        ))
                    })?;
                if p.error_code != 0 {
                    return Err(ClusterError::Broker {
                        what: format!("produce to {topic}[{partition}]"),
                        code: p.error_code,
                        message: p.error_message.as_ref().map(|m| m.to_string()),
                    });
                }
                Ok(p.base_offset)
            }
        })
        .await
    }

    /// Fetches from `offset` on the partition's leader, up to about `max_bytes` (at least
    /// one batch). Control records are left out; reads uncommitted data.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Result<Fetched, ClusterError> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(self.fetch_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]);
        self.on_leader(topic, partition, |leader| {
            let request = &request;
            async move {
                let response = self
                    .call(
                        Key::Node(leader),
                        request,
                        versions::FETCH,
                        self.request_timeout,
                    )
                    .await?;
                if response.error_code != 0 {
                    return Err(ClusterError::Broker {
                        what: format!("fetch {topic}[{partition}]"),
                        code: response.error_code,
                        message: None,
                    });
                }
                let p = response
                    .responses
                    .iter()
                    .filter(|t| t.topic.0.as_str() == topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == partition)
                    .ok_or_else(|| {
                        ClusterError::Invalid(format!(
                            "fetch answer does not name {topic}[{partition}]"
                        ))
                    })?;
                match p.error_code {
                    0 => {}
                    OFFSET_OUT_OF_RANGE => {
                        return Err(ClusterError::OffsetOutOfRange {
                            topic: topic.to_string(),
                            partition,
                            offset,
                        })
                    }
                    code => {
                        return Err(ClusterError::Broker {
                            what: format!("fetch {topic}[{partition}]"),
                            code,
                            message: None,
                        })
                    }
                }
                let decoded = match &p.records {
                    Some(bytes) => decode_records(bytes)?,
                    None => Default::default(),
                };
                Ok(Fetched {
                    records: decoded
                        .records
                        .into_iter()
                        .filter(|r| r.offset >= offset)
                        .collect(),
                    next_offset: decoded.next_offset.unwrap_or(offset).max(offset),
                    high_watermark: p.high_watermark,
                })
            }
        })
        .await
    }

    /// The earliest or latest offset of a partition, from its leader. (tansu's `latest`
    /// can be wrong after multi-record batches: see [`Cluster::read`].)
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64, ClusterError> {
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
        };
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        self.on_leader(topic, partition, |leader| {
            let request = &request;
            async move {
                let response = self
                    .call(
                        Key::Node(leader),
                        request,
                        versions::LIST_OFFSETS,
                        self.request_timeout,
                    )
                    .await?;
                let p = response
                    .topics
                    .iter()
                    .filter(|t| t.name.0.as_str() == topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == partition)
                    .ok_or_else(|| {
                        ClusterError::Invalid(format!(
                            "list offsets answer does not name {topic}[{partition}]"
                        ))
                    })?;
                if p.error_code != 0 {
                    return Err(ClusterError::Broker {
                        what: format!("list offsets of {topic}[{partition}]"),
                        code: p.error_code,
                        message: None,
                    });
                }
                Ok(p.offset)
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_factor_is_lowered_to_the_broker_count() {
        assert_eq!(replication_factor_for(3, 1), 1);
        assert_eq!(replication_factor_for(3, 5), 3);
        assert_eq!(replication_factor_for(2, 2), 2);
        assert_eq!(replication_factor_for(3, 0), 1);
        assert_eq!(replication_factor_for(3, 100_000), 3);
    }
}
