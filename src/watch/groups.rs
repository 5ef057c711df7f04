//! Consumer groups as the proxy sees them: which client ids belong to which group, which
//! member holds which partitions, and which connections carry a member's group traffic.
//!
//! Fetch requests carry no group id. A fetch is tied to a group through its client id: the
//! groups that client id has joined, committed for or heartbeated in, narrowed by the
//! partitions each group assigned to members with that client id. Pure bookkeeping: no I/O.
//!
//! For fast failover it also answers "is this member's process still there?" after every
//! connection carrying the member's group traffic closed ([`Groups::whereabouts`]): the
//! member is back when a connection carries its member id again, and still alive when a
//! connection from the same client id and address still fetches one of its partitions.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// One member of a group.
#[derive(Debug, Clone, Default)]
struct Member {
    client_id: String,
    /// Connections that carried this member's group requests.
    conns: HashSet<u64>,
    /// Partitions from the member's last SyncGroup (or KIP-848 heartbeat) assignment.
    assignment: HashSet<(String, i32)>,
    /// `group.instance.id` of a static member.
    instance_id: Option<String>,
    /// Whether the member speaks the KIP-848 protocol (ConsumerGroupHeartbeat).
    kip848: bool,
    /// Address of the client the member's group traffic came from.
    ip: Option<IpAddr>,
}

/// A connection that fetches: who it is from and which partitions its fetch session holds.
#[derive(Debug, Clone)]
struct FetchingConn {
    client_id: String,
    ip: IpAddr,
    partitions: HashSet<(String, i32)>,
}

/// How a member is identified beyond its id, from its JoinGroup or ConsumerGroupHeartbeat.
#[derive(Debug, Clone, Copy)]
pub struct MemberFacts<'a> {
    /// `group.instance.id`, for a static member.
    pub instance_id: Option<&'a str>,
    /// KIP-848 protocol (ConsumerGroupHeartbeat) rather than the classic one.
    pub kip848: bool,
    /// The client's address.
    pub ip: IpAddr,
}

/// Where a member whose group connections all closed is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    /// A connection carries its member id again (a reconnect, a coordinator move).
    Back,
    /// A connection from the same client id and address still fetches one of its
    /// partitions: the process lives and only lost its group connection.
    StillFetching,
    /// Nothing of it is left on the wire.
    Gone,
}

/// All groups seen.
#[derive(Debug, Default)]
pub struct Groups {
    /// client id → groups it appeared in.
    by_client: HashMap<String, HashSet<String>>,
    /// group → member id → member.
    members: HashMap<String, HashMap<String, Member>>,
    /// group → partitions committed by a client id without a known assignment (fallback
    /// after a proxy restart, before the next rebalance).
    committed_by: HashMap<String, HashMap<String, HashSet<(String, i32)>>>,
    /// connection → (group, member) pairs whose traffic it carried.
    conns: HashMap<u64, HashSet<(String, String)>>,
    /// Fetching connections, followed only when [`Groups::fetching`] is called.
    fetching: HashMap<u64, FetchingConn>,
}

/// What became of a closed connection's memberships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostMember {
    /// Group.
    pub group: String,
    /// Member id.
    pub member_id: String,
    /// Partitions it held.
    pub partitions: Vec<(String, i32)>,
    /// Its client id.
    pub client_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Whether it speaks the KIP-848 protocol.
    pub kip848: bool,
    /// The client's address, when known.
    pub ip: Option<IpAddr>,
}

impl Groups {
    /// A group request (join, sync, heartbeat, commit, offset fetch) from `client_id` on
    /// connection `conn`.
    pub fn seen(&mut self, group: &str, member_id: Option<&str>, client_id: &str, conn: u64) {
        if group.is_empty() {
            return;
        }
        self.by_client
            .entry(client_id.to_string())
            .or_default()
            .insert(group.to_string());
        if let Some(m) = member_id.filter(|m| !m.is_empty()) {
            let member = self
                .members
                .entry(group.to_string())
                .or_default()
                .entry(m.to_string())
                .or_default();
            member.client_id = client_id.to_string();
            member.conns.insert(conn);
            self.conns
                .entry(conn)
                .or_default()
                .insert((group.to_string(), m.to_string()));
        }
    }

    /// What a member's JoinGroup or ConsumerGroupHeartbeat said about it (after
    /// [`Groups::seen`] for the same member).
    pub fn describe(&mut self, group: &str, member_id: &str, facts: MemberFacts<'_>) {
        if let Some(member) = self
            .members
            .get_mut(group)
            .and_then(|g| g.get_mut(member_id))
        {
            if facts.instance_id.is_some() {
                member.instance_id = facts.instance_id.map(str::to_owned);
            }
            member.kip848 |= facts.kip848;
            member.ip = Some(facts.ip);
        }
    }

    /// A fetch on connection `conn`: a full fetch (`full`) names every partition of the
    /// session, an incremental one the changed ones and the `forgotten` ones.
    pub fn fetching(
        &mut self,
        conn: u64,
        client_id: &str,
        ip: IpAddr,
        full: bool,
        named: impl IntoIterator<Item = (String, i32)>,
        forgotten: impl IntoIterator<Item = (String, i32)>,
    ) {
        let entry = self.fetching.entry(conn).or_insert_with(|| FetchingConn {
            client_id: client_id.to_string(),
            ip,
            partitions: HashSet::new(),
        });
        if full {
            entry.partitions.clear();
        }
        for p in forgotten {
            entry.partitions.remove(&p);
        }
        entry.partitions.extend(named);
    }

    /// Whether a member whose group connections all closed ([`Groups::connection_closed`])
    /// came back, still fetches, or is gone.
    pub fn whereabouts(&self, lost: &LostMember) -> Whereabouts {
        let back = self
            .members
            .get(&lost.group)
            .and_then(|g| g.get(&lost.member_id))
            .is_some_and(|m| !m.conns.is_empty());
        if back {
            return Whereabouts::Back;
        }
        let still_fetching = self.fetching.values().any(|f| {
            f.client_id == lost.client_id
                && lost.ip.is_none_or(|ip| ip == f.ip)
                && lost.partitions.iter().any(|p| f.partitions.contains(p))
        });
        if still_fetching {
            Whereabouts::StillFetching
        } else {
            Whereabouts::Gone
        }
    }

    /// A member's new assignment (SyncGroup response, KIP-848 heartbeat response).
    pub fn assigned(&mut self, group: &str, member_id: &str, partitions: Vec<(String, i32)>) {
        if let Some(member) = self
            .members
            .get_mut(group)
            .and_then(|g| g.get_mut(member_id))
        {
            member.assignment = partitions.into_iter().collect();
        }
    }

    /// A commit from `client_id` (used when no assignment is known yet).
    pub fn committed(&mut self, group: &str, client_id: &str, topic: &str, partition: i32) {
        self.committed_by
            .entry(group.to_string())
            .or_default()
            .entry(client_id.to_string())
            .or_default()
            .insert((topic.to_string(), partition));
    }

    /// A member left cleanly (LeaveGroup).
    pub fn left(&mut self, group: &str, member_id: &str) {
        if let Some(g) = self.members.get_mut(group) {
            if let Some(m) = g.remove(member_id) {
                for c in m.conns {
                    if let Some(set) = self.conns.get_mut(&c) {
                        set.remove(&(group.to_string(), member_id.to_string()));
                    }
                }
            }
        }
    }

    /// A connection closed; returns the memberships it carried that did not leave cleanly.
    pub fn connection_closed(&mut self, conn: u64) -> Vec<LostMember> {
        self.fetching.remove(&conn);
        let Some(pairs) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let mut lost = Vec::new();
        for (group, member_id) in pairs {
            let Some(g) = self.members.get_mut(&group) else {
                continue;
            };
            let Some(m) = g.get_mut(&member_id) else {
                continue;
            };
            m.conns.remove(&conn);
            if m.conns.is_empty() {
                let m = g.remove(&member_id).unwrap_or_default();
                let mut partitions: Vec<_> = m.assignment.into_iter().collect();
                partitions.sort();
                lost.push(LostMember {
                    group,
                    member_id,
                    partitions,
                    client_id: m.client_id,
                    instance_id: m.instance_id,
                    kip848: m.kip848,
                    ip: m.ip,
                });
            }
        }
        lost
    }

    /// The group whose consumer fetches `(topic, partition)` with this client id, when it
    /// can be told apart from every other group the client id is in.
    pub fn group_for_fetch(&self, client_id: &str, topic: &str, partition: i32) -> Option<&str> {
        let groups = self.by_client.get(client_id)?;
        if groups.len() == 1 {
            return groups.iter().next().map(String::as_str);
        }
        let key = (topic.to_string(), partition);
        let holds = |g: &String| {
            self.members.get(g).is_some_and(|members| {
                members
                    .values()
                    .any(|m| m.client_id == client_id && m.assignment.contains(&key))
            }) || self
                .committed_by
                .get(g)
                .and_then(|c| c.get(client_id))
                .is_some_and(|set| set.contains(&key))
        };
        let mut matching = groups.iter().filter(|g| holds(g));
        let first = matching.next()?;
        if matching.next().is_some() {
            return None; // two groups with one client id consume the same partition
        }
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str, n: i32) -> (String, i32) {
        (t.to_string(), n)
    }

    #[test]
    fn single_group_client_maps_directly() {
        let mut g = Groups::default();
        g.seen("billing", Some("m1"), "app", 1);
        assert_eq!(g.group_for_fetch("app", "orders", 0), Some("billing"));
        assert_eq!(g.group_for_fetch("other", "orders", 0), None);
    }

    #[test]
    fn shared_client_id_is_told_apart_by_assignment_or_commits() {
        let mut g = Groups::default();
        g.seen("a", Some("m1"), "rdkafka", 1);
        g.seen("b", Some("m2"), "rdkafka", 2);
        g.assigned("a", "m1", vec![p("orders", 0)]);
        g.assigned("b", "m2", vec![p("payments", 0)]);
        assert_eq!(g.group_for_fetch("rdkafka", "orders", 0), Some("a"));
        assert_eq!(g.group_for_fetch("rdkafka", "payments", 0), Some("b"));
        assert_eq!(g.group_for_fetch("rdkafka", "orders", 1), None);
        g.committed("b", "rdkafka", "orders", 1);
        assert_eq!(g.group_for_fetch("rdkafka", "orders", 1), Some("b"));
        // Both groups on the same partition with one client id: ambiguous, so none.
        g.assigned("b", "m2", vec![p("orders", 0)]);
        assert_eq!(g.group_for_fetch("rdkafka", "orders", 0), None);
    }

    #[test]
    fn closed_connection_without_leave_is_a_lost_member() {
        let mut g = Groups::default();
        g.seen("a", Some("m1"), "app", 1);
        g.assigned("a", "m1", vec![p("orders", 3)]);
        g.seen("a", Some("m2"), "app", 2);
        g.left("a", "m2");
        assert!(g.connection_closed(2).is_empty());
        assert_eq!(
            g.connection_closed(1),
            vec![LostMember {
                group: "a".into(),
                member_id: "m1".into(),
                partitions: vec![p("orders", 3)],
                client_id: "app".into(),
                instance_id: None,
                kip848: false,
                ip: None,
            }]
        );
        assert!(g.connection_closed(1).is_empty());
    }

    const HOST_A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const HOST_B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    /// A librdkafka-like member: group traffic on connection `group_conn`, fetches of
    /// `parts` on `fetch_conn`.
    fn member(
        g: &mut Groups,
        id: &str,
        client: &str,
        ip: IpAddr,
        group_conn: u64,
        fetch_conn: u64,
        parts: &[i32],
    ) {
        g.seen("grp", Some(id), client, group_conn);
        g.describe(
            "grp",
            id,
            MemberFacts {
                instance_id: None,
                kip848: false,
                ip,
            },
        );
        let parts: Vec<_> = parts.iter().map(|n| p("orders", *n)).collect();
        g.assigned("grp", id, parts.clone());
        g.fetching(fetch_conn, client, ip, true, parts, []);
    }

    #[test]
    fn crashed_process_is_gone_once_all_its_connections_closed() {
        let mut g = Groups::default();
        member(&mut g, "m1", "app", HOST_A, 1, 2, &[0, 1]);
        member(&mut g, "m2", "app", HOST_A, 3, 4, &[2]);
        // The process dies: the group connection closes first, the fetch one a moment
        // later. Until the fetch connection closes the member still fetches.
        let lost = g.connection_closed(1);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].ip, Some(HOST_A));
        assert_eq!(g.whereabouts(&lost[0]), Whereabouts::StillFetching);
        g.connection_closed(2);
        // The other member (same client id, same host) fetches other partitions: no alibi.
        assert_eq!(g.whereabouts(&lost[0]), Whereabouts::Gone);
    }

    #[test]
    fn near_misses_are_not_gone() {
        // Lost only the coordinator connection; its fetch connection lives on.
        let mut g = Groups::default();
        member(&mut g, "m1", "app", HOST_A, 1, 2, &[0]);
        let lost = g.connection_closed(1).remove(0);
        assert_eq!(g.whereabouts(&lost), Whereabouts::StillFetching);

        // One connection for everything (kafka-python, kafkajs on one broker), dropped;
        // the client reconnects and fetches its partitions on the new connection before
        // it heartbeats again.
        let mut g = Groups::default();
        member(&mut g, "m1", "app", HOST_A, 1, 1, &[0, 1]);
        let lost = g.connection_closed(1).remove(0);
        assert_eq!(g.whereabouts(&lost), Whereabouts::Gone);
        g.fetching(9, "app", HOST_A, true, vec![p("orders", 1)], []);
        assert_eq!(g.whereabouts(&lost), Whereabouts::StillFetching);

        // ...or heartbeats with its member id first.
        let mut g = Groups::default();
        member(&mut g, "m1", "app", HOST_A, 1, 1, &[0]);
        let lost = g.connection_closed(1).remove(0);
        g.seen("grp", Some("m1"), "app", 7);
        assert_eq!(g.whereabouts(&lost), Whereabouts::Back);
    }

    #[test]
    fn a_restarted_process_or_another_host_is_no_alibi() {
        let mut g = Groups::default();
        member(&mut g, "m1", "app", HOST_A, 1, 2, &[0]);
        let lost = g.connection_closed(1).remove(0);
        g.connection_closed(2);
        // The restarted process joins with a new member id and fetches nothing yet.
        g.seen("grp", Some(""), "app", 5);
        g.fetching(6, "app", HOST_A, true, Vec::new(), []);
        assert_eq!(g.whereabouts(&lost), Whereabouts::Gone);
        // Another host with the same client id fetching the partition is another process.
        g.fetching(7, "app", HOST_B, true, vec![p("orders", 0)], []);
        assert_eq!(g.whereabouts(&lost), Whereabouts::Gone);
        // Another client id on this host neither.
        g.fetching(8, "other", HOST_A, true, vec![p("orders", 0)], []);
        assert_eq!(g.whereabouts(&lost), Whereabouts::Gone);
    }

    #[test]
    fn incremental_fetch_sessions_keep_and_forget_partitions() {
        let mut g = Groups::default();
        member(&mut g, "m1", "app", HOST_A, 1, 2, &[0, 1]);
        let lost = g.connection_closed(1).remove(0);
        g.fetching(2, "app", HOST_A, false, Vec::new(), [p("orders", 0)]);
        assert_eq!(
            g.whereabouts(&lost),
            Whereabouts::StillFetching,
            "1 still in"
        );
        g.fetching(2, "app", HOST_A, false, Vec::new(), [p("orders", 1)]);
        assert_eq!(g.whereabouts(&lost), Whereabouts::Gone, "session emptied");
        g.fetching(2, "app", HOST_A, true, vec![p("orders", 1)], []);
        assert_eq!(g.whereabouts(&lost), Whereabouts::StillFetching);
    }

    #[test]
    fn static_and_kip848_facts_travel_with_the_lost_member() {
        let mut g = Groups::default();
        g.seen("grp", Some("uuid-1"), "app", 1);
        g.describe(
            "grp",
            "uuid-1",
            MemberFacts {
                instance_id: Some("pod-0"),
                kip848: true,
                ip: HOST_A,
            },
        );
        // A later heartbeat without the instance id does not forget it.
        g.describe(
            "grp",
            "uuid-1",
            MemberFacts {
                instance_id: None,
                kip848: true,
                ip: HOST_A,
            },
        );
        let lost = g.connection_closed(1).remove(0);
        assert_eq!(lost.instance_id.as_deref(), Some("pod-0"));
        assert!(lost.kip848);
        assert_eq!(lost.client_id, "app");
    }
}
