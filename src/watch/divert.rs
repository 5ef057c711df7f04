//! Dead-letter writes: a record to divert (a confirmed poison record, one that failed a
//! check, or one an operator named) is written to its DLQ topic (created on first use),
//! acks=all, on the proxy's own connection to the partition leader; only when that is
//! acknowledged is the decision stored and the record hidden. A failed write hides
//! nothing; the record keeps being delivered (or held back) and is tried again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cluster::Cluster;
use crate::dead_letter::{self, Diagnosis, HeaderLimits, HeaderStyle, Origin, Reason, Stage};
use crate::detect::{Detector, PartitionKey, Poison};
use crate::ops::metrics::{DivertLabel, Metrics};
use crate::protocol::record::Record;
use crate::transform::{mask_for_dlq, MaskConfig, Pipeline};
use crate::watch::topics::Topics;

use super::policy::Policy;
use super::store::{now_ms, Quarantined, Store};

/// What to divert and why.
#[derive(Debug, Clone)]
pub struct DivertRequest {
    /// Source offset.
    pub offset: i64,
    /// Stage, reason and message for the DLQ headers.
    pub diagnosis: Diagnosis,
    /// DLQ topic name, when not the configured template's.
    pub dlq_topic: Option<String>,
    /// Masking of the DLQ copy.
    pub mask: Option<MaskConfig>,
    /// Whether to write the header style's context headers (`__connect.errors.*`, ...);
    /// the `__quarantine.*` headers are always written.
    pub context_headers: bool,
    /// Replication factor if the DLQ topic has to be created, when not the configured one.
    pub replication_factor: Option<i16>,
}

fn wall_ms(at: Instant) -> i64 {
    let ago = Instant::now().saturating_duration_since(at);
    SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl DivertRequest {
    /// A poison record found on the wire.
    pub fn poison(p: &Poison) -> Self {
        let reason = p.reason.into();
        DivertRequest {
            offset: p.offset,
            diagnosis: Diagnosis {
                stage: Stage::KafkaConsume,
                reason,
                class_name: Some("quarantine.PoisonDetector".into()),
                exception_class: "io.quarantine.PoisonRecordException".into(),
                message: format!(
                    "consumer group failed on this record: delivered {} times without its offset being committed ({})",
                    p.deliveries, p.reason
                ),
                delivery_count: p.deliveries,
                first_delivery_ms: wall_ms(p.first_delivery),
                last_delivery_ms: wall_ms(p.last_delivery),
                diverted_ms: now_ms(),
            },
            dlq_topic: None,
            mask: None,
            context_headers: true,
            replication_factor: None,
        }
    }

    /// A record that failed a configured check or transform.
    pub fn check(offset: i64, f: &crate::transform::Failure, pl: &Pipeline) -> Self {
        let stage = f.stage.into();
        let now = now_ms();
        DivertRequest {
            offset,
            diagnosis: Diagnosis {
                stage,
                reason: Reason::Check,
                class_name: Some(f.class_name.clone()),
                exception_class: f.exception_class.to_string(),
                message: f.message.clone(),
                delivery_count: 1,
                first_delivery_ms: now,
                last_delivery_ms: now,
                diverted_ms: now,
            },
            dlq_topic: pl.errors().dead_letter_topic.clone(),
            mask: pl.dlq_mask().cloned(),
            context_headers: pl.errors().context_headers,
            replication_factor: pl.errors().dead_letter_replication_factor,
        }
    }

    /// A record an operator quarantined by hand.
    pub fn manual(offset: i64, why: Option<&str>) -> Self {
        let now = now_ms();
        DivertRequest {
            offset,
            diagnosis: Diagnosis {
                stage: Stage::KafkaConsume,
                reason: Reason::Manual,
                class_name: None,
                exception_class: "io.quarantine.ManualQuarantine".into(),
                message: why.unwrap_or("quarantined by an operator").to_string(),
                delivery_count: 0,
                first_delivery_ms: now,
                last_delivery_ms: now,
                diverted_ms: now,
            },
            dlq_topic: None,
            mask: None,
            context_headers: true,
            replication_factor: None,
        }
    }
}

/// Writes records to their dead-letter topics.
pub struct Diverter {
    cluster: Arc<Cluster>,
    store: Arc<Store>,
    detector: Arc<Mutex<Detector>>,
    topics: Arc<Topics>,
    metrics: Arc<Metrics>,
    policy: Policy,
    instance: String,
    in_flight: Mutex<HashSet<(PartitionKey, i64)>>,
}

impl Diverter {
    /// The cluster it writes through (also read by the admin API's checks).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// A diverter writing through `cluster`.
    pub fn new(
        cluster: Arc<Cluster>,
        store: Arc<Store>,
        detector: Arc<Mutex<Detector>>,
        topics: Arc<Topics>,
        metrics: Arc<Metrics>,
        policy: Policy,
        instance: String,
    ) -> Self {
        Diverter {
            cluster,
            store,
            detector,
            topics,
            metrics,
            policy,
            instance,
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// This proxy's name in headers and the state topic.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Starts writing a poison record (`record` when the caller had it at hand) to the DLQ
    /// in the background, unless a write for it is already under way; reports the outcome
    /// to the detector.
    pub fn divert(
        self: &Arc<Self>,
        key: &PartitionKey,
        mut req: DivertRequest,
        record: Option<Record>,
        mask: Option<MaskConfig>,
    ) {
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if !in_flight.insert((key.clone(), req.offset)) {
                return;
            }
        }
        req.mask = req.mask.or(mask);
        let this = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let offset = req.offset;
            let result = this.write(&key, &req, record).await;
            this.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(key.clone(), offset));
            let mut detector = this.detector.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(_) => detector.diverted(&key, offset),
                Err(e) => {
                    this.metrics.dlq_write_failures.inc();
                    tracing::error!(group = %key.group, topic = %key.topic, partition = key.partition, offset, error = %e,
                        "dead-letter write failed; the record stays visible and is retried on its next failure");
                    detector.divert_failed(&key, offset);
                }
            }
        });
    }

    /// Writes one record to the DLQ and, once acknowledged, stores the decision and hides
    /// it from the key's group. Already-quarantined records are not written twice.
    pub async fn write(
        &self,
        key: &PartitionKey,
        req: &DivertRequest,
        record: Option<Record>,
    ) -> Result<Quarantined, String> {
        if let Some(q) = self
            .store
            .get(&key.group, &key.topic, key.partition, req.offset)
        {
            return Ok(q);
        }
        let mut record = match record {
            Some(r) => r,
            None => self
                .cluster
                .fetch(&key.topic, key.partition, req.offset, 1 << 20)
                .await
                .map_err(|e| format!("re-reading the record: {e}"))?
                .records
                .into_iter()
                .find(|r| r.offset == req.offset)
                .ok_or_else(|| format!("offset {} is not in the log", req.offset))?,
        };
        if let Some(mask) = &req.mask {
            mask_for_dlq(mask, &mut record);
        }
        let dlq = req
            .dlq_topic
            .clone()
            .unwrap_or_else(|| self.policy.dlq_topic(&key.topic, &key.group));
        let dlq_partitions = self
            .ensure_topic(&dlq, &key.topic, req.replication_factor)
            .await?;
        let origin = Origin {
            topic: key.topic.clone(),
            partition: key.partition,
            offset: req.offset,
            group: key.group.clone(),
            timestamp: record.timestamp,
        };
        let style: HeaderStyle =
            serde_norway::from_str(&self.policy.config.dead_letter.header_style)
                .unwrap_or_default();
        let limits = HeaderLimits {
            max_value_bytes: self.policy.config.dead_letter.max_header_bytes,
        };
        let letter = dead_letter::dead_letter_record(
            &record,
            &origin,
            &req.diagnosis,
            req.context_headers.then_some(style),
            &self.instance,
            &limits,
        );
        let partition =
            dead_letter::dlq_partition(key.partition, record.key.as_deref(), dlq_partitions);
        let started = Instant::now();
        let timeout = Duration::from_millis(self.policy.config.dead_letter.write_timeout_ms);
        // The whole write (leader lookup, retries, a busy connection) within the timeout:
        // the produce's own timeouts add the request timeout and retry.
        let dlq_offset = tokio::time::timeout(
            timeout,
            self.cluster
                .produce(&dlq, partition, &[letter], -1, timeout),
        )
        .await
        .map_err(|_| {
            format!(
                "producing to {dlq}[{partition}]: not acknowledged within watch.dead_letter.write_timeout_ms ({} ms)",
                timeout.as_millis()
            )
        })?
        .map_err(|e| format!("producing to {dlq}[{partition}]: {e}"))?;
        self.metrics
            .dlq_write_seconds
            .observe(started.elapsed().as_secs_f64());
        let reason = req.diagnosis.reason.as_str().to_string();
        let q = Quarantined {
            group: key.group.clone(),
            topic: key.topic.clone(),
            partition: key.partition,
            offset: req.offset,
            reason: reason.clone(),
            dlq: Some((dlq.clone(), partition, dlq_offset)),
            deliveries: req.diagnosis.delivery_count,
            at_ms: now_ms(),
            instance: self.instance.clone(),
        };
        self.store
            .quarantine(q.clone())
            .await
            .map_err(|e| e.to_string())?;
        self.metrics
            .quarantined_offsets
            .set(self.store.count() as i64);
        self.metrics
            .diverted
            .get_or_create(&DivertLabel {
                topic: key.topic.clone(),
                group: key.group.clone(),
                reason: reason.clone(),
            })
            .inc();
        tracing::warn!(
            group = %key.group, topic = %key.topic, partition = key.partition, offset = req.offset,
            reason = %reason, stage = req.diagnosis.stage.as_str(), deliveries = req.diagnosis.delivery_count,
            message = %req.diagnosis.message, dlq = %dlq, dlq_partition = partition, dlq_offset,
            "record quarantined: written to the dead-letter topic and hidden from the group"
        );
        if self.policy.config.log_payloads {
            tracing::info!(offset = req.offset, key = %record.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default(), value = %record.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default(), "quarantined payload");
        }
        Ok(q)
    }

    /// Makes sure the DLQ topic exists; returns its partition count.
    async fn ensure_topic(
        &self,
        dlq: &str,
        source: &str,
        replication_factor: Option<i16>,
    ) -> Result<i32, String> {
        if let Some(n) = self.partitions(dlq).await {
            return Ok(n);
        }
        let partitions = match self.topics.get(source) {
            Some(t) if t.partitions > 0 => t.partitions,
            _ => self.partitions(source).await.unwrap_or(1),
        };
        let dl = &self.policy.config.dead_letter;
        let retention = dl.retention_ms.to_string();
        self.cluster
            .create_topic(
                dlq,
                partitions,
                replication_factor.unwrap_or(dl.replication_factor),
                &[("cleanup.policy", "delete"), ("retention.ms", &retention)],
            )
            .await
            .map_err(|e| format!("creating {dlq}: {e}"))?;
        tracing::info!(topic = dlq, partitions, "dead-letter topic created");
        Ok(self.partitions(dlq).await.unwrap_or(partitions))
    }

    async fn partitions(&self, topic: &str) -> Option<i32> {
        let md = self.cluster.metadata(&[topic]).await.ok()?;
        let t = md.topics.get(topic)?;
        (t.error_code == 0 && !t.partitions.is_empty()).then_some(t.partitions.len() as i32)
    }
}
