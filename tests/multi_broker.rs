//! Broker address rewriting against a fake three-broker cluster: every answer that names
//! brokers (Metadata, FindCoordinator, DescribeCluster, Produce v10+ and Fetch v16+
//! `node_endpoints`) names only proxy addresses, every per-node listener is open, a
//! connection to node N's port reaches broker N, and a node whose port would not fit in a
//! `u16` is never leaked by its real address.

#[path = "support/fake_cluster.rs"]
mod fake_cluster;
#[allow(dead_code)] // shared with other test crates
#[path = "support/proxy.rs"]
mod proxy_support;

use std::collections::BTreeSet;

use fake_cluster::{uuid_one, FakeCluster, OVERFLOW, OVERFLOW_NODE, REAL_HOST};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeClusterRequest, FetchRequest, FindCoordinatorRequest,
    MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use proxy_support::{client, free_node_port_base, start_proxy, PORTS};
use quarantine::app::App;
use quarantine::route::nodes::{brokers_named, NamesBrokers};

/// A fake cluster and a proxy in front of it.
struct Setup {
    cluster: FakeCluster,
    app: App,
    base: u16,
}

impl Setup {
    async fn start() -> Setup {
        let cluster = FakeCluster::start().await;
        let base = free_node_port_base(&[1, 2, 3]);
        let yaml = format!(
            "proxy: {{listen: '127.0.0.1:0', advertised_host: 127.0.0.1, node_port_base: {base}}}\n\
             upstream: {{bootstrap_servers: ['{}'], connect_timeout_ms: 3000}}\n\
             admin: {{listen: '127.0.0.1:0'}}\n\
             watch: {{enabled: false}}\n",
            cluster.bootstrap()
        );
        let app = start_proxy(&yaml).await;
        Setup { cluster, app, base }
    }

    fn bootstrap_port(&self) -> u16 {
        self.app.listen.port()
    }

    /// Asserts every named broker is `127.0.0.1:base+id`, never a real address, and that
    /// exactly `want` node ids are named.
    fn assert_proxy_addresses(&self, what: &str, msg: &mut dyn NamesBrokers, want: &[i32]) {
        let named = brokers_named(msg);
        let real = self.cluster.real_ports();
        let ids: BTreeSet<i32> = named.iter().map(|n| n.0).collect();
        assert_eq!(
            ids,
            want.iter().copied().collect::<BTreeSet<_>>(),
            "{what}: nodes named"
        );
        for (id, host, port) in &named {
            assert_ne!(host, REAL_HOST, "{what}: node {id} leaked its real host");
            assert!(
                !real.contains(port),
                "{what}: node {id} leaked a real port {port}"
            );
            let expected = u16::try_from(i32::from(self.base) + id).expect("fits");
            assert_eq!(
                (host.as_str(), *port),
                ("127.0.0.1", expected),
                "{what}: node {id}"
            );
        }
    }
}

fn metadata_request(version: i16, topics: &[&str]) -> MetadataRequest {
    let topics = topics
        .iter()
        .map(|t| {
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
        })
        .collect();
    let mut req = MetadataRequest::default().with_topics(Some(topics));
    if version >= 4 {
        req.allow_auto_topic_creation = false;
    }
    req
}

fn max_version(api: ApiKey) -> i16 {
    api.valid_versions().max
}

#[tokio::test]
async fn every_answer_names_only_proxy_addresses() {
    let _ports = PORTS.lock().await;
    let s = Setup::start().await;
    let mut c = client(s.bootstrap_port(), "rewrite-test").await;

    for v in [0, 3] {
        let av = c
            .send(&ApiVersionsRequest::default(), v)
            .await
            .expect("ApiVersions");
        assert_eq!(av.error_code, 0, "ApiVersions v{v}");
        assert!(
            av.api_keys
                .iter()
                .any(|k| k.api_key == ApiKey::Metadata as i16),
            "ApiVersions v{v} lists Metadata"
        );
    }

    let mut versions = vec![0, 1, 4, 7, 8, 9, 10, 12];
    versions.push(max_version(ApiKey::Metadata));
    for v in versions {
        let mut md = c
            .send(&metadata_request(v, &["orders"]), v)
            .await
            .unwrap_or_else(|e| panic!("Metadata v{v}: {e}"));
        s.assert_proxy_addresses(&format!("Metadata v{v}"), &mut md, &[1, 2, 3]);
        assert_eq!(md.topics.len(), 1, "Metadata v{v} topics");
        let leaders: Vec<i32> = md.topics[0]
            .partitions
            .iter()
            .map(|p| p.leader_id.0)
            .collect();
        assert_eq!(leaders, vec![1, 2, 3], "Metadata v{v}: leaders untouched");
    }

    for v in 0..=max_version(ApiKey::FindCoordinator) {
        let mut req = FindCoordinatorRequest::default();
        let want = if v < 4 {
            req.key = StrBytes::from_static_str("group-2");
            vec![2]
        } else {
            req.coordinator_keys = vec![
                StrBytes::from_static_str("group-1"),
                StrBytes::from_static_str("group-3"),
            ];
            vec![1, 3]
        };
        let mut fc = c
            .send(&req, v)
            .await
            .unwrap_or_else(|e| panic!("FindCoordinator v{v}: {e}"));
        s.assert_proxy_addresses(&format!("FindCoordinator v{v}"), &mut fc, &want);
        if v >= 4 {
            assert_eq!(fc.coordinators.len(), 2, "FindCoordinator v{v}");
            assert_eq!(fc.port, 0, "v{v}: the absent top-level node stays unset");
        }
    }

    for v in 0..=max_version(ApiKey::DescribeCluster) {
        let mut dc = c
            .send(&DescribeClusterRequest::default(), v)
            .await
            .unwrap_or_else(|e| panic!("DescribeCluster v{v}: {e}"));
        s.assert_proxy_addresses(&format!("DescribeCluster v{v}"), &mut dc, &[1, 2, 3]);
        assert_eq!(dc.cluster_id.as_str(), "fake-cluster");
    }

    for v in 10..=max_version(ApiKey::Produce) {
        let mut topic = TopicProduceData::default()
            .with_partition_data(vec![PartitionProduceData::default().with_index(0)]);
        if v >= 13 {
            topic.topic_id = uuid_one();
        } else {
            topic.name = TopicName(StrBytes::from_static_str("orders"));
        }
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![topic]);
        let mut pr = c
            .send(&req, v)
            .await
            .unwrap_or_else(|e| panic!("Produce v{v}: {e}"));
        s.assert_proxy_addresses(&format!("Produce v{v}"), &mut pr, &[1, 2, 3]);
        let p = &pr.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.current_leader.leader_id.0), (6, 3));
    }

    for v in 16..=max_version(ApiKey::Fetch) {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(uuid_one())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let mut fr = c
            .send(&req, v)
            .await
            .unwrap_or_else(|e| panic!("Fetch v{v}: {e}"));
        s.assert_proxy_addresses(&format!("Fetch v{v}"), &mut fr, &[1, 2, 3]);
        let p = &fr.responses[0].partitions[0];
        assert_eq!((p.error_code, p.current_leader.leader_id.0), (6, 2));
    }

    for id in 1..=3 {
        let port = u16::try_from(i32::from(s.base) + id).expect("fits");
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok(),
            "the listener of node {id} on {port} is open"
        );
    }
    let seen = s.cluster.seen_by_client("rewrite-test");
    assert!(
        seen.iter().all(|r| r.broker == 1),
        "the bootstrap connection reaches the bootstrap server only: {seen:?}"
    );
    assert!(seen
        .iter()
        .any(|r| r.api_key == ApiKey::Fetch as i16 && r.api_version >= 16));
}

#[tokio::test]
async fn a_node_port_reaches_that_broker() {
    let _ports = PORTS.lock().await;
    let s = Setup::start().await;
    // Node listeners open once a client has learned of the nodes.
    let mut c = client(s.bootstrap_port(), "learn").await;
    let mut md = c
        .send(&metadata_request(12, &[]), 12)
        .await
        .expect("Metadata");
    s.assert_proxy_addresses("Metadata v12", &mut md, &[1, 2, 3]);

    for id in [2, 3, 1] {
        let port = u16::try_from(i32::from(s.base) + id).expect("fits");
        let who = format!("via-node-{id}");
        let mut c = client(port, &who).await;
        for v in [1, 9, 12] {
            let mut md = c
                .send(&metadata_request(v, &["orders"]), v)
                .await
                .unwrap_or_else(|e| panic!("Metadata v{v} via node {id}: {e}"));
            s.assert_proxy_addresses(&format!("Metadata v{v} via node {id}"), &mut md, &[1, 2, 3]);
        }
        let mut fc = c
            .send(
                &FindCoordinatorRequest::default()
                    .with_coordinator_keys(vec![StrBytes::from_static_str("group-2")]),
                4,
            )
            .await
            .expect("FindCoordinator v4");
        s.assert_proxy_addresses("FindCoordinator v4", &mut fc, &[2]);
        let seen = s.cluster.seen_by_client(&who);
        assert_eq!(seen.len(), 4, "every request arrived: {seen:?}");
        assert!(
            seen.iter().all(|r| r.broker == id),
            "the port of node {id} reaches broker {id}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_node_whose_port_overflows_is_not_leaked() {
    let _ports = PORTS.lock().await;
    let s = Setup::start().await;
    let real = s.cluster.real_ports();
    let mut c = client(s.bootstrap_port(), "overflow-test").await;
    let leaked = |named: &[(i32, String, u16)]| {
        named
            .iter()
            .find(|n| n.0 == OVERFLOW_NODE)
            .map(|n| (n.1.clone(), n.2))
            .expect("the overflow node is still named")
    };
    for v in [1, 9, 12] {
        let mut md = c
            .send(&metadata_request(v, &[OVERFLOW]), v)
            .await
            .unwrap_or_else(|e| panic!("Metadata v{v}: {e}"));
        assert_eq!(md.brokers.len(), 4);
        let named = brokers_named(&mut md);
        let (host, port) = leaked(&named);
        assert_ne!(host, REAL_HOST, "Metadata v{v}: real host leaked");
        assert!(!real.contains(&port), "Metadata v{v}: real port leaked");
        assert_eq!((host.as_str(), port), ("unmapped.invalid", 1));
        // The other three are still rewritten as usual.
        md.brokers.retain(|b| b.node_id.0 != OVERFLOW_NODE);
        s.assert_proxy_addresses(&format!("Metadata v{v}"), &mut md, &[1, 2, 3]);
    }
    for v in [3, 4, 6] {
        let mut req = FindCoordinatorRequest::default();
        if v < 4 {
            req.key = StrBytes::from_static_str(OVERFLOW);
        } else {
            req.coordinator_keys = vec![StrBytes::from_static_str(OVERFLOW)];
        }
        let mut fc = c
            .send(&req, v)
            .await
            .unwrap_or_else(|e| panic!("FindCoordinator v{v}: {e}"));
        let named = brokers_named(&mut fc);
        assert_eq!(named.len(), 1);
        assert_eq!(
            leaked(&named),
            ("unmapped.invalid".to_string(), 1),
            "FindCoordinator v{v}"
        );
    }
}
