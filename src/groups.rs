//! Consumer groups as the proxy sees them: which client ids belong to which group, which
//! member holds which partitions, and which connections carry a member's group traffic.
//!
//! Fetch requests carry no group id. A fetch is tied to a group through its client id: the
//! groups that client id has joined, committed for or heartbeated in, narrowed by the
//! partitions each group assigned to members with that client id. Pure bookkeeping: no I/O.

use std::collections::{HashMap, HashSet};

/// One member of a group.
#[derive(Debug, Clone, Default)]
struct Member {
    client_id: String,
    /// Connections that carried this member's group requests.
    conns: HashSet<u64>,
    /// Partitions from the member's last SyncGroup (or KIP-848 heartbeat) assignment.
    assignment: HashSet<(String, i32)>,
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
                partitions: vec![p("orders", 3)]
            }]
        );
        assert!(g.connection_closed(1).is_empty());
    }
}
