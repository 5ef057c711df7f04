//! Fast failover: leaves a consumer group on behalf of a member whose process is gone, so
//! its partitions move in about a second instead of after `session.timeout.ms`.
//!
//! When the last connection carrying a member's group traffic closes without a leave
//! (a crash, an OOM kill), the member becomes a *departure*. After `grace` the proxy asks
//! [`Groups::whereabouts`]: a member whose id came back on a new connection, or whose
//! process (same client id and address) still fetches one of its partitions, is alive and
//! left alone; a static member is left alone unless `static_members` is set. Otherwise the
//! proxy sends the leave on its own connection to the coordinator: LeaveGroup for a classic
//! member, the leave heartbeat (`member_epoch = -1`) for a KIP-848 one.
//!
//! [`Departures`] and [`verdict`] are the pure part (when, and whether); [`FastFailover`]
//! runs the timers and the requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cluster::{Cluster, ClusterError, LeaveOutcome, Leaver};
use crate::groups::{Groups, LostMember, Whereabouts};
use crate::metrics::{GroupLabel, Metrics, SkipLabel};
use crate::watch::policy::FastFailoverConfig;

/// The reason sent with the leave (LeaveGroup v5+).
const REASON: &str = "quarantine: every client connection of this member closed without a leave";

/// Members waiting out their grace, each with the ticket of its latest departure, so a
/// member that came back and left again is judged only by its latest timer.
#[derive(Debug, Default)]
pub struct Departures {
    next: u64,
    pending: HashMap<(String, String), u64>,
}

impl Departures {
    /// A member's last group connection closed: returns the ticket its timer carries.
    pub fn depart(&mut self, group: &str, member_id: &str) -> u64 {
        self.next += 1;
        self.pending
            .insert((group.to_string(), member_id.to_string()), self.next);
        self.next
    }

    /// The timer with `ticket` fired: true (and forgotten) when it is the member's latest.
    pub fn due(&mut self, group: &str, member_id: &str, ticket: u64) -> bool {
        let key = (group.to_string(), member_id.to_string());
        if self.pending.get(&key) == Some(&ticket) {
            self.pending.remove(&key);
            true
        } else {
            false
        }
    }

    /// Members waiting now.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no member is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// What to do about a member once its grace has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leave on its behalf.
    Leave,
    /// Leave it alone, for this reason (a metric label).
    Skip(&'static str),
}

/// Whether a departed member is to be left for.
pub fn verdict(config: &FastFailoverConfig, lost: &LostMember, seen: Whereabouts) -> Verdict {
    if lost.instance_id.is_some() && !config.static_members {
        return Verdict::Skip("static");
    }
    match seen {
        Whereabouts::Back => Verdict::Skip("back"),
        Whereabouts::StillFetching => Verdict::Skip("still_fetching"),
        Whereabouts::Gone => Verdict::Leave,
    }
}

/// Runs departures' timers and sends the leaves.
pub struct FastFailover {
    config: FastFailoverConfig,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    departures: Mutex<Departures>,
}

impl FastFailover {
    /// Fast failover with `config`, leaving through `cluster`.
    pub fn new(config: FastFailoverConfig, cluster: Arc<Cluster>, metrics: Arc<Metrics>) -> Self {
        FastFailover {
            config,
            cluster,
            metrics,
            departures: Mutex::new(Departures::default()),
        }
    }

    fn departures(&self) -> std::sync::MutexGuard<'_, Departures> {
        self.departures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn skipped(&self, group: &str, reason: &'static str) {
        self.metrics
            .member_leaves_skipped
            .get_or_create(&SkipLabel {
                group: group.to_string(),
                reason,
            })
            .inc();
    }

    /// A member's group connections all closed without a leave: starts its grace timer.
    /// Needs a tokio runtime.
    pub fn member_lost(self: &Arc<Self>, groups: Arc<Mutex<Groups>>, lost: LostMember) {
        if lost.instance_id.is_some() && !self.config.static_members {
            tracing::debug!(group = %lost.group, member = %lost.member_id, "static member's connections closed; left to its session timeout");
            self.skipped(&lost.group, "static");
            return;
        }
        let ticket = self.departures().depart(&lost.group, &lost.member_id);
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.config.grace).await;
            if !this.departures().due(&lost.group, &lost.member_id, ticket) {
                return;
            }
            let seen = groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .whereabouts(&lost);
            match verdict(&this.config, &lost, seen) {
                Verdict::Skip(reason) => {
                    tracing::debug!(group = %lost.group, member = %lost.member_id, reason, "member's group connections closed but it is not gone");
                    this.skipped(&lost.group, reason);
                }
                Verdict::Leave => this.leave(&lost).await,
            }
        });
    }

    async fn leave(&self, lost: &LostMember) {
        let who = Leaver {
            group: &lost.group,
            member_id: &lost.member_id,
            instance_id: lost.instance_id.as_deref(),
            reason: REASON,
        };
        let result: Result<LeaveOutcome, ClusterError> = if lost.kip848 {
            self.cluster.leave_consumer_group(&who).await
        } else {
            self.cluster.leave_group(&who).await
        };
        let label = GroupLabel {
            group: lost.group.clone(),
        };
        let grace_ms = self.config.grace.as_millis() as u64;
        match result {
            Ok(LeaveOutcome::Left) => {
                self.metrics.member_leaves_sent.get_or_create(&label).inc();
                tracing::info!(
                    group = %lost.group,
                    member = %lost.member_id,
                    client_id = %lost.client_id,
                    partitions = lost.partitions.len(),
                    grace_ms,
                    "left the group for a consumer whose connections all closed without a leave"
                );
            }
            Ok(LeaveOutcome::UnknownMember) => {
                self.metrics
                    .member_leave_failures
                    .get_or_create(&label)
                    .inc();
                tracing::info!(group = %lost.group, member = %lost.member_id, "the coordinator no longer knew the gone member; nothing to leave");
            }
            Err(e) => {
                self.metrics
                    .member_leave_failures
                    .get_or_create(&label)
                    .inc();
                tracing::warn!(group = %lost.group, member = %lost.member_id, error = %e, "cannot leave the group for a gone consumer; it will time out as usual");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(instance: Option<&str>) -> LostMember {
        LostMember {
            group: "g".into(),
            member_id: "m".into(),
            partitions: vec![("t".into(), 0)],
            client_id: "app".into(),
            instance_id: instance.map(str::to_owned),
            kip848: false,
            ip: None,
        }
    }

    #[test]
    fn only_the_latest_departure_of_a_member_is_due() {
        let mut d = Departures::default();
        let first = d.depart("g", "m");
        let other = d.depart("g", "n");
        // m came back and its connections closed again before the first timer fired.
        let second = d.depart("g", "m");
        assert!(!d.due("g", "m", first), "stale timer");
        assert!(d.due("g", "m", second));
        assert!(!d.due("g", "m", second), "due once");
        assert!(d.due("g", "n", other));
        assert!(d.is_empty());
    }

    #[test]
    fn leaves_only_for_a_gone_dynamic_member_by_default() {
        let c = FastFailoverConfig::default();
        assert_eq!(verdict(&c, &lost(None), Whereabouts::Gone), Verdict::Leave);
        assert_eq!(
            verdict(&c, &lost(None), Whereabouts::Back),
            Verdict::Skip("back")
        );
        assert_eq!(
            verdict(&c, &lost(None), Whereabouts::StillFetching),
            Verdict::Skip("still_fetching")
        );
        assert_eq!(
            verdict(&c, &lost(Some("pod-0")), Whereabouts::Gone),
            Verdict::Skip("static")
        );
        let with_static = FastFailoverConfig {
            static_members: true,
            ..c
        };
        assert_eq!(
            verdict(&with_static, &lost(Some("pod-0")), Whereabouts::Gone),
            Verdict::Leave
        );
        assert_eq!(
            verdict(
                &with_static,
                &lost(Some("pod-0")),
                Whereabouts::StillFetching
            ),
            Verdict::Skip("still_fetching")
        );
    }
}
