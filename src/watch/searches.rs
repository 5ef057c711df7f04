//! The poison searches under way, as an operator reads them: `GET /quarantine/searches`
//! on the admin API (`quarantine searches` prints it). One row per partition
//! that has failed and not been passed by its commit since: where the search stands,
//! which record it suspects, whether that record is being probed alone, and which sidecar
//! wrote the state last.

use serde::{Deserialize, Serialize};

use crate::detect::Phase;

use super::ConsumerWatch;

/// One partition's search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchView {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// `suspect`, `isolating`, `diverting`, or `normal` with failures still open.
    pub phase: String,
    /// The group's committed offset, when known.
    pub committed: Option<i64>,
    /// Failures whose records the commit has not passed.
    pub open_failures: usize,
    /// Highest offset believed good, in isolation.
    pub good_to: Option<i64>,
    /// Last offset the group may receive now, in isolation.
    pub window_end: Option<i64>,
    /// Highest offset that can still be the poison, in isolation.
    pub range_end: Option<i64>,
    /// Failures seen in isolation.
    pub failures: u32,
    /// The one record the search narrowed to.
    pub candidate: Option<i64>,
    /// Failures of the candidate while it was the only record out.
    pub confirmations: u32,
    /// The record being written to the dead-letter topic.
    pub diverting: Option<i64>,
    /// The group's other partitions are held back while this one's record is delivered
    /// alone.
    pub probing: bool,
    /// The sidecar that wrote this search state last.
    pub holder: String,
}

/// Every search this sidecar knows of, sorted by group, topic, partition.
pub fn views(watch: &ConsumerWatch) -> Vec<SearchView> {
    let me = watch.diverter.instance().to_string();
    let searches = watch
        .detector
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .searches();
    searches
        .into_iter()
        .map(|(key, st)| {
            let iso = st.isolation;
            SearchView {
                group: key.group,
                topic: key.topic,
                partition: key.partition,
                phase: match st.phase {
                    Phase::Normal => "normal",
                    Phase::Suspect => "suspect",
                    Phase::Isolating => "isolating",
                    Phase::Diverting => "diverting",
                }
                .to_string(),
                committed: st.committed,
                open_failures: st.open_failures,
                good_to: iso.map(|i| i.good_to),
                window_end: iso.map(|i| i.window_end),
                range_end: iso.map(|i| i.range_end),
                failures: iso.map_or(0, |i| i.failures),
                candidate: iso.and_then(|i| i.candidate),
                confirmations: iso.map_or(0, |i| i.confirmations),
                diverting: iso.and_then(|i| i.diverting),
                probing: st.probing,
                holder: st.owner.unwrap_or_else(|| me.clone()),
            }
        })
        .collect()
}
