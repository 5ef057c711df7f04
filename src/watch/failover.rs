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
//! A restarted process usually joins again before the grace is over: a JoinGroup with no
//! member id, from the same client id and address, in the group of a departed member whose
//! process is gone. That JoinGroup is held while the proxy leaves for the departed member
//! (at most [`HOLD_JOIN`]), so the coordinator sees the leave first and the new member's
//! rebalance does not wait for a member that will never rejoin.
//!
//! [`Departures`] and [`verdict`] are the pure part (when, and whether); [`FastFailover`]
//! runs the timers and the requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::{Cluster, ClusterError, LeaveOutcome, Leaver};
use crate::ops::metrics::{GroupLabel, Metrics, SkipLabel};
use crate::watch::groups::{Groups, LostMember, Whereabouts};
use crate::watch::policy::FastFailoverConfig;

/// The reason sent with the leave (LeaveGroup v5+).
const REASON: &str = "quarantine: every client connection of this member closed without a leave";

/// Longest a new member's JoinGroup is held while the proxy leaves for its predecessor.
pub const HOLD_JOIN: Duration = Duration::from_secs(5);

/// Members waiting out their grace, each with the ticket of its latest departure, so a
/// member that came back and left again is judged only by its latest timer.
#[derive(Debug, Default)]
pub struct Departures {
    next: u64,
    pending: HashMap<(String, String), (u64, LostMember)>,
}

impl Departures {
    /// A member's last group connection closed: returns the ticket its timer carries.
    pub fn depart(&mut self, lost: LostMember) -> u64 {
        self.next += 1;
        let key = (lost.group.clone(), lost.member_id.clone());
        self.pending.insert(key, (self.next, lost));
        self.next
    }

    /// The departure with `ticket` is to be decided now (its timer fired, or a successor
    /// joins): the member, once, when `ticket` is its latest departure.
    pub fn due(&mut self, group: &str, member_id: &str, ticket: u64) -> Option<LostMember> {
        let key = (group.to_string(), member_id.to_string());
        match self.pending.get(&key) {
            Some((t, _)) if *t == ticket => self.pending.remove(&key).map(|(_, m)| m),
            _ => None,
        }
    }

    /// Departed members of `group` that a new member joining from `client_id` at `ip`
    /// may be the restart of: same client id, same address. With their tickets.
    pub fn predecessors(&self, group: &str, client_id: &str, ip: IpAddr) -> Vec<(u64, LostMember)> {
        self.pending
            .iter()
            .filter(|((g, _), (_, m))| {
                g == group && m.client_id == client_id && m.ip.is_none_or(|i| i == ip)
            })
            .map(|(_, (t, m))| (*t, m.clone()))
            .collect()
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
    /// Leaves under way for gone members: (group, client id, address) and a flag set
    /// when the leave is answered. A successor's JoinGroup waits for them.
    leaving: Mutex<Vec<Leaving>>,
}

/// A leave under way, found by a successor's JoinGroup.
struct Leaving {
    group: String,
    client_id: String,
    ip: Option<IpAddr>,
    done: tokio::sync::watch::Receiver<bool>,
}

impl FastFailover {
    /// Fast failover with `config`, leaving through `cluster`.
    pub fn new(config: FastFailoverConfig, cluster: Arc<Cluster>, metrics: Arc<Metrics>) -> Self {
        FastFailover {
            config,
            cluster,
            metrics,
            departures: Mutex::new(Departures::default()),
            leaving: Mutex::new(Vec::new()),
        }
    }

    fn leaving(&self) -> std::sync::MutexGuard<'_, Vec<Leaving>> {
        self.leaving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves for `lost`, visible meanwhile to a successor's JoinGroup, which waits for it:
    /// a JoinGroup that reaches the coordinator while the leave is under way may never
    /// complete its rebalance (seen with the test broker).
    async fn leave_visibly(&self, lost: &LostMember, after: &'static str) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.leaving().push(Leaving {
            group: lost.group.clone(),
            client_id: lost.client_id.clone(),
            ip: lost.ip,
            done: rx,
        });
        self.leave(lost, after).await;
        let _ = tx.send(true);
        self.leaving().retain(|l| !*l.done.borrow());
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
        let (group, member_id) = (lost.group.clone(), lost.member_id.clone());
        let ticket = self.departures().depart(lost);
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.config.grace).await;
            let Some(lost) = this.departures().due(&group, &member_id, ticket) else {
                return; // came back and left again, or a successor's join decided it
            };
            let seen = groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .whereabouts(&lost);
            match verdict(&this.config, &lost, seen) {
                Verdict::Skip(reason) => {
                    tracing::debug!(group = %lost.group, member = %lost.member_id, reason, "member's group connections closed but it is not gone");
                    this.skipped(&lost.group, reason);
                }
                Verdict::Leave => this.leave_visibly(&lost, "grace_over").await,
            }
        });
    }

    /// A JoinGroup without a member id from `client_id` at `ip` is about to be forwarded:
    /// when it is the restart of a departed member of `group` whose process is gone, leaves
    /// for that member first (waiting at most [`HOLD_JOIN`]).
    pub async fn before_join(
        self: &Arc<Self>,
        groups: &Mutex<Groups>,
        group: &str,
        client_id: &str,
        ip: IpAddr,
    ) {
        // Leaves already under way for a predecessor: wait for their answer first.
        let under_way: Vec<tokio::sync::watch::Receiver<bool>> = self
            .leaving()
            .iter()
            .filter(|l| {
                l.group == group && l.client_id == client_id && l.ip.is_none_or(|a| a == ip)
            })
            .map(|l| l.done.clone())
            .collect();
        for mut done in under_way {
            if tokio::time::timeout(HOLD_JOIN, done.wait_for(|d| *d))
                .await
                .is_err()
            {
                tracing::debug!(
                    group,
                    "leave for a predecessor still running; the JoinGroup goes on"
                );
            }
        }
        let candidates = self.departures().predecessors(group, client_id, ip);
        for (ticket, lost) in candidates {
            let seen = groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .whereabouts(&lost);
            if verdict(&self.config, &lost, seen) != Verdict::Leave {
                continue; // its own timer decides
            }
            let Some(lost) = self.departures().due(group, &lost.member_id, ticket) else {
                continue;
            };
            tracing::debug!(group, member = %lost.member_id, "a new member of the same client joins: leaving for its gone predecessor first");
            let this = self.clone();
            let leave =
                tokio::spawn(async move { this.leave_visibly(&lost, "successor_joined").await });
            if tokio::time::timeout(HOLD_JOIN, leave).await.is_err() {
                tracing::debug!(group, "leave still running; the JoinGroup goes on");
            }
        }
    }

    /// Leaves for `lost`; `after` says what ended the wait (`grace_over`,
    /// `successor_joined`), for the log.
    async fn leave(&self, lost: &LostMember, after: &'static str) {
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
        match result {
            Ok(LeaveOutcome::Left) => {
                self.metrics.member_leaves_sent.get_or_create(&label).inc();
                tracing::info!(
                    group = %lost.group,
                    member = %lost.member_id,
                    client_id = %lost.client_id,
                    partitions = lost.partitions.len(),
                    after,
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

    fn member(id: &str) -> LostMember {
        LostMember {
            member_id: id.into(),
            ip: Some(HOST),
            ..lost(None)
        }
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn only_the_latest_departure_of_a_member_is_due() {
        let mut d = Departures::default();
        let first = d.depart(member("m"));
        let other = d.depart(member("n"));
        // m came back and its connections closed again before the first timer fired.
        let second = d.depart(member("m"));
        assert!(d.due("g", "m", first).is_none(), "stale timer");
        assert_eq!(d.due("g", "m", second).unwrap().member_id, "m");
        assert!(d.due("g", "m", second).is_none(), "due once");
        assert!(d.due("g", "n", other).is_some());
        assert!(d.pending.is_empty());
    }

    #[test]
    fn a_joining_member_finds_its_predecessors_by_client_id_and_address() {
        let mut d = Departures::default();
        let t = d.depart(member("m"));
        let elsewhere = LostMember {
            ip: Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 1, 1))),
            ..member("x")
        };
        d.depart(elsewhere);
        let other_client = LostMember {
            client_id: "other".into(),
            ..member("y")
        };
        d.depart(other_client);
        let found = d.predecessors("g", "app", HOST);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0, found[0].1.member_id.as_str()), (t, "m"));
        assert!(d.predecessors("other-group", "app", HOST).is_empty());
        // Decided by the join, the timer then finds nothing to do.
        assert!(d.due("g", "m", t).is_some());
        assert!(d.due("g", "m", t).is_none());
        assert!(d.predecessors("g", "app", HOST).is_empty());
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
