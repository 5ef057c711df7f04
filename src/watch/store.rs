//! Quarantine decisions: which offsets are hidden from which group, persisted in a
//! compacted state topic so they survive a proxy restart and are shared by every sidecar.
//!
//! A decision is written to the state topic (acks=all) before it takes effect in memory.
//! At start the whole topic is read before any watched fetch is answered; afterwards a tail
//! loop applies decisions made by other proxies.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::detect::{PartitionKey, Search};
use crate::protocol::record::Record;

/// One quarantined record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Quarantined {
    /// Consumer group it is hidden from.
    pub group: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Why (`crash-loop`, `seek-back`, `stalled`, `redelivery`, `manual`, a check stage).
    pub reason: String,
    /// Where the copy is: DLQ topic, partition, offset (absent for a manual quarantine
    /// without a copy).
    pub dlq: Option<(String, i32, i64)>,
    /// Deliveries counted before the decision.
    pub deliveries: u32,
    /// When (unix ms).
    pub at_ms: i64,
    /// Which proxy decided.
    pub instance: String,
}

/// A state-topic message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
enum StateMessage {
    Quarantine(Quarantined),
    Release {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// The poison search of one partition, shared by the sidecars of its group: whoever
    /// serves the partition next continues it.
    Search {
        instance: String,
        key: PartitionKey,
        search: Search,
    },
    /// Delivery counts, as written by earlier versions (superseded by `Search`; read
    /// and ignored).
    Counts {},
}

/// A search state another sidecar (or this one, before a restart) shared.
#[derive(Debug, Clone)]
pub struct SharedSearch {
    /// The sidecar that wrote it.
    pub instance: String,
    /// The partition.
    pub key: PartitionKey,
    /// Its search state.
    pub search: Search,
}

type PartitionId = (String, String, i32);

/// In-memory quarantine decisions, backed by the state topic.
pub struct Store {
    hidden: RwLock<HashMap<PartitionId, BTreeMap<i64, Quarantined>>>,
    cluster: Arc<Cluster>,
    topic: String,
    loaded: tokio::sync::watch::Sender<bool>,
    next_offset: std::sync::Mutex<i64>,
    /// Search states read from the topic, waiting to be adopted by the detector.
    incoming_searches: std::sync::Mutex<Vec<SharedSearch>>,
    /// Quarantines applied after the first load (this proxy's and other sidecars'),
    /// waiting for the deploy guard.
    incoming_quarantines: std::sync::Mutex<Vec<Quarantined>>,
}

/// Most quarantines kept for the deploy guard between two ticks.
const MAX_INCOMING_QUARANTINES: usize = 10_000;

/// Why a decision could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("state topic {topic}: {message}")]
pub struct StoreError {
    topic: String,
    message: String,
}

fn state_key(group: &str, topic: &str, partition: i32, offset: i64) -> String {
    format!("{group}\u{0}{topic}\u{0}{partition}\u{0}{offset}")
}

impl Store {
    /// A store backed by `topic`.
    pub fn new(cluster: Arc<Cluster>, topic: String) -> Self {
        Store {
            hidden: RwLock::new(HashMap::new()),
            cluster,
            topic,
            loaded: tokio::sync::watch::channel(false).0,
            next_offset: std::sync::Mutex::new(0),
            incoming_searches: std::sync::Mutex::new(Vec::new()),
            incoming_quarantines: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether the state topic has been read once (watched fetches wait until it has).
    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Waits until the state topic has been read once.
    pub async fn wait_loaded(&self) {
        let mut rx = self.loaded.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// The hidden offsets of one group's partition, sorted.
    pub fn hidden(&self, group: &str, topic: &str, partition: i32) -> Vec<i64> {
        let map = self.hidden.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(group.to_string(), topic.to_string(), partition))
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether one group's partition has an offset hidden at or after `from`.
    pub fn hides_from(&self, group: &str, topic: &str, partition: i32, from: i64) -> bool {
        let map = self.hidden.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(group.to_string(), topic.to_string(), partition))
            .is_some_and(|m| m.range(from..).next().is_some())
    }

    /// The decision about one offset, if it is quarantined.
    pub fn get(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<Quarantined> {
        let map = self.hidden.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(group.to_string(), topic.to_string(), partition))
            .and_then(|m| m.get(&offset).cloned())
    }

    /// Every quarantined record.
    pub fn list(&self) -> Vec<Quarantined> {
        let map = self.hidden.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().flat_map(|m| m.values().cloned()).collect();
        v.sort_by(|a, b| {
            (&a.group, &a.topic, a.partition, a.offset).cmp(&(
                &b.group,
                &b.topic,
                b.partition,
                b.offset,
            ))
        });
        v
    }

    /// Number of hidden offsets.
    pub fn count(&self) -> usize {
        let map = self.hidden.read().unwrap_or_else(|e| e.into_inner());
        map.values().map(BTreeMap::len).sum()
    }

    /// Persists a decision, then hides the record.
    pub async fn quarantine(&self, q: Quarantined) -> Result<(), StoreError> {
        self.persist(
            &state_key(&q.group, &q.topic, q.partition, q.offset),
            &StateMessage::Quarantine(q.clone()),
        )
        .await?;
        self.apply(StateMessage::Quarantine(q));
        Ok(())
    }

    /// Persists a release, then shows the record again. Returns whether it was hidden.
    pub async fn release(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<bool, StoreError> {
        let was = self.hidden(group, topic, partition).contains(&offset);
        let msg = StateMessage::Release {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset,
        };
        self.persist(&state_key(group, topic, partition, offset), &msg)
            .await?;
        self.apply(msg);
        Ok(was)
    }

    /// Shares a partition's search state with the other sidecars of its group.
    pub async fn publish_search(
        &self,
        instance: &str,
        key: PartitionKey,
        search: Search,
    ) -> Result<(), StoreError> {
        let state_key = format!(
            "search\u{0}{}\u{0}{}\u{0}{}",
            key.group, key.topic, key.partition
        );
        self.persist(
            &state_key,
            &StateMessage::Search {
                instance: instance.to_string(),
                key,
                search,
            },
        )
        .await
    }

    /// Search states read from the state topic since the last call, oldest first.
    pub fn take_searches(&self) -> Vec<SharedSearch> {
        std::mem::take(
            &mut *self
                .incoming_searches
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Quarantines applied since the last call (after the first load only).
    pub fn take_quarantines(&self) -> Vec<Quarantined> {
        std::mem::take(
            &mut *self
                .incoming_quarantines
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    async fn persist(&self, key: &str, msg: &StateMessage) -> Result<(), StoreError> {
        let value = serde_json::to_vec(msg).map_err(|e| self.err(e.to_string()))?;
        let record = Record {
            offset: 0,
            timestamp: now_ms(),
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from(value)),
            headers: Vec::new(),
        };
        self.cluster
            .produce(&self.topic, 0, &[record], -1, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|e| self.err(e.to_string()))
    }

    fn err(&self, message: String) -> StoreError {
        StoreError {
            topic: self.topic.clone(),
            message,
        }
    }

    fn apply(&self, msg: StateMessage) {
        if let StateMessage::Search {
            instance,
            key,
            search,
        } = msg
        {
            self.incoming_searches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(SharedSearch {
                    instance,
                    key,
                    search,
                });
            return;
        }
        let mut map = self.hidden.write().unwrap_or_else(|e| e.into_inner());
        match msg {
            StateMessage::Counts {} | StateMessage::Search { .. } => {}
            StateMessage::Quarantine(q) => {
                if self.is_loaded() {
                    let mut incoming = self
                        .incoming_quarantines
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if incoming.len() < MAX_INCOMING_QUARANTINES {
                        incoming.push(q.clone());
                    }
                }
                map.entry((q.group.clone(), q.topic.clone(), q.partition))
                    .or_default()
                    .insert(q.offset, q);
            }
            StateMessage::Release {
                group,
                topic,
                partition,
                offset,
            } => {
                if let Some(m) = map.get_mut(&(group, topic, partition)) {
                    m.remove(&offset);
                }
            }
        }
    }

    /// Creates the state topic if needed and reads it from the start; marks the store
    /// loaded. Retries until it succeeds (watched fetches wait for it).
    pub async fn load(&self) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.load_once().await {
                Ok(n) => {
                    tracing::info!(topic = %self.topic, decisions = n, hidden = self.count(), "quarantine state loaded");
                    self.loaded.send_replace(true);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the quarantine state topic yet; watched fetches wait");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn load_once(&self) -> Result<usize, StoreError> {
        self.cluster
            .create_topic_if_missing(&self.topic, 1, 3, &[("cleanup.policy", "compact")])
            .await
            .map_err(|e| self.err(e.to_string()))?;
        *self.next_offset.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        self.read_new().await
    }

    /// Reads state messages past the last one read; returns how many were applied.
    pub async fn read_new(&self) -> Result<usize, StoreError> {
        let mut applied = 0;
        loop {
            let from = *self.next_offset.lock().unwrap_or_else(|e| e.into_inner());
            let records = self
                .cluster
                .fetch(&self.topic, 0, from, 1 << 20)
                .await
                .map_err(|e| self.err(e.to_string()))?;
            let next = records.next_offset;
            let records: Vec<_> = records
                .records
                .into_iter()
                .filter(|r| r.offset >= from)
                .collect();
            if next <= from {
                return Ok(applied);
            }
            for r in records {
                let Some(v) = r.value else { continue };
                match serde_json::from_slice::<StateMessage>(&v) {
                    Ok(m) => {
                        self.apply(m);
                        applied += 1;
                    }
                    Err(e) => {
                        tracing::warn!(offset = r.offset, error = %e, "unreadable message in the quarantine state topic; skipped")
                    }
                }
            }
            *self.next_offset.lock().unwrap_or_else(|e| e.into_inner()) = next;
        }
    }

    /// Applies decisions of other proxies as they appear.
    pub async fn tail(self: Arc<Self>, every: Duration) {
        self.wait_loaded().await;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.read_new().await {
                tracing::debug!(error = %e, "state topic tail read failed");
            }
        }
    }
}

/// Decodes one state-topic message value as [`Store::read_new`] does and encodes it again,
/// as the store writes it. `Err` is a message `read_new` skips with a warning. For the
/// fuzz targets (decode, then encode → decode is identity).
pub fn reencode_state_message(value: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let message: StateMessage = serde_json::from_slice(value)?;
    serde_json::to_vec(&message)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
