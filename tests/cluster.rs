//! The proxy's own Kafka operations (`cluster`) and the `quarantine dlq` tools against a
//! real broker: tansu from `TANSU_BIN`. Every test skips with a message when it is unset.
//! Results are checked with a real client (confluent-kafka) where python3 has it.

#[path = "cluster_support/dlq_tools.rs"]
mod dlq_tools;
#[path = "cluster_support/tansu.rs"]
mod tansu;

use std::time::Duration;

use bytes::Bytes;
use quarantine::cluster::{Cluster, ClusterError, Connector, OffsetSpec};
use quarantine::protocol::record::{Header, Record};
use tansu::{python, Broker, CONSUME_PY, TOPIC_PY};

/// A cluster client for the broker.
pub fn cluster(b: &Broker) -> Cluster {
    Cluster::new(
        Connector::plain(Duration::from_secs(5)),
        vec![("127.0.0.1".into(), b.port)],
        "quarantine-test",
    )
    .with_request_timeout(Duration::from_secs(10))
}

fn rec(key: &str, value: Option<&str>, headers: &[(&str, Option<&str>)]) -> Record {
    Record {
        offset: 0,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from(key.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: headers
            .iter()
            .map(|(k, v)| Header {
                key: k.to_string(),
                value: v.map(|v| Bytes::from(v.to_string())),
            })
            .collect(),
    }
}

#[tokio::test]
async fn creates_topics_and_reads_metadata() {
    let Some(b) = Broker::start() else { return };
    let c = cluster(&b);
    let configs = [("cleanup.policy", "delete"), ("retention.ms", "1209600000")];
    // Replication factor 3 on a 1-broker cluster is lowered, not refused.
    assert!(c.create_topic("orders.dlq", 3, 3, &configs).await.unwrap());
    assert!(
        !c.create_topic("orders.dlq", 3, 3, &configs).await.unwrap(),
        "TOPIC_ALREADY_EXISTS is success"
    );
    let md = c.metadata(&["orders.dlq", "missing"]).await.unwrap();
    assert_eq!(md.broker_count(), 1);
    assert_eq!(md.brokers.values().next().unwrap().port, b.port);
    assert_eq!(md.partition_count("orders.dlq"), Some(3));
    for p in 0..3 {
        assert!(
            md.leader("orders.dlq", p).is_some(),
            "partition {p} has a leader"
        );
    }
    assert!(
        md.topics["orders.dlq"].topic_id.is_some(),
        "Metadata v10+ names topic ids"
    );
    assert_eq!(md.topics["missing"].error_code, 3);
    assert!(md.topic("missing").is_none());
    let all = c.all_topics().await.unwrap();
    assert!(all.topic("orders.dlq").is_some());
    assert!(
        all.topic("missing").is_none(),
        "metadata never auto-creates"
    );
    assert!(matches!(
        c.create_topic("bad name", 1, 1, &[]).await,
        Err(ClusterError::Invalid(_))
    ));
    if let Some(out) = python(TOPIC_PY, &[&b.addr(), "orders.dlq"]) {
        assert_eq!(out.trim(), "orders.dlq 3", "as confluent-kafka sees it");
    }
}

#[tokio::test]
async fn produces_to_the_leader_and_fetches_back() {
    let Some(b) = Broker::start() else { return };
    let c = cluster(&b);
    c.create_topic("orders", 2, 1, &[]).await.unwrap();
    let first = vec![
        rec("k0", Some("v0"), &[("trace", Some("t0")), ("empty", None)]),
        rec("k1", None, &[]),
        rec("k2", Some("v2"), &[("a", Some("1")), ("b", Some("2"))]),
    ];
    let second = vec![rec("k3", Some("v3"), &[]), rec("k4", Some("v4"), &[])];
    let wait = Duration::from_secs(10);
    assert_eq!(c.produce("orders", 1, &first, -1, wait).await.unwrap(), 0);
    assert_eq!(c.produce("orders", 1, &second, -1, wait).await.unwrap(), 3);

    let all = c.read("orders", 1, 0, 100).await.unwrap();
    let offsets: Vec<i64> = all.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    for (got, want) in all.iter().zip(first.iter().chain(second.iter())) {
        assert_eq!(
            (&got.key, &got.value, &got.headers, got.timestamp),
            (&want.key, &want.value, &want.headers, want.timestamp)
        );
    }
    let mid = c.fetch("orders", 1, 4, 1 << 20).await.unwrap();
    assert_eq!(mid.records.first().map(|r| r.offset), Some(4));
    assert_eq!(mid.next_offset, 5);
    let end = c.fetch("orders", 1, 5, 1 << 20).await.unwrap();
    assert!(end.records.is_empty());
    assert_eq!(end.next_offset, 5);
    assert_eq!(c.read("orders", 1, 0, 2).await.unwrap().len(), 2);
    assert!(c.read("orders", 0, 0, 10).await.unwrap().is_empty());
    assert_eq!(
        c.list_offsets("orders", 1, OffsetSpec::Earliest)
            .await
            .unwrap(),
        0
    );

    if let Some(out) = python(CONSUME_PY, &[&b.addr(), "orders", "1", "5"]) {
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5, "confluent-kafka reads every record");
        assert_eq!(lines[0]["key"], "k0");
        assert_eq!(lines[0]["value"], "v0");
        assert_eq!(
            lines[0]["headers"],
            serde_json::json!([["trace", "t0"], ["empty", null]])
        );
        assert!(lines[1]["value"].is_null(), "tombstone kept");
        assert_eq!(lines[4]["offset"], 4);
    }
}

#[tokio::test]
async fn errors_are_returned_after_bounded_retries() {
    let Some(b) = Broker::start() else { return };
    let c = cluster(&b).with_retries(1);
    c.create_topic("orders", 2, 1, &[]).await.unwrap();
    let one = [rec("k", Some("v"), &[])];
    let wait = Duration::from_secs(5);
    assert!(matches!(
        c.produce("no.such.topic", 0, &one, -1, wait).await,
        Err(ClusterError::UnknownTopic(t)) if t == "no.such.topic"
    ));
    assert!(matches!(
        c.produce("orders", 7, &one, -1, wait).await,
        Err(ClusterError::UnknownPartition { partition: 7, .. })
    ));
    assert!(matches!(
        c.produce("orders", 0, &one, 0, wait).await,
        Err(ClusterError::Invalid(_))
    ));
    assert!(matches!(
        c.produce("orders", 0, &[], -1, wait).await,
        Err(ClusterError::Invalid(_))
    ));
    // Producing to it did not auto-create it.
    let md = c.metadata(&["no.such.topic"]).await.unwrap();
    assert_eq!(md.topics["no.such.topic"].error_code, 3);
}

#[tokio::test]
async fn reconnects_after_the_broker_restarts() {
    let Some(b) = Broker::start() else { return };
    let bin = std::env::var("TANSU_BIN").expect("set, as the broker started");
    let port = b.port;
    let c = cluster(&b).with_retries(2);
    c.create_topic("t", 1, 1, &[]).await.unwrap();
    let one = [rec("k", Some("v"), &[])];
    let wait = Duration::from_secs(5);
    assert_eq!(c.produce("t", 0, &one, -1, wait).await.unwrap(), 0);
    b.stop();
    let down = c.metadata(&[]).await;
    assert!(down.is_err(), "a stopped broker is an error, not a hang");
    let b = Broker::start_on(&bin, port);
    // Memory storage: the topic is gone with the old process; create it again.
    c.create_topic("t", 1, 1, &[]).await.unwrap();
    assert_eq!(c.produce("t", 0, &one, -1, wait).await.unwrap(), 0);
    assert_eq!(c.read("t", 0, 0, 10).await.unwrap().len(), 1);
    drop(b);
}
