//! Topic names, ids and partition counts, learned from the Metadata responses that pass
//! through (and from the proxy's own Metadata requests). Fetch v13+ names topics only by
//! id, so the watcher needs this map to know which topic a fetch is for.

use std::collections::HashMap;
use std::sync::RwLock;

use kafka_protocol::messages::MetadataResponse;

/// What the proxy knows of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (all zero when the broker does not report ids).
    pub id: [u8; 16],
    /// Number of partitions.
    pub partitions: i32,
}

/// Topic id ↔ name map.
#[derive(Default)]
pub struct Topics {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<[u8; 16], String>,
    by_name: HashMap<String, TopicInfo>,
}

impl Topics {
    /// Learns every topic a Metadata response describes.
    pub fn learn(&self, md: &MetadataResponse) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for t in &md.topics {
            let Some(name) = &t.name else { continue };
            if t.error_code != 0 {
                continue;
            }
            let id = *t.topic_id.as_bytes();
            let info = TopicInfo {
                name: name.0.to_string(),
                id,
                partitions: t.partitions.len() as i32,
            };
            if id != [0; 16] {
                inner.by_id.insert(id, info.name.clone());
            }
            inner.by_name.insert(info.name.clone(), info);
        }
    }

    /// The name of a topic id.
    pub fn name_of(&self, id: &[u8; 16]) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_id.get(id).cloned()
    }

    /// What is known of a topic by name.
    pub fn get(&self, name: &str) -> Option<TopicInfo> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_name.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn learns_ids_and_partition_counts() {
        let md = MetadataResponse::default().with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
            .with_topic_id(uuid::Uuid::from_bytes([3; 16]))
            .with_partitions(vec![MetadataResponsePartition::default(); 4])]);
        let topics = Topics::default();
        topics.learn(&md);
        assert_eq!(topics.name_of(&[3; 16]).as_deref(), Some("orders"));
        assert_eq!(topics.get("orders").unwrap().partitions, 4);
        assert_eq!(topics.name_of(&[4; 16]), None);
    }
}
