//! A fake three-broker Kafka cluster for tests: three loopback listeners acting as nodes
//! 1, 2 and 3. Each answers ApiVersions, Metadata, FindCoordinator, DescribeCluster,
//! Produce and Fetch with `kafka_protocol` types at whatever version is asked, naming all
//! three brokers by their real (`localhost:PORT`) addresses, and records every request it
//! got so a test can tell which broker a connection reached.
//!
//! Special names exercise unmapped nodes: Metadata for the topic [`OVERFLOW`] and
//! FindCoordinator for the key [`OVERFLOW`] also name node [`OVERFLOW_NODE`], whose proxy
//! port (base + id) does not fit in a `u16`.

use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    fetch_response, produce_response, ApiKey, ApiVersionsResponse, BrokerId,
    DescribeClusterResponse, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataRequest, MetadataResponse, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use quarantine::protocol::wire::encode_response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Topic name / coordinator key that makes an answer name [`OVERFLOW_NODE`] too.
pub const OVERFLOW: &str = "overflow";
/// A node id whose proxy port overflows `u16` with any `node_port_base`.
pub const OVERFLOW_NODE: i32 = 70_000;
/// The host the fake brokers advertise.
pub const REAL_HOST: &str = "localhost";

/// One request a fake broker received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Node id of the broker that answered.
    pub broker: i32,
    /// API key.
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// The request header's client id.
    pub client_id: String,
}

/// The running fake cluster; its tasks end with the test's runtime.
pub struct FakeCluster {
    /// `(node id, real port)` of each broker, ids 1, 2, 3.
    pub brokers: Vec<(i32, u16)>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeCluster {
    /// Binds three listeners and starts answering.
    pub async fn start() -> FakeCluster {
        let mut listeners = Vec::new();
        for id in 1..=3 {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
            let port = l.local_addr().expect("addr").port();
            listeners.push((id, port, l));
        }
        let brokers: Vec<(i32, u16)> = listeners.iter().map(|(id, p, _)| (*id, *p)).collect();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for (id, _, listener) in listeners {
            let node = Node {
                id,
                brokers: brokers.clone(),
                seen: seen.clone(),
            };
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let node = node.clone();
                    tokio::spawn(async move { node.serve(socket).await });
                }
            });
        }
        FakeCluster { brokers, seen }
    }

    /// The real ports of the three brokers.
    pub fn real_ports(&self) -> Vec<u16> {
        self.brokers.iter().map(|b| b.1).collect()
    }

    /// `localhost:PORT` of broker 1, the proxy's bootstrap server.
    pub fn bootstrap(&self) -> String {
        format!("{REAL_HOST}:{}", self.brokers[0].1)
    }

    /// Every request seen with this client id, in arrival order.
    pub fn seen_by_client(&self, client_id: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|s| s.client_id == client_id)
            .cloned()
            .collect()
    }
}

#[derive(Clone)]
struct Node {
    id: i32,
    brokers: Vec<(i32, u16)>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Node {
    async fn serve(self, mut socket: TcpStream) {
        loop {
            let Ok(size) = socket.read_i32().await else {
                return;
            };
            let Ok(size) = usize::try_from(size) else {
                return;
            };
            let mut buf = vec![0u8; size];
            if socket.read_exact(&mut buf).await.is_err() {
                return;
            }
            let Some(frame) = self.answer(Bytes::from(buf)) else {
                return; // an API this fake does not speak: hang up
            };
            if socket.write_all(&frame).await.is_err() {
                return;
            }
        }
    }

    fn answer(&self, mut buf: Bytes) -> Option<bytes::BytesMut> {
        if buf.remaining() < 4 {
            return None;
        }
        let api = ApiKey::try_from(i16::from_be_bytes([buf[0], buf[1]])).ok()?;
        let version = i16::from_be_bytes([buf[2], buf[3]]);
        let header = RequestHeader::decode(&mut buf, api.request_header_version(version)).ok()?;
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Seen {
                broker: self.id,
                api_key: api as i16,
                api_version: version,
                client_id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            });
        let rh = ResponseHeader::default().with_correlation_id(header.correlation_id);
        let out = match api {
            ApiKey::ApiVersions => encode_response(&rh, &self.api_versions(), api, version),
            ApiKey::Metadata => {
                let req = MetadataRequest::decode(&mut buf, version).ok()?;
                encode_response(&rh, &self.metadata(&req, version), api, version)
            }
            ApiKey::FindCoordinator => {
                let req = FindCoordinatorRequest::decode(&mut buf, version).ok()?;
                encode_response(&rh, &self.find_coordinator(&req, version), api, version)
            }
            ApiKey::DescribeCluster => encode_response(&rh, &self.describe_cluster(), api, version),
            ApiKey::Produce => encode_response(&rh, &self.produce(version), api, version),
            ApiKey::Fetch => encode_response(&rh, &self.fetch(), api, version),
            _ => return None,
        };
        match out {
            Ok(f) => Some(f),
            Err(e) => panic!(
                "fake broker {} cannot encode {api:?} v{version}: {e}",
                self.id
            ),
        }
    }

    fn addrs(&self, with_overflow: bool) -> Vec<(i32, StrBytes, i32)> {
        let mut v: Vec<_> = self
            .brokers
            .iter()
            .map(|(id, port)| (*id, StrBytes::from_static_str(REAL_HOST), i32::from(*port)))
            .collect();
        if with_overflow {
            let port = i32::from(self.brokers[2].1);
            v.push((OVERFLOW_NODE, StrBytes::from_static_str(REAL_HOST), port));
        }
        v
    }

    fn api_versions(&self) -> ApiVersionsResponse {
        let keys = [
            ApiKey::ApiVersions,
            ApiKey::Metadata,
            ApiKey::FindCoordinator,
            ApiKey::DescribeCluster,
            ApiKey::Produce,
            ApiKey::Fetch,
        ];
        ApiVersionsResponse::default().with_api_keys(
            keys.iter()
                .map(|k| {
                    let v = k.valid_versions();
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(v.min)
                        .with_max_version(v.max)
                })
                .collect(),
        )
    }

    fn metadata(&self, req: &MetadataRequest, version: i16) -> MetadataResponse {
        let names: Vec<String> = req
            .topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect();
        let overflow = names.iter().any(|n| n == OVERFLOW);
        let mut resp = MetadataResponse::default().with_brokers(
            self.addrs(overflow)
                .into_iter()
                .map(|(id, host, port)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(host)
                        .with_port(port)
                })
                .collect(),
        );
        if version >= 1 {
            resp.controller_id = BrokerId(1);
        }
        if version >= 2 {
            resp.cluster_id = Some(StrBytes::from_static_str("fake-cluster"));
        }
        resp.topics = names
            .iter()
            .map(|n| {
                let partitions = (0..3)
                    .map(|p| {
                        let leader = BrokerId(p + 1);
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(leader)
                            .with_replica_nodes(vec![leader])
                            .with_isr_nodes(vec![leader])
                    })
                    .collect();
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    .with_partitions(partitions)
            })
            .collect();
        resp
    }

    /// Key `group-N` is coordinated by node N (1 if N is not a broker); [`OVERFLOW`] by
    /// [`OVERFLOW_NODE`].
    fn find_coordinator(
        &self,
        req: &FindCoordinatorRequest,
        version: i16,
    ) -> FindCoordinatorResponse {
        let all = self.addrs(true);
        let pick = |key: &str| {
            let id = if key == OVERFLOW {
                OVERFLOW_NODE
            } else {
                key.strip_prefix("group-")
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=3).contains(n))
                    .unwrap_or(1)
            };
            all.iter()
                .find(|a| a.0 == id)
                .cloned()
                .expect("a known node")
        };
        if version < 4 {
            let (id, host, port) = pick(req.key.as_str());
            return FindCoordinatorResponse::default()
                .with_node_id(BrokerId(id))
                .with_host(host)
                .with_port(port);
        }
        FindCoordinatorResponse::default().with_coordinators(
            req.coordinator_keys
                .iter()
                .map(|k| {
                    let (id, host, port) = pick(k.as_str());
                    Coordinator::default()
                        .with_key(k.clone())
                        .with_node_id(BrokerId(id))
                        .with_host(host)
                        .with_port(port)
                })
                .collect(),
        )
    }

    fn describe_cluster(&self) -> DescribeClusterResponse {
        DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_static_str("fake-cluster"))
            .with_controller_id(BrokerId(1))
            .with_brokers(
                self.addrs(false)
                    .into_iter()
                    .map(|(id, host, port)| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(id))
                            .with_host(host)
                            .with_port(port)
                    })
                    .collect(),
            )
    }

    /// NOT_LEADER_OR_FOLLOWER pointing at node 3, with all three endpoints.
    fn produce(&self, version: i16) -> ProduceResponse {
        let mut topic = produce_response::TopicProduceResponse::default();
        if version >= 13 {
            topic.topic_id = uuid_one();
        } else {
            topic.name = TopicName(StrBytes::from_static_str("orders"));
        }
        ProduceResponse::default()
            .with_responses(vec![topic.with_partition_responses(vec![
                produce_response::PartitionProduceResponse::default()
                    .with_index(0)
                    .with_error_code(6)
                    .with_current_leader(
                        produce_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(3))
                            .with_leader_epoch(1),
                    ),
            ])])
            .with_node_endpoints(
                self.addrs(false)
                    .into_iter()
                    .map(|(id, host, port)| {
                        produce_response::NodeEndpoint::default()
                            .with_node_id(BrokerId(id))
                            .with_host(host)
                            .with_port(port)
                    })
                    .collect(),
            )
    }

    /// NOT_LEADER_OR_FOLLOWER pointing at node 2, with all three endpoints.
    fn fetch(&self) -> FetchResponse {
        FetchResponse::default()
            .with_responses(vec![fetch_response::FetchableTopicResponse::default()
                .with_topic_id(uuid_one())
                .with_partitions(vec![fetch_response::PartitionData::default()
                    .with_partition_index(0)
                    .with_error_code(6)
                    .with_current_leader(
                        fetch_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(2))
                            .with_leader_epoch(1),
                    )])])
            .with_node_endpoints(
                self.addrs(false)
                    .into_iter()
                    .map(|(id, host, port)| {
                        fetch_response::NodeEndpoint::default()
                            .with_node_id(BrokerId(id))
                            .with_host(host)
                            .with_port(port)
                    })
                    .collect(),
            )
    }
}

/// The topic id the fake uses for Fetch.
pub fn uuid_one() -> uuid::Uuid {
    uuid::Uuid::from_u128(1)
}
