//! The consumer watcher: follows consumer groups through their traffic, finds the record a
//! group cannot get past, has it written to the dead-letter topic, and hides it from that
//! group once the write is acknowledged.
//!
//! It is the routing layer's [`Hooks`]: routing calls in with a consumer request it has
//! read, that request's response, Metadata, and a closed connection. Decisions are made by
//! the pure [`crate::detect`] state machine; this module only translates wire events into
//! its calls and its decisions into record rewrites and dead-letter writes.

pub(crate) mod admin_api;
mod divert;
pub(crate) mod failover;
mod fetch;
pub(crate) mod groups;
pub(crate) mod guard;
mod guarding;
pub mod policy;
pub mod searches;
pub(crate) mod source_check;
pub mod store;
pub(crate) mod topics;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use kafka_protocol::messages::{
    ConsumerGroupHeartbeatResponse, FetchResponse, JoinGroupResponse, LeaveGroupResponse,
    MetadataResponse, OffsetCommitResponse, OffsetFetchResponse, SyncGroupResponse,
};

use crate::detect::{ConnId, Detector, PartitionKey};
use crate::ops::metrics::Metrics;
use crate::protocol::consumer_requests::{
    self, CommitRequest, ConsumerApi, ConsumerRequest, FetchPosition, GroupRequest, TopicRef,
};
use crate::protocol::fetch_scan::ScannedPartition;
use crate::protocol::wire::{decode_response, RequestHead};
use crate::route::hooks::{ClosedBy, ConnInfo, Hooks};
use groups::{Groups, MemberFacts};
use topics::Topics;

pub use divert::Diverter;
pub use failover::FastFailover;
pub use fetch::FetchWatch;
pub use guarding::GuardView;
pub use policy::{Policy, WatchConfig};
pub use store::Store;

/// What the watcher noted about a request, handed back with its response.
#[derive(Debug)]
pub enum WatchRequest {
    /// A fetch of watched partitions.
    Fetch(FetchWatch),
    /// An offset commit.
    Commit {
        /// Client id of the committing connection.
        client_id: String,
        /// What it committed.
        commit: CommitRequest,
    },
    /// A group-membership request.
    Group {
        /// Client id.
        client_id: String,
        /// Which API.
        api: ConsumerApi,
        /// Group and member ids.
        request: GroupRequest,
    },
}

/// Follows consumer groups through their traffic.
pub struct ConsumerWatch {
    pub(crate) policy: Policy,
    pub(crate) topics: Arc<Topics>,
    pub(crate) groups: Arc<Mutex<Groups>>,
    pub(crate) detector: Arc<Mutex<Detector>>,
    pub(crate) store: Arc<Store>,
    pub(crate) diverter: Arc<Diverter>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) pipelines: Arc<crate::transform::Pipelines>,
    /// Fetch-session positions per connection: (topic, partition) → offset.
    sessions: Mutex<std::collections::HashMap<u64, SessionPositions>>,
    /// Who fetches on each connection: client id and address. A member that sends
    /// LeaveGroup on its group connection had its records on these.
    fetchers: Mutex<std::collections::HashMap<u64, (String, std::net::IpAddr)>>,
    /// The deploy guard of every watched group (see [`guard`]).
    guard: Mutex<guard::Guard>,
    /// Leaves for members whose process is gone (`watch.fast_failover`), when enabled.
    failover: Option<Arc<FastFailover>>,
}

/// A fetch session's positions: (topic, partition) → next offset.
type SessionPositions = std::collections::HashMap<(String, i32), i64>;

impl ConsumerWatch {
    /// Builds a watcher from its parts.
    pub fn new(
        policy: Policy,
        topics: Arc<Topics>,
        detector: Arc<Mutex<Detector>>,
        store: Arc<Store>,
        diverter: Arc<Diverter>,
        metrics: Arc<Metrics>,
        pipelines: Arc<crate::transform::Pipelines>,
    ) -> Self {
        ConsumerWatch {
            policy,
            topics,
            groups: Arc::new(Mutex::new(Groups::default())),
            detector,
            store,
            diverter,
            metrics,
            pipelines,
            sessions: Mutex::new(Default::default()),
            fetchers: Mutex::new(Default::default()),
            guard: Mutex::new(Default::default()),
            failover: None,
        }
    }

    /// Turns fast failover on: leaves go through `cluster`, the proxy's own connections.
    pub fn with_fast_failover(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        self.failover = Some(Arc::new(FastFailover::new(
            self.policy.config.fast_failover.clone(),
            cluster,
            self.metrics.clone(),
        )));
        self
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn detector(&self) -> std::sync::MutexGuard<'_, Detector> {
        self.detector.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partition key of a watched (group, topic, partition), or `None` when either the
    /// topic or the group is not watched.
    pub(crate) fn key(&self, group: &str, topic: &str, partition: i32) -> Option<PartitionKey> {
        (self.policy.config.enabled
            && self.policy.watches_topic(topic)
            && self.policy.watches_group(group))
        .then(|| PartitionKey::new(group, topic, partition))
    }

    /// Notes a consumer request; `Some` when its response matters.
    fn request(
        &self,
        conn: &ConnInfo,
        head: &RequestHead,
        request: ConsumerRequest,
    ) -> Option<WatchRequest> {
        let client_id = head.client_id.clone().unwrap_or_default();
        match request {
            ConsumerRequest::Fetch(f) => self.fetch_request(conn, client_id, f),
            ConsumerRequest::OffsetCommit(c) => {
                self.groups()
                    .seen(&c.group, Some(&c.member_id), &client_id, conn.id);
                Some(WatchRequest::Commit {
                    client_id,
                    commit: c,
                })
            }
            ConsumerRequest::Group(api, request) => {
                let mut groups = self.groups();
                for group in &request.groups {
                    groups.seen(group, request.member_id.as_deref(), &client_id, conn.id);
                }
                if let (Some(group), Some(member)) =
                    (request.groups.first(), request.member_id.as_deref())
                {
                    if !member.is_empty() && api != ConsumerApi::LeaveGroup {
                        groups.describe(group, member, facts(conn, api, &request));
                    }
                }
                Some(WatchRequest::Group {
                    client_id,
                    api,
                    request,
                })
            }
        }
    }

    /// Before a request is forwarded. With fast failover, a JoinGroup without a member id
    /// that is the restart of a gone member waits until the proxy has left the group for
    /// that member (bounded).
    async fn hold_join(&self, conn: &ConnInfo, head: &RequestHead, request: &ConsumerRequest) {
        let Some(failover) = &self.failover else {
            return;
        };
        let ConsumerRequest::Group(ConsumerApi::JoinGroup, join) = request else {
            return;
        };
        let new_member = join.member_id.as_deref().is_none_or(str::is_empty);
        let Some(group) = join.groups.first() else {
            return;
        };
        if !new_member || join.instance_id.is_some() || !self.policy.watches_group(group) {
            return;
        }
        let client_id = head.client_id.as_deref().unwrap_or_default();
        failover
            .before_join(&self.groups, group, client_id, conn.peer.ip())
            .await;
    }

    /// Follows a connection's fetch session (KIP-227: an incremental fetch names only the
    /// partitions whose position changed) and notes the watched positions.
    fn fetch_request(
        &self,
        conn: &ConnInfo,
        client_id: String,
        f: consumer_requests::FetchRequestView,
    ) -> Option<WatchRequest> {
        let name = |t: &TopicRef| match t {
            TopicRef::Name(n) => Some(n.clone()),
            TopicRef::Id(id) => self.topics.name_of(id),
        };
        if self.failover.is_some() {
            let named = |list: &mut dyn Iterator<Item = (&TopicRef, i32)>| {
                list.filter_map(|(t, p)| Some((name(t)?, p)))
                    .collect::<Vec<_>>()
            };
            let positions = named(&mut f.positions.iter().map(|p| (&p.topic, p.partition)));
            let forgotten = named(&mut f.forgotten.iter().map(|(t, p)| (t, *p)));
            self.groups().fetching(
                conn.id,
                &client_id,
                conn.peer.ip(),
                f.session_epoch <= 0,
                positions,
                forgotten,
            );
        }
        self.fetchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(conn.id)
            .or_insert_with(|| (client_id.clone(), conn.peer.ip()));
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions.entry(conn.id).or_default();
        if f.session_epoch <= 0 {
            session.clear();
        }
        for (t, p) in &f.forgotten {
            if let Some(n) = name(t) {
                session.remove(&(n, *p));
            }
        }
        for p in &f.positions {
            if let Some(n) = name(&p.topic) {
                if self.watches_fetch_of(&n) {
                    session.insert((n, p.partition), p.offset);
                }
            }
        }
        if session.is_empty() {
            return None;
        }
        let positions = session
            .iter()
            .map(|((t, p), o)| FetchPosition {
                topic: TopicRef::Name(t.clone()),
                partition: *p,
                offset: *o,
            })
            .collect();
        Some(WatchRequest::Fetch(FetchWatch::new(
            client_id,
            f.max_wait_ms,
            positions,
        )))
    }

    fn watches_fetch_of(&self, topic: &str) -> bool {
        (self.policy.config.enabled && self.policy.watches_topic(topic))
            || self.pipelines.iter().any(|p| p.matches_topic(topic))
    }

    /// Quarantines a record by hand (admin API): writes it to the DLQ, then hides it.
    pub async fn quarantine_by_hand(
        &self,
        m: &admin_api::ManualQuarantine,
    ) -> Result<store::Quarantined, String> {
        let key = PartitionKey::new(m.group.clone(), m.topic.clone(), m.partition);
        let req = divert::DivertRequest::manual(m.offset, m.reason.as_deref());
        self.diverter.write(&key, &req, None).await
    }

    /// Sees the response to a noted request (not Fetch).
    fn response(&self, conn: &ConnInfo, req: &mut WatchRequest, frame: &[u8], version: i16) {
        let now = Instant::now();
        match req {
            WatchRequest::Fetch(_) => {}
            WatchRequest::Commit { client_id, commit } => {
                let Ok((_, resp)) = decode_response::<OffsetCommitResponse>(
                    frame,
                    ConsumerApi::OffsetCommit.key(),
                    version,
                ) else {
                    return;
                };
                let failed: std::collections::HashSet<(String, i32)> = resp
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .filter(|p| p.error_code != 0)
                            .map(move |p| (t.name.0.to_string(), p.partition_index))
                    })
                    .collect();
                let mut groups = self.groups();
                let mut detector = self.detector();
                for (topic, partition, offset) in &commit.offsets {
                    if failed.contains(&(topic.clone(), *partition)) {
                        continue;
                    }
                    groups.committed(&commit.group, client_id, topic, *partition);
                    if let Some(key) = self.key(&commit.group, topic, *partition) {
                        detector.commit(&key, *offset, now);
                        self.guard_commit(&key, *offset, now);
                    }
                }
            }
            WatchRequest::Group {
                client_id,
                api,
                request,
            } => self.on_group_response(conn, client_id, *api, request, frame, version, now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_group_response(
        &self,
        conn: &ConnInfo,
        client_id: &str,
        api: ConsumerApi,
        request: &GroupRequest,
        frame: &[u8],
        version: i16,
        now: Instant,
    ) {
        let Some(group) = request.groups.first() else {
            return;
        };
        let key = api.key();
        match api {
            ConsumerApi::JoinGroup => {
                self.detector().rebalance(group, now);
                if let Ok((_, r)) = decode_response::<JoinGroupResponse>(frame, key, version) {
                    if r.error_code == 0 {
                        let mut groups = self.groups();
                        groups.seen(group, Some(r.member_id.as_str()), client_id, conn.id);
                        groups.describe(group, r.member_id.as_str(), facts(conn, api, request));
                    }
                }
            }
            ConsumerApi::SyncGroup => {
                let Ok((_, r)) = decode_response::<SyncGroupResponse>(frame, key, version) else {
                    return;
                };
                let Some(member) = &request.member_id else {
                    return;
                };
                if r.error_code != 0 {
                    return;
                }
                match consumer_requests::consumer_assignment(&r.assignment) {
                    Ok(parts) => self.groups().assigned(group, member, parts),
                    Err(e) => {
                        tracing::debug!(error = %e, group, "assignment not in the consumer protocol's format")
                    }
                }
            }
            ConsumerApi::ConsumerGroupHeartbeat => {
                let Ok((_, r)) =
                    decode_response::<ConsumerGroupHeartbeatResponse>(frame, key, version)
                else {
                    return;
                };
                if request.member_epoch.is_some_and(|e| e < 0) {
                    // The leave heartbeat (-1, or -2 for a static member stepping out).
                    if r.error_code == 0 {
                        if let Some(m) = &request.member_id {
                            self.groups().left(group, m);
                            self.member_left(conn, client_id, group);
                        }
                    }
                    return;
                }
                if let Some(member) = r.member_id.as_ref().filter(|_| r.error_code == 0) {
                    let mut groups = self.groups();
                    groups.seen(group, Some(member.as_str()), client_id, conn.id);
                    groups.describe(group, member.as_str(), facts(conn, api, request));
                }
                if let (Some(a), Some(member)) = (&r.assignment, &r.member_id) {
                    // KIP-848 has no JoinGroup: a new assignment is the rebalance, and the
                    // new owner's first delivery starts again from the commit.
                    self.detector().rebalance(group, now);
                    let parts = a
                        .topic_partitions
                        .iter()
                        .filter_map(|tp| {
                            let name = self.topics.name_of(tp.topic_id.as_bytes())?;
                            Some(tp.partitions.iter().map(move |p| (name.clone(), *p)))
                        })
                        .flatten()
                        .collect();
                    self.groups()
                        .seen(group, Some(member.as_str()), client_id, conn.id);
                    self.groups().assigned(group, member.as_str(), parts);
                }
            }
            ConsumerApi::LeaveGroup => {
                if let Ok((_, r)) = decode_response::<LeaveGroupResponse>(frame, key, version) {
                    if r.error_code == 0 {
                        if let Some(m) = &request.member_id {
                            self.groups().left(group, m);
                            self.member_left(conn, client_id, group);
                        }
                    }
                }
            }
            ConsumerApi::OffsetFetch => {
                let Ok((_, r)) = decode_response::<OffsetFetchResponse>(frame, key, version) else {
                    return;
                };
                let mut detector = self.detector();
                let mut commit = |g: &str, topic: &str, partition: i32, offset: i64| {
                    if offset >= 0 {
                        if let Some(key) = self.key(g, topic, partition) {
                            detector.commit(&key, offset, now);
                            self.guard_commit(&key, offset, now);
                        }
                    }
                };
                for t in &r.topics {
                    for p in &t.partitions {
                        if p.error_code == 0 {
                            commit(
                                group,
                                t.name.as_str(),
                                p.partition_index,
                                p.committed_offset,
                            );
                        }
                    }
                }
                for g in &r.groups {
                    for t in &g.topics {
                        for p in &t.partitions {
                            if p.error_code == 0 {
                                commit(
                                    g.group_id.as_str(),
                                    t.name.as_str(),
                                    p.partition_index,
                                    p.committed_offset,
                                );
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A member left the group on `conn`: the detector judges the records it held on
    /// that connection and on those its client fetched on from the same address.
    fn member_left(&self, conn: &ConnInfo, client_id: &str, group: &str) {
        let ip = conn.peer.ip();
        let mut conns: Vec<ConnId> = self
            .fetchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (c, a))| c == client_id && *a == ip)
            .map(|(id, _)| ConnId(*id))
            .collect();
        conns.push(ConnId(conn.id));
        self.detector().member_left(group, &conns, Instant::now());
    }

    /// A client connection closed: its group memberships that did not leave are lost
    /// members (a crash, most likely). With fast failover, a member lost to a connection
    /// its client ended gets its grace timer.
    fn closed(&self, conn: &ConnInfo, by: ClosedBy) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id);
        self.fetchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id);
        let lost = self.groups().connection_closed(conn.id);
        let now = Instant::now();
        let mut detector = self.detector();
        detector.conn_closed(ConnId(conn.id), now);
        for m in lost {
            tracing::info!(group = %m.group, member = %m.member_id, partitions = m.partitions.len(), "consumer connection closed without LeaveGroup");
            detector.member_lost(&m.group, ConnId(conn.id), now);
            if let Some(failover) = &self.failover {
                if by == ClosedBy::Client && self.policy.watches_group(&m.group) {
                    failover.member_lost(self.groups.clone(), m);
                }
            }
        }
    }

    /// Shares poison searches through the state topic: adopts what other sidecars wrote
    /// (a partition that moves to another pod continues its search there) and publishes
    /// this sidecar's searches that changed.
    fn share_searches(&self) {
        let now = Instant::now();
        let me = self.diverter.instance().to_string();
        let incoming = self.store.take_searches();
        let mut refresh = Vec::new();
        let changed = {
            let mut detector = self.detector();
            for s in &incoming {
                let new_here = !detector.tracks(&s.key);
                if detector.adopt(&s.key, &s.search, &s.instance, &me, now) {
                    self.metrics.searches_adopted.inc();
                    tracing::debug!(group = %s.key.group, topic = %s.key.topic, partition = s.key.partition,
                        from = %s.instance, version = s.search.version, "continuing a search another sidecar shared");
                    let Some(iso) = &s.search.isolation else {
                        continue;
                    };
                    // Its record was diverted after the state was shared (the decision is
                    // in the store): the search is over.
                    if let Some(p) = iso.diverting {
                        if self
                            .store
                            .get(&s.key.group, &s.key.topic, s.key.partition, p)
                            .is_some()
                        {
                            detector.diverted(&s.key, p);
                            continue;
                        }
                    }
                    if new_here {
                        refresh.push(s.key.clone());
                    }
                }
            }
            detector.take_changed_searches()
        };
        for key in refresh {
            self.refresh_commit(key);
        }
        for (key, search) in changed {
            let store = self.store.clone();
            let instance = me.clone();
            tokio::spawn(async move {
                if let Err(e) = store.publish_search(&instance, key, search).await {
                    tracing::warn!(error = %e, "cannot share a poison search through the state topic");
                }
            });
        }
    }

    /// Reads the group's committed offset of `key` from the broker for a search taken
    /// over from the state topic: the commits the group made through a sidecar that died
    /// before it shared them are not in that state, and a search waiting for a commit
    /// the group already made would wait for nothing.
    fn refresh_commit(&self, key: PartitionKey) {
        let cluster = self.diverter.cluster().clone();
        let detector = self.detector.clone();
        tokio::spawn(async move {
            match cluster
                .committed_offsets(&key.group, &key.topic, &[key.partition])
                .await
            {
                Ok(committed) => {
                    if let Some(offset) = committed.get(&key.partition) {
                        detector
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .commit_read(&key, *offset, Instant::now());
                    }
                }
                Err(e) => {
                    tracing::debug!(group = %key.group, topic = %key.topic, partition = key.partition, error = %e,
                        "cannot read the committed offset of a search taken over");
                }
            }
        });
    }

    /// Writes the poison records the detector named outside a fetch (a crash judged a
    /// moment after it happened) to the dead-letter topic.
    pub(crate) fn divert_decided(&self) {
        let decided = self.detector().take_decided();
        for (key, poison) in decided {
            // The deploy guard may refuse it: the application is broken, not the record.
            if self.guard_paused(&key.group) {
                self.detector().divert_failed(&key, poison.offset);
                continue;
            }
            if !self.guard_allows(&key, &poison) {
                continue;
            }
            let mask = self
                .pipelines
                .for_record(&key.topic, Some(&key.group))
                .and_then(|p| p.dlq_mask().cloned());
            self.diverter
                .divert(&key, divert::DivertRequest::poison(&poison), None, mask);
        }
    }

    /// Periodic work: shared counts, stall reports and idle-state eviction.
    pub fn tick(&self) {
        self.guard_shared();
        let reports = self.detector().tick(Instant::now());
        self.divert_decided();
        self.share_searches();
        for r in reports {
            fetch::report(&self.metrics, &r);
        }
        let detector = self.detector();
        self.metrics
            .partitions_suspect
            .set(detector.suspect_partitions() as i64);
        self.metrics
            .partitions_isolated
            .set(detector.isolated_partitions() as i64);
        let states = detector
            .searches()
            .into_iter()
            .filter_map(|(key, status)| {
                let phase = match status.phase {
                    crate::detect::Phase::Normal => return None,
                    crate::detect::Phase::Suspect => "suspect",
                    crate::detect::Phase::Isolating => "isolating",
                    crate::detect::Phase::Diverting => "diverting",
                };
                Some(crate::ops::collectors::PartitionStateLabels {
                    group: key.group,
                    topic: key.topic,
                    partition: key.partition.to_string(),
                    phase,
                })
            })
            .collect();
        self.metrics.partition_states.set(states);
    }
}

/// What a JoinGroup or ConsumerGroupHeartbeat request says about its member.
fn facts<'a>(conn: &ConnInfo, api: ConsumerApi, request: &'a GroupRequest) -> MemberFacts<'a> {
    MemberFacts {
        instance_id: request.instance_id.as_deref(),
        kip848: api == ConsumerApi::ConsumerGroupHeartbeat,
        ip: conn.peer.ip(),
    }
}

impl Hooks for ConsumerWatch {
    type Exchange = WatchRequest;

    async fn before_forward(&self, conn: &ConnInfo, head: &RequestHead, request: &ConsumerRequest) {
        self.hold_join(conn, head, request).await
    }

    fn on_request(
        &self,
        conn: &ConnInfo,
        head: &RequestHead,
        request: ConsumerRequest,
    ) -> Option<WatchRequest> {
        self.request(conn, head, request)
    }

    fn on_metadata(&self, response: &MetadataResponse) {
        self.topics.learn(response);
    }

    async fn on_fetch_response(
        &self,
        conn: &ConnInfo,
        exchange: &mut WatchRequest,
        response: &mut FetchResponse,
        version: i16,
    ) -> bool {
        match exchange {
            WatchRequest::Fetch(fetch) => self.fetch_response(conn, fetch, response, version).await,
            _ => false,
        }
    }

    fn fetch_may_stream(&self, _conn: &ConnInfo, exchange: &WatchRequest) -> bool {
        match exchange {
            WatchRequest::Fetch(fetch) => self.fetch_may_stream(fetch),
            _ => false,
        }
    }

    fn on_fetch_streamed(
        &self,
        conn: &ConnInfo,
        exchange: &mut WatchRequest,
        partitions: &[ScannedPartition],
    ) {
        if let WatchRequest::Fetch(fetch) = exchange {
            self.fetch_streamed(conn, fetch, partitions);
        }
    }

    fn on_response(
        &self,
        conn: &ConnInfo,
        exchange: &mut WatchRequest,
        frame: &[u8],
        version: i16,
    ) {
        self.response(conn, exchange, frame, version)
    }

    fn on_close(&self, conn: &ConnInfo, _clean: bool, by: ClosedBy) {
        self.closed(conn, by)
    }

    fn not_ready(&self) -> Option<&'static str> {
        (!self.store.is_loaded()).then_some(
            "waiting for the quarantine state topic (watched fetches are held until it is read)",
        )
    }
}
