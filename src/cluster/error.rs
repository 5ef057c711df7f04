//! Errors of the proxy's own Kafka operations, and which of them are worth a retry.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

use super::CodecError;
use crate::cluster::kafka_client::ClientError;

/// Why one of the proxy's own Kafka operations failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No connection could be opened.
    #[error("cannot reach broker {addr}: {message}")]
    Connect {
        /// `host:port` tried last.
        addr: String,
        /// What failed.
        message: String,
    },
    /// A request failed on an open connection (the connection is dropped).
    #[error("broker {addr}: {source}")]
    Client {
        /// `host:port` of the broker.
        addr: String,
        /// What failed.
        source: ClientError,
    },
    /// The broker supports no version of an API in the range the proxy uses.
    #[error("broker {addr} supports no version of {api:?} between v{min} and v{max}")]
    Unsupported {
        /// `host:port` of the broker.
        addr: String,
        /// The API.
        api: ApiKey,
        /// Lowest version the proxy can use.
        min: i16,
        /// Highest version the proxy can use.
        max: i16,
    },
    /// The broker did not answer in time (the connection is dropped).
    #[error("broker {addr} did not answer within {ms} ms")]
    Timeout {
        /// `host:port` of the broker.
        addr: String,
        /// The limit.
        ms: u64,
    },
    /// The broker answered with an error code.
    #[error("{what}: {} (error code {code}){}", error_name(*code), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// What was attempted, e.g. `produce to orders[2]`.
        what: String,
        /// Kafka error code.
        code: i16,
        /// The broker's message, if any.
        message: Option<String>,
    },
    /// The topic does not exist.
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// The topic exists but not the partition.
    #[error("topic `{topic}` has no partition {partition}")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition asked for.
        partition: i32,
    },
    /// The partition has no leader right now.
    #[error("no leader for {topic}[{partition}]")]
    NoLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A node id that the metadata does not name.
    #[error("broker node {0} is not in the cluster metadata")]
    UnknownNode(i32),
    /// The offset is before the start or after the end of the partition.
    #[error("offset {offset} is out of range for {topic}[{partition}]")]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset asked for.
        offset: i64,
    },
    /// Records could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A bad argument or a response missing what was asked.
    #[error("{0}")]
    Invalid(String),
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => "no error".into(),
    }
}

/// Error codes after which the leader is looked up again and the request retried.
const LEADERSHIP_CODES: [i16; 3] = [3, 5, 6];

impl ClusterError {
    /// Whether refreshing metadata and retrying may help (not after a SASL failure).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClusterError::Client { source, .. } => !source.is_authentication(),
            ClusterError::Connect { .. }
            | ClusterError::Timeout { .. }
            | ClusterError::UnknownTopic(_)
            | ClusterError::UnknownPartition { .. }
            | ClusterError::NoLeader { .. }
            | ClusterError::UnknownNode(_) => true,
            ClusterError::Broker { code, .. } => LEADERSHIP_CODES.contains(code),
            _ => false,
        }
    }
}
