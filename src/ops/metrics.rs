//! Prometheus metrics of the proxy, rendered by the admin server at `/metrics`.
//!
//! Names start with `quarantine_`. Label values are static strings or small sets (API
//! names, error kinds, directions), except the topic/group labels of the dead-letter
//! metrics, which are bounded by the configured watched topics and groups.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label: a Kafka API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// API name, e.g. `Fetch`; `Unknown` for keys the proxy does not know.
    pub api: &'static str,
}

/// Label: which way bytes went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `client_to_broker` or `broker_to_client`.
    pub direction: &'static str,
}

/// Label: a kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Short machine-readable kind, e.g. `frame_too_large`, `upstream_connect`.
    pub kind: &'static str,
}

/// Label: a watched partition's owner.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DivertLabel {
    /// Source topic.
    pub topic: String,
    /// Consumer group.
    pub group: String,
    /// Why: `crash-loop`, `seek-back`, `stalled`, `redelivery`, `manual`, or a check stage.
    pub reason: String,
}

/// Label: topic and group.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicGroupLabel {
    /// Source topic.
    pub topic: String,
    /// Consumer group.
    pub group: String,
}

/// Label: group and why a partition's records were held back.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HoldLabel {
    /// Consumer group.
    pub group: String,
    /// `search` (the partition's own isolation window) or `probe` (another partition's
    /// suspect record is delivered alone).
    pub reason: String,
}

/// Label: a consumer group.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    /// Consumer group.
    pub group: String,
}

/// Label: a consumer group and why fast failover did not leave for a member.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabel {
    /// Consumer group.
    pub group: String,
    /// `back` (its member id came back), `still_fetching` (its process still fetches its
    /// partitions), `static` (a static member, left alone).
    pub reason: &'static str,
}

/// Every metric the proxy exports.
pub struct Metrics {
    /// The registry the admin server renders.
    pub registry: Registry,
    /// Client connections open now.
    pub connections_open: Gauge,
    /// Client connections accepted since start.
    pub connections_total: Counter,
    /// Client connections closed on accept because `proxy.max_connections` were open.
    pub connections_refused: Counter,
    /// Bytes moved, by direction.
    pub bytes: Family<DirectionLabel, Counter>,
    /// Requests forwarded, by API.
    pub requests: Family<ApiLabel, Counter>,
    /// Time from a request's arrival to its response leaving the proxy, by API.
    pub request_seconds: Family<ApiLabel, Histogram>,
    /// Time the broker took (request written upstream to response read), by API.
    pub upstream_seconds: Family<ApiLabel, Histogram>,
    /// Errors, by kind.
    pub errors: Family<KindLabel, Counter>,
    /// Records written to a dead-letter topic.
    pub diverted: Family<DivertLabel, Counter>,
    /// Partitions whose group is suspected of failing on a record.
    pub partitions_suspect: Gauge,
    /// Partitions being delivered one window at a time to find the failing record.
    pub partitions_isolated: Gauge,
    /// Dead-letter write latency (until acks=all).
    pub dlq_write_seconds: Histogram,
    /// Dead-letter writes that failed (the record stays visible and is retried).
    pub dlq_write_failures: Counter,
    /// Offsets hidden from their group now.
    pub quarantined_offsets: Gauge,
    /// Commit stalls reported.
    pub commit_stalls: Family<TopicGroupLabel, Counter>,
    /// Partition responses whose records were held back (withheld or cut) by detection.
    pub fetch_holds: Family<HoldLabel, Counter>,
    /// Records that failed a configured check or transform, by topic/group/stage.
    pub check_failures: Family<DivertLabel, Counter>,
    /// Records passed on without a check's verdict (schema registry down or schema
    /// unusable), by topic/group.
    pub records_unverified: Family<TopicGroupLabel, Counter>,
    /// 1 while a group's deploy guard is tripped (diversions paused), else 0.
    pub guard_tripped: Family<GroupLabel, Gauge>,
    /// Times a group's deploy guard tripped.
    pub guard_trips: Family<GroupLabel, Counter>,
    /// Poison diversions the deploy guard refused.
    pub guard_refused: Family<GroupLabel, Counter>,
    /// Batches rewritten on the fetch path (records hidden, trimmed or transformed).
    pub batches_rewritten: Counter,
    /// Fetch responses streamed through unchanged.
    pub fetch_streamed: Counter,
    /// Fetch responses held whole because they could be changed.
    pub fetch_held: Counter,
    /// Bytes held whole now (request frames and responses that may change), against
    /// `proxy.buffer_budget_bytes`.
    pub buffered_bytes: Gauge,
    /// Frames that waited for room in the buffer budget.
    pub budget_waits: Counter,
    /// Poison searches taken over from another sidecar's state (or this one's before a
    /// restart), read from the state topic.
    pub searches_adopted: Counter,
    /// Leaves sent on behalf of consumer members whose process was gone, and accepted.
    pub member_leaves_sent: Family<GroupLabel, Counter>,
    /// Leaves on behalf of gone members that failed (the member times out as usual).
    pub member_leave_failures: Family<GroupLabel, Counter>,
    /// Members whose group connections all closed but that were not left for, by reason.
    pub member_leaves_skipped: Family<SkipLabel, Counter>,
    /// Last time (unix seconds) the admin server rendered metrics; keeps a cheap liveness clue.
    pub scrapes: Counter<u64, AtomicU64>,
    /// 1 when `/ready` would answer 200, else 0 (set at each scrape and probe).
    pub ready: Gauge,
    /// Partitions detection is working on, by group/topic/partition/phase (bounded).
    pub partition_states: crate::ops::collectors::PartitionStates,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("quarantine");
        let latency = || Histogram::new(exponential_buckets(0.000_025, 2.0, 20));
        let m = Metrics {
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            connections_refused: Counter::default(),
            bytes: Family::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency),
            upstream_seconds: Family::new_with_constructor(latency),
            errors: Family::default(),
            diverted: Family::default(),
            partitions_suspect: Gauge::default(),
            partitions_isolated: Gauge::default(),
            dlq_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            dlq_write_failures: Counter::default(),
            quarantined_offsets: Gauge::default(),
            commit_stalls: Family::default(),
            fetch_holds: Family::default(),
            check_failures: Family::default(),
            records_unverified: Family::default(),
            guard_tripped: Family::default(),
            guard_trips: Family::default(),
            guard_refused: Family::default(),
            batches_rewritten: Counter::default(),
            fetch_streamed: Counter::default(),
            fetch_held: Counter::default(),
            buffered_bytes: Gauge::default(),
            budget_waits: Counter::default(),
            searches_adopted: Counter::default(),
            member_leaves_sent: Family::default(),
            member_leave_failures: Family::default(),
            member_leaves_skipped: Family::default(),
            scrapes: Counter::default(),
            ready: Gauge::default(),
            partition_states: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections_open",
            "Client connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            m.connections_total.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed on accept: proxy.max_connections were open",
            m.connections_refused.clone(),
        );
        registry.register("bytes", "Bytes moved through the proxy", m.bytes.clone());
        registry.register("requests", "Requests forwarded", m.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Request arrival to response sent, proxy plus broker time",
            m.request_seconds.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Request written upstream to response read: broker time",
            m.upstream_seconds.clone(),
        );
        registry.register("errors", "Errors by kind", m.errors.clone());
        registry.register(
            "records_diverted",
            "Records written to a dead-letter topic",
            m.diverted.clone(),
        );
        registry.register(
            "partitions_suspect",
            "Partitions suspected of holding a poison record",
            m.partitions_suspect.clone(),
        );
        registry.register(
            "partitions_isolated",
            "Partitions delivered one window at a time to find the poison record",
            m.partitions_isolated.clone(),
        );
        registry.register(
            "dlq_write_duration_seconds",
            "Dead-letter write latency until acknowledged",
            m.dlq_write_seconds.clone(),
        );
        registry.register(
            "dlq_write_failures",
            "Dead-letter writes that failed; the record stays visible",
            m.dlq_write_failures.clone(),
        );
        registry.register(
            "quarantined_offsets",
            "Offsets hidden from their consumer group",
            m.quarantined_offsets.clone(),
        );
        registry.register(
            "commit_stalls",
            "Partitions whose commit stopped while records were delivered",
            m.commit_stalls.clone(),
        );
        registry.register(
            "fetch_holds",
            "Partition responses whose records detection held back: `search` for the partition's own isolation window, `probe` while another partition's suspect record is delivered alone",
            m.fetch_holds.clone(),
        );
        registry.register(
            "check_failures",
            "Records that failed a configured check or transform",
            m.check_failures.clone(),
        );
        registry.register(
            "records_unverified",
            "Records passed to the consumer unchecked because a check could not decide (schema registry unreachable or failing)",
            m.records_unverified.clone(),
        );
        registry.register(
            "guard_tripped",
            "1 while the deploy guard of a group is tripped: its failures are not isolated, diversions are paused",
            m.guard_tripped.clone(),
        );
        registry.register(
            "guard_trips",
            "Times the deploy guard of a group tripped",
            m.guard_trips.clone(),
        );
        registry.register(
            "guard_diversions_refused",
            "Poison diversions the deploy guard refused",
            m.guard_refused.clone(),
        );
        registry.register(
            "searches_adopted",
            "Poison searches taken over from the state topic, written by another sidecar or by this one before a restart",
            m.searches_adopted.clone(),
        );
        registry.register(
            "batches_rewritten",
            "Record batches re-encoded on the fetch path",
            m.batches_rewritten.clone(),
        );
        registry.register(
            "fetch_responses_streamed",
            "Fetch responses streamed to the client as they arrived (nothing to change in them)",
            m.fetch_streamed.clone(),
        );
        registry.register(
            "fetch_responses_held",
            "Fetch responses held whole because records in them could be hidden, transformed or held back",
            m.fetch_held.clone(),
        );
        registry.register(
            "buffered_bytes",
            "Bytes held whole now (large request frames and responses that may change), against proxy.buffer_budget_bytes",
            m.buffered_bytes.clone(),
        );
        registry.register(
            "buffer_budget_waits",
            "Frames that waited for room in the buffer budget",
            m.budget_waits.clone(),
        );
        registry.register(
            "member_leaves_sent",
            "Leaves sent (and accepted) for consumer members whose connections all closed without one (fast failover)",
            m.member_leaves_sent.clone(),
        );
        registry.register(
            "member_leave_failures",
            "Fast-failover leaves that failed; the member times out as usual",
            m.member_leave_failures.clone(),
        );
        registry.register(
            "member_leaves_skipped",
            "Members whose group connections closed that fast failover did not leave for",
            m.member_leaves_skipped.clone(),
        );
        registry.register(
            "metrics_scrapes",
            "Times /metrics was rendered",
            m.scrapes.clone(),
        );
        registry.register(
            "ready",
            "1 when /ready answers 200: the cluster answered Metadata, every broker-node listener is bound, the state topic is read",
            m.ready.clone(),
        );
        registry.register_collector(Box::new(m.partition_states.clone()));
        registry.register_collector(Box::new(crate::ops::collectors::BuildInfo));
        root.register_collector(Box::new(crate::ops::collectors::ProcessCollector));
        Metrics {
            registry: root,
            ..m
        }
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        self.scrapes.inc();
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The display name of an API key, for labels and logs.
pub fn api_name(key: i16) -> &'static str {
    match kafka_protocol::messages::ApiKey::try_from(key) {
        Ok(api) => api_key_name(api),
        Err(()) => "Unknown",
    }
}

fn api_key_name(api: kafka_protocol::messages::ApiKey) -> &'static str {
    use kafka_protocol::messages::ApiKey as A;
    match api {
        A::Produce => "Produce",
        A::Fetch => "Fetch",
        A::ListOffsets => "ListOffsets",
        A::Metadata => "Metadata",
        A::OffsetCommit => "OffsetCommit",
        A::OffsetFetch => "OffsetFetch",
        A::FindCoordinator => "FindCoordinator",
        A::JoinGroup => "JoinGroup",
        A::Heartbeat => "Heartbeat",
        A::LeaveGroup => "LeaveGroup",
        A::SyncGroup => "SyncGroup",
        A::DescribeGroups => "DescribeGroups",
        A::ListGroups => "ListGroups",
        A::SaslHandshake => "SaslHandshake",
        A::ApiVersions => "ApiVersions",
        A::CreateTopics => "CreateTopics",
        A::DeleteTopics => "DeleteTopics",
        A::InitProducerId => "InitProducerId",
        A::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        A::AddPartitionsToTxn => "AddPartitionsToTxn",
        A::AddOffsetsToTxn => "AddOffsetsToTxn",
        A::EndTxn => "EndTxn",
        A::TxnOffsetCommit => "TxnOffsetCommit",
        A::DescribeConfigs => "DescribeConfigs",
        A::AlterConfigs => "AlterConfigs",
        A::SaslAuthenticate => "SaslAuthenticate",
        A::CreatePartitions => "CreatePartitions",
        A::DeleteGroups => "DeleteGroups",
        A::DescribeCluster => "DescribeCluster",
        A::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        A::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        A::DeleteRecords => "DeleteRecords",
        A::DescribeAcls => "DescribeAcls",
        A::DescribeLogDirs => "DescribeLogDirs",
        A::OffsetDelete => "OffsetDelete",
        A::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        A::DescribeProducers => "DescribeProducers",
        A::DescribeTransactions => "DescribeTransactions",
        A::ListTransactions => "ListTransactions",
        A::GetTelemetrySubscriptions => "GetTelemetrySubscriptions",
        A::PushTelemetry => "PushTelemetry",
        A::ShareGroupHeartbeat => "ShareGroupHeartbeat",
        A::ShareGroupDescribe => "ShareGroupDescribe",
        A::ShareFetch => "ShareFetch",
        A::ShareAcknowledge => "ShareAcknowledge",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_names_with_labels() {
        let m = Metrics::new();
        m.error("frame_too_large");
        m.requests.get_or_create(&ApiLabel { api: "Fetch" }).inc();
        let text = m.render();
        assert!(
            text.contains("quarantine_errors_total{kind=\"frame_too_large\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("quarantine_requests_total{api=\"Fetch\"} 1"),
            "{text}"
        );
        assert!(text.contains("quarantine_ready 0"), "{text}");
        assert!(
            text.contains(&format!(
                "quarantine_build_info{{version=\"{}\",commit=",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(
            text.contains("quarantine_partition_state_omitted 0"),
            "{text}"
        );
        m.partition_states
            .set(vec![crate::ops::collectors::PartitionStateLabels {
                group: "g".into(),
                topic: "orders".into(),
                partition: "3".into(),
                phase: "isolating",
            }]);
        let text = m.render();
        assert!(
            text.contains("quarantine_partition_state{group=\"g\",topic=\"orders\",partition=\"3\",phase=\"isolating\"} 1"),
            "{text}"
        );
        assert_eq!(api_name(1), "Fetch");
        assert_eq!(api_name(-7), "Unknown");
    }
}
