//! Checks the record a manual quarantine names before anything is written: an unknown
//! topic, partition or offset is the caller's mistake (HTTP 404, or 400 for a value that can
//! never exist), not the cluster's (502).

use axum::http::StatusCode;

use crate::cluster::{Cluster, ClusterError};

/// Why the named record cannot be quarantined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceProblem {
    /// A value that can never name a record (negative partition or offset, empty name).
    #[error("{0}")]
    BadRequest(String),
    /// The topic, partition or offset does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The cluster could not answer.
    #[error("{0}")]
    Upstream(String),
}

impl SourceProblem {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            SourceProblem::BadRequest(_) => StatusCode::BAD_REQUEST,
            SourceProblem::NotFound(_) => StatusCode::NOT_FOUND,
            SourceProblem::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Values that can never name a record.
pub fn check_shape(
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), SourceProblem> {
    if group.is_empty() {
        return Err(SourceProblem::BadRequest("`group` is empty".into()));
    }
    if topic.is_empty() {
        return Err(SourceProblem::BadRequest("`topic` is empty".into()));
    }
    if partition < 0 {
        return Err(SourceProblem::BadRequest(format!(
            "`partition` must be 0 or more, not {partition}"
        )));
    }
    if offset < 0 {
        return Err(SourceProblem::BadRequest(format!(
            "`offset` must be 0 or more, not {offset}"
        )));
    }
    Ok(())
}

/// Checks that `topic[partition]` exists and holds a record at `offset`.
pub async fn check_record(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), SourceProblem> {
    let md = cluster
        .metadata(&[topic])
        .await
        .map_err(|e| SourceProblem::Upstream(format!("reading metadata of `{topic}`: {e}")))?;
    let Some(count) = md.partition_count(topic) else {
        return Err(SourceProblem::NotFound(format!(
            "topic `{topic}` does not exist"
        )));
    };
    if partition >= count {
        return Err(SourceProblem::NotFound(format!(
            "topic `{topic}` has {count} partition(s): there is no partition {partition}"
        )));
    }
    match cluster.fetch(topic, partition, offset, 1 << 20).await {
        Ok(f) if f.records.iter().any(|r| r.offset == offset) => Ok(()),
        Ok(f) if offset >= f.high_watermark => Err(SourceProblem::NotFound(format!(
            "offset {offset} is past the end of {topic}[{partition}] (next offset {})",
            f.high_watermark
        ))),
        Ok(_) => Err(SourceProblem::NotFound(format!(
            "offset {offset} of {topic}[{partition}] holds no record (compacted away or a transaction marker)"
        ))),
        Err(ClusterError::OffsetOutOfRange { .. }) => Err(SourceProblem::NotFound(format!(
            "offset {offset} is out of range for {topic}[{partition}] (deleted by retention, or past the end)"
        ))),
        Err(ClusterError::UnknownTopic(_)) => {
            Err(SourceProblem::NotFound(format!("topic `{topic}` does not exist")))
        }
        Err(ClusterError::UnknownPartition { .. }) => Err(SourceProblem::NotFound(format!(
            "topic `{topic}` has no partition {partition}"
        ))),
        Err(e) => Err(SourceProblem::Upstream(format!("reading {topic}[{partition}]@{offset}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_values_are_bad_requests() {
        assert_eq!(check_shape("g", "t", 0, 0), Ok(()));
        for (g, t, p, o) in [
            ("", "t", 0, 0),
            ("g", "", 0, 0),
            ("g", "t", -1, 0),
            ("g", "t", 0, -5),
        ] {
            let e = check_shape(g, t, p, o).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
        }
    }
}
