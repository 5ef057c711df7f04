//! The proxy's own Kafka operations: metadata, topic creation, produce, fetch and list
//! offsets, on [`KafkaClient`](crate::cluster::kafka_client::KafkaClient) connections cached per broker node.
//!
//! Used for dead-letter writes, the state topic and the `quarantine dlq` tools; never for a
//! client's traffic. Requests go where Kafka wants them: produce, fetch and list offsets to
//! the partition leader, topic creation to the controller, metadata to any broker. A
//! connection that fails is dropped and reopened on the next request. Leadership errors
//! (`NOT_LEADER_OR_FOLLOWER`, `UNKNOWN_TOPIC_OR_PARTITION`, `LEADER_NOT_AVAILABLE`) and
//! connection errors refresh the metadata and retry a bounded number of times; every other
//! error is returned. Produce is at-least-once: a retry after a lost acknowledgement can
//! write a record twice.
//!
//! API versions: the highest the broker announces within [`versions`], ranges that Kafka
//! 2.x to 4.x, librdkafka-era clients and tansu all accept. Fetch is by topic name.
//! tansu's ListOffsets `latest` can be wrong after multi-record batches, so readers that
//! need the end of a partition use [`Cluster::read`], which fetches until a response comes
//! back empty.

mod codec;
mod conn;
mod error;
mod group_ops;
pub mod kafka_client;
mod metadata;
mod offsets;
mod ops;
pub mod sasl;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, Request};

use crate::cluster::kafka_client::ClientError;
use crate::config::{split_host_port, ConfigError, UpstreamConfig};
use crate::protocol::record::Record;

pub use codec::{decode_records, encode_records, CodecError, Decoded};
pub use conn::{Connector, NodeConn, Versions};
pub use error::ClusterError;
pub use group_ops::{
    consumer_group_leave_request, find_coordinator_request, leave_group_request, LeaveOutcome,
    Leaver,
};
pub use metadata::{BrokerAddr, PartitionInfo, TopicInfo, TopicsInfo};
pub use ops::{replication_factor_for, Fetched, OffsetSpec};

/// API version ranges the proxy's own requests use.
pub mod versions {
    use std::ops::RangeInclusive;
    /// Metadata (v10+ carries topic ids).
    pub const METADATA: RangeInclusive<i16> = 4..=12;
    /// Produce.
    pub const PRODUCE: RangeInclusive<i16> = 3..=9;
    /// Fetch, by topic name.
    pub const FETCH: RangeInclusive<i16> = 4..=11;
    /// ListOffsets.
    pub const LIST_OFFSETS: RangeInclusive<i16> = 1..=5;
    /// CreateTopics.
    pub const CREATE_TOPICS: RangeInclusive<i16> = 2..=5;
}

/// Which cached connection a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// Any broker, reached through the bootstrap list.
    Any,
    /// One broker node.
    Node(i32),
}

type Slot = Arc<tokio::sync::Mutex<Option<NodeConn>>>;

#[derive(Default)]
struct State {
    brokers: BTreeMap<i32, BrokerAddr>,
    controller: i32,
    leaders: HashMap<(String, i32), i32>,
    slots: HashMap<Key, Slot>,
}

/// The proxy's own view of and access to the Kafka cluster.
pub struct Cluster {
    connector: Connector,
    bootstrap: Vec<(String, u16)>,
    client_id: String,
    request_timeout: Duration,
    retries: u32,
    fetch_wait_ms: i32,
    state: Mutex<State>,
}

impl Cluster {
    /// A cluster reached through `bootstrap` (`host:port` each) with `connector`.
    pub fn new(connector: Connector, bootstrap: Vec<(String, u16)>, client_id: &str) -> Self {
        Cluster {
            connector,
            bootstrap,
            client_id: client_id.to_string(),
            request_timeout: Duration::from_secs(30),
            retries: 5,
            fetch_wait_ms: 100,
            state: Mutex::new(State {
                controller: -1,
                ..State::default()
            }),
        }
    }

    /// The cluster as the proxy's upstream config names it (bootstrap servers, TLS).
    pub fn from_config(upstream: &UpstreamConfig, client_id: &str) -> Result<Self, ConfigError> {
        let bootstrap = upstream
            .bootstrap_servers
            .iter()
            .filter_map(|s| split_host_port(s))
            .collect();
        Ok(Cluster::new(
            Connector::from_config(upstream)?,
            bootstrap,
            client_id,
        ))
    }

    /// Sets how long one request may take (30 s by default).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how many times leadership and connection errors are retried (5 by default).
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, key: Key) -> Slot {
        self.state().slots.entry(key).or_default().clone()
    }

    fn forget_leaders(&self, topic: &str) {
        self.state().leaders.retain(|(t, _), _| t != topic);
    }

    /// Records brokers, controller and leaders; drops connections to moved or gone brokers.
    fn learn(&self, info: &TopicsInfo) {
        let mut state = self.state();
        if !info.brokers.is_empty() {
            let stale: Vec<i32> = state
                .brokers
                .iter()
                .filter(|(id, addr)| info.brokers.get(id) != Some(addr))
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                state.slots.remove(&Key::Node(id));
            }
            state.brokers = info.brokers.clone();
        }
        state.controller = info.controller_id;
        for (name, topic) in &info.topics {
            state.leaders.retain(|(t, _), _| t != name);
            for (p, part) in &topic.partitions {
                if part.leader >= 0 {
                    state.leaders.insert((name.clone(), *p), part.leader);
                }
            }
        }
    }

    async fn open(&self, key: Key) -> Result<NodeConn, ClusterError> {
        let addrs: Vec<(String, u16)> = match key {
            Key::Any => {
                let known: Vec<(String, u16)> = self
                    .state()
                    .brokers
                    .values()
                    .map(|b| (b.host.clone(), b.port))
                    .collect();
                self.bootstrap.iter().cloned().chain(known).collect()
            }
            Key::Node(id) => {
                let addr = self.state().brokers.get(&id).cloned();
                let addr = addr.ok_or(ClusterError::UnknownNode(id))?;
                vec![(addr.host, addr.port)]
            }
        };
        let mut last = ClusterError::Invalid("no bootstrap servers configured".into());
        for (host, port) in addrs {
            let addr = format!("{host}:{port}");
            let stream = match self.connector.connect(&host, port).await {
                Ok(s) => s,
                Err(message) => {
                    last = ClusterError::Connect { addr, message };
                    continue;
                }
            };
            match tokio::time::timeout(
                self.request_timeout,
                NodeConn::open(stream, &self.client_id, addr.clone(), self.connector.sasl()),
            )
            .await
            {
                Ok(Ok(conn)) => return Ok(conn),
                // The credentials are the cluster's: another broker will refuse them too.
                Ok(Err(source)) if source.is_authentication() => {
                    return Err(ClusterError::Client { addr, source })
                }
                Ok(Err(source)) => last = ClusterError::Client { addr, source },
                Err(_) => {
                    last = ClusterError::Timeout {
                        addr,
                        ms: self.request_timeout.as_millis() as u64,
                    }
                }
            }
        }
        Err(last)
    }

    /// Sends one request on the cached connection for `key`, opening it when needed. A
    /// reused connection that turns out closed is reopened once.
    async fn call<R>(
        &self,
        key: Key,
        request: &R,
        range: std::ops::RangeInclusive<i16>,
        timeout: Duration,
    ) -> Result<R::Response, ClusterError>
    where
        R: Request + Encodable,
        R::Response: Decodable,
    {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|_| ClusterError::Invalid(format!("unknown API key {}", R::KEY)))?;
        let mut may_reopen = true;
        loop {
            let slot = self.slot(key);
            let mut guard = slot.lock().await;
            // Taken out while in use: if this future is dropped mid-request, the
            // half-used connection is dropped with it instead of being reused.
            let (mut conn, reused) = match guard.take() {
                Some(c) => (c, true),
                None => (self.open(key).await?, false),
            };
            let Some(version) = conn.versions.pick(R::KEY, &range) else {
                let addr = conn.addr.clone();
                *guard = Some(conn);
                return Err(ClusterError::Unsupported {
                    addr,
                    api,
                    min: *range.start(),
                    max: *range.end(),
                });
            };
            match tokio::time::timeout(timeout, conn.client.send(request, version)).await {
                Ok(Ok(response)) => {
                    *guard = Some(conn);
                    return Ok(response);
                }
                Ok(Err(source)) => {
                    let stale = matches!(
                        source,
                        ClientError::Closed | ClientError::Io(_) | ClientError::Frame(_)
                    );
                    if reused && stale && may_reopen {
                        may_reopen = false;
                        continue;
                    }
                    return Err(ClusterError::Client {
                        addr: conn.addr,
                        source,
                    });
                }
                Err(_) => {
                    return Err(ClusterError::Timeout {
                        addr: conn.addr,
                        ms: timeout.as_millis() as u64,
                    })
                }
            }
        }
    }

    /// The highest version of `api_key` in `range` that the broker behind `key` supports,
    /// opening the connection when needed (for requests whose shape depends on it).
    async fn version(
        &self,
        key: Key,
        api_key: i16,
        range: &std::ops::RangeInclusive<i16>,
    ) -> Result<i16, ClusterError> {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        let conn = match guard.take() {
            Some(c) => c,
            None => self.open(key).await?,
        };
        let picked = conn.versions.pick(api_key, range);
        let addr = conn.addr.clone();
        *guard = Some(conn);
        picked.ok_or_else(|| ClusterError::Unsupported {
            addr,
            api: ApiKey::try_from(api_key).unwrap_or(ApiKey::ApiVersions),
            min: *range.start(),
            max: *range.end(),
        })
    }

    /// Waits before retry `attempt` (1-based): 100 ms doubling, at most 1 s.
    async fn backoff(attempt: u32) {
        let ms = 100u64 << attempt.saturating_sub(1).min(4);
        tokio::time::sleep(Duration::from_millis(ms.min(1000))).await;
    }

    /// The leader of a partition, from the cache unless `refresh`.
    async fn leader_of(
        &self,
        topic: &str,
        partition: i32,
        refresh: bool,
    ) -> Result<i32, ClusterError> {
        if !refresh {
            let cached = self
                .state()
                .leaders
                .get(&(topic.to_string(), partition))
                .copied();
            if let Some(leader) = cached {
                return Ok(leader);
            }
        }
        let md = self.metadata(&[topic]).await?;
        let Some(t) = md.topics.get(topic).filter(|t| t.error_code != 3) else {
            return Err(ClusterError::UnknownTopic(topic.to_string()));
        };
        if t.error_code != 0 {
            return Err(ClusterError::Broker {
                what: format!("metadata of {topic}"),
                code: t.error_code,
                message: None,
            });
        }
        let p = t
            .partitions
            .get(&partition)
            .ok_or_else(|| ClusterError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        if p.leader < 0 {
            return Err(ClusterError::NoLeader {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(p.leader)
    }

    /// Runs `op` against the partition's leader; on a retriable error refreshes the
    /// metadata and tries again, at most `retries` more times.
    async fn on_leader<T, F, Fut>(
        &self,
        topic: &str,
        partition: i32,
        op: F,
    ) -> Result<T, ClusterError>
    where
        F: Fn(i32) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClusterError>>,
    {
        let mut attempt = 0;
        loop {
            let result = match self.leader_of(topic, partition, attempt > 0).await {
                Ok(leader) => op(leader).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retriable() && attempt < self.retries => {
                    attempt += 1;
                    tracing::debug!(topic, partition, attempt, error = %e, "retrying on a fresh leader");
                    self.forget_leaders(topic);
                    Self::backoff(attempt).await;
                }
                other => return other,
            }
        }
    }

    /// Reads a partition from `from` until a fetch comes back empty or `limit` records
    /// are read. Does not trust ListOffsets for the end (tansu's can be wrong).
    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<Record>, ClusterError> {
        let mut out = Vec::new();
        let mut offset = from;
        while out.len() < limit {
            let fetched = self.fetch(topic, partition, offset, 1024 * 1024).await?;
            if fetched.records.is_empty() && fetched.next_offset <= offset {
                break;
            }
            offset = fetched.next_offset.max(offset);
            out.extend(fetched.records);
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// The proxy spawns these futures on a multi-threaded runtime: they must stay `Send`.
#[cfg(test)]
mod send_check {
    use super::*;
    fn is_send<T: Send>(_: T) {}
    #[allow(dead_code)]
    fn futures_are_send(c: &'static Cluster) {
        is_send(async move { c.metadata(&["a"]).await });
        is_send(async move { c.create_topic("a", 1, 1, &[("a", "b")]).await });
        is_send(async move { c.produce("a", 0, &[], -1, Duration::from_secs(1)).await });
        is_send(async move { c.fetch("a", 0, 0, 1).await });
        let who = Leaver {
            group: "g",
            member_id: "m",
            instance_id: None,
            reason: "r",
        };
        let again = who.clone();
        is_send(async move { c.leave_group(&again).await });
        is_send(async move { c.leave_consumer_group(&who).await });
    }
}
