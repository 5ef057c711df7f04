//! Compiled pipelines and the per-record entry point: run the checks, then the
//! transforms (each gated by its predicate), and say what became of the record.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use regex::Regex;

use super::check::{Check, RegistryPool};
use super::config::TransformConfig;
use super::connect_config::{self, AliasTransform, ErrorHandling, Tolerance};
use super::dlq_mask::{mask_for_dlq, MaskConfig, MaskReport};
use super::errors::ConfigError;
use super::outcome::{Failure, Outcome, Stage, DATA_EXCEPTION};
use super::registry::RegistryClient;
use super::step::Step;
use super::wire_format::Verdict;
use super::working::Working;
use crate::protocol::record::Record;

/// Where a record comes from.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition index.
    pub partition: i32,
    /// Consumer group of the fetch, when known.
    pub group: Option<&'a str>,
}

/// One compiled pipeline.
#[derive(Debug)]
pub struct Pipeline {
    name: String,
    topics: Vec<String>,
    pattern: Option<Regex>,
    groups: Vec<String>,
    checks: Vec<Check>,
    transforms: Vec<AliasTransform>,
    errors: ErrorHandling,
    dlq_mask: Option<MaskConfig>,
}

/// All compiled pipelines; the first one matching a record applies.
#[derive(Debug, Default)]
pub struct Pipelines {
    pipelines: Vec<Pipeline>,
}

impl Pipelines {
    /// Validate and compile, reading schema files relative to `base_dir` (the directory of
    /// the configuration file).
    pub fn compile(config: &TransformConfig, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::compile_with(config, Some(base_dir))
    }

    pub(crate) fn compile_with(
        config: &TransformConfig,
        base_dir: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let mut pool: RegistryPool = HashMap::new();
        let pipelines = config
            .pipelines
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let key = |f: &str| format!("pipelines[{index}].{f}");
                if p.topics.is_empty() && p.topic_pattern.is_none() {
                    return Err(ConfigError::new(
                        key("topics"),
                        "set topics, topic_pattern, or both",
                    ));
                }
                if let Some(i) = p.topics.iter().position(|t| t.trim().is_empty()) {
                    return Err(ConfigError::new(
                        key(&format!("topics[{i}]")),
                        "must not be empty",
                    ));
                }
                let pattern = match &p.topic_pattern {
                    None => None,
                    Some(pat) => Some(Regex::new(&format!("^(?:{pat})$")).map_err(|e| {
                        ConfigError::new(
                            key("topic_pattern"),
                            format!("invalid regular expression: {e}"),
                        )
                    })?),
                };
                let connect = connect_config::parse(index, &p.config)?;
                let checks = p
                    .checks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Check::compile(index, i, c, base_dir, &mut pool))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(mask) = &p.dlq_mask {
                    mask.validate().map_err(|e| {
                        ConfigError::new(key(&format!("dlq_mask.{}", e.key)), e.message)
                    })?;
                }
                Ok(Pipeline {
                    name: p
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("pipelines[{index}]")),
                    topics: p.topics.clone(),
                    pattern,
                    groups: p.groups.clone(),
                    checks,
                    transforms: connect.transforms,
                    errors: connect.errors,
                    dlq_mask: p.dlq_mask.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pipelines { pipelines })
    }

    /// The pipeline for records of `topic` fetched by `group`, if any.
    pub fn for_record(&self, topic: &str, group: Option<&str>) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.matches(topic, group))
    }

    /// Whether any pipeline applies; when not, the batch can pass undecoded.
    pub fn applies_to(&self, topic: &str, group: Option<&str>) -> bool {
        self.for_record(topic, group).is_some()
    }

    /// Whether there are no pipelines at all.
    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }

    /// The pipelines in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Pipeline> {
        self.pipelines.iter()
    }
}

impl Pipeline {
    /// Name for logs (`name` from the configuration, or `pipelines[N]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this pipeline applies to `topic` and `group`. A pipeline restricted to
    /// groups does not apply when the group is unknown.
    /// Whether the pipeline applies to `topic` for some group.
    pub fn matches_topic(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
            || self.pattern.as_ref().is_some_and(|re| re.is_match(topic))
    }

    /// Whether the pipeline applies to `topic` as consumed by `group`.
    pub fn matches(&self, topic: &str, group: Option<&str>) -> bool {
        let topic_ok = self.topics.iter().any(|t| t == topic)
            || self.pattern.as_ref().is_some_and(|re| re.is_match(topic));
        let group_ok =
            self.groups.is_empty() || group.is_some_and(|g| self.groups.iter().any(|x| x == g));
        topic_ok && group_ok
    }

    /// The `errors.*` settings (tolerance, dead-letter topic, context headers, logging).
    pub fn errors(&self) -> &ErrorHandling {
        &self.errors
    }

    /// The masking for dead-letter copies, if configured.
    pub fn dlq_mask(&self) -> Option<&MaskConfig> {
        self.dlq_mask.as_ref()
    }

    /// Mask the dead-letter copy of a record with this pipeline's `dlq_mask` (no-op
    /// without one).
    pub fn mask_for_dlq(&self, record: &mut Record) -> MaskReport {
        match &self.dlq_mask {
            Some(m) => mask_for_dlq(m, record),
            None => MaskReport::default(),
        }
    }

    /// Whether [`Self::prepare`] has anything to do (a check uses a schema registry).
    pub fn needs_prepare(&self) -> bool {
        self.checks.iter().any(Check::uses_registry)
    }

    /// Resolve, through the schema registry, the schema ids these records use that are not
    /// cached yet. Call (and await) before [`Self::apply`] on the same records; it never
    /// fails: lookup failures are cached and show up in the outcomes.
    pub async fn prepare(&self, records: &[Record]) {
        let mut wanted: Vec<(Arc<RegistryClient>, Vec<u32>)> = Vec::new();
        for check in &self.checks {
            for record in records {
                if let Some((client, id)) = check.registry_id(record) {
                    match wanted.iter_mut().find(|(c, _)| Arc::ptr_eq(c, client)) {
                        Some((_, ids)) => ids.push(id),
                        None => wanted.push((client.clone(), vec![id])),
                    }
                }
            }
        }
        for (client, ids) in wanted {
            client.resolve(ids).await;
        }
    }

    /// Run the checks and transforms over one record. On `Pass` the record holds the
    /// result; on `Filtered` and `Failed` it is left exactly as it came.
    pub fn apply(&self, ctx: &RecordContext<'_>, record: &mut Record) -> Outcome {
        let show = self.errors.log_include_messages;
        let mut unverified: Option<String> = None;
        let result = {
            let mut w = Working::new(record, ctx.topic, ctx.partition, show);
            self.run(&mut w, &mut unverified)
                .and_then(|step| match step {
                    Step::Drop => Ok(None),
                    Step::Continue => w.into_changes().map(Some).map_err(|e| {
                        (
                            Stage::Transformation,
                            "quarantine.transform.Encode".to_string(),
                            DATA_EXCEPTION,
                            e.0,
                        )
                    }),
                })
        };
        match result {
            Ok(None) => Outcome::Filtered,
            Ok(Some(changes)) => {
                if let Some(reason) = &unverified {
                    tracing::debug!(pipeline = %self.name, topic = ctx.topic, partition = ctx.partition,
                        offset = record.offset, %reason, "record passed without a check");
                }
                let changed = !changes.is_empty();
                changes.commit(record);
                Outcome::Pass {
                    changed,
                    unverified,
                }
            }
            Err((stage, class_name, exception_class, message)) => {
                let failure = Failure {
                    stage,
                    class_name,
                    exception_class,
                    message,
                    tolerated: self.errors.tolerance == Tolerance::All,
                };
                self.log_failure(ctx, record, &failure);
                Outcome::Failed(failure)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        w: &mut Working<'_>,
        unverified: &mut Option<String>,
    ) -> Result<Step, (Stage, String, &'static str, String)> {
        for check in &self.checks {
            match check.run(w) {
                Verdict::Pass => {}
                Verdict::Unverified(reason) => {
                    unverified.get_or_insert(reason);
                }
                Verdict::Fail { exception, message } => {
                    return Err((
                        check.stage(),
                        check.class_name().to_string(),
                        exception,
                        message,
                    ));
                }
            }
        }
        for t in &self.transforms {
            if let Some((predicate, negate)) = &t.predicate {
                if predicate.test(w) == *negate {
                    continue;
                }
            }
            match t.built.transform.apply(w) {
                Ok(Step::Continue) => {}
                Ok(Step::Drop) => return Ok(Step::Drop),
                Err(e) => {
                    return Err((
                        Stage::Transformation,
                        t.built.class_name.clone(),
                        DATA_EXCEPTION,
                        format!(
                            "{} ({}): {}",
                            t.alias,
                            short_class(&t.built.class_name),
                            e.0
                        ),
                    ))
                }
            }
        }
        Ok(Step::Continue)
    }

    /// Under `errors.tolerance=none` a failure is always logged (Connect would stop the
    /// task); otherwise only with `errors.log.enable`. Payloads only with
    /// `errors.log.include.messages`.
    fn log_failure(&self, ctx: &RecordContext<'_>, record: &Record, f: &Failure) {
        if !(self.errors.log_enable || self.errors.tolerance == Tolerance::None) {
            return;
        }
        let outcome = if f.tolerated {
            "diverted"
        } else {
            "passed unchanged"
        };
        if self.errors.log_include_messages {
            tracing::warn!(pipeline = %self.name, topic = ctx.topic, partition = ctx.partition,
                offset = record.offset, group = ctx.group.unwrap_or(""), stage = %f.stage,
                class = %f.class_name, exception = f.exception_class, key = %preview(record.key.as_deref()),
                value = %preview(record.value.as_deref()), "record {outcome}: {}", f.message);
        } else {
            tracing::warn!(pipeline = %self.name, topic = ctx.topic, partition = ctx.partition,
                offset = record.offset, group = ctx.group.unwrap_or(""), stage = %f.stage,
                class = %f.class_name, exception = f.exception_class, "record {outcome}: {}", f.message);
        }
    }
}

/// `MaskField$Value` from the full class name.
fn short_class(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// At most 1 KiB of a payload, lossily as UTF-8, for logs that may show payloads.
fn preview(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_string(),
        Some(b) => {
            let cut = &b[..b.len().min(1024)];
            let mut s = String::from_utf8_lossy(cut).into_owned();
            if b.len() > cut.len() {
                s.push('…');
            }
            s
        }
    }
}

impl TransformConfig {
    /// Check everything that can be checked without reading files: type names,
    /// properties, regular expressions, error-handling values, checks and masks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Pipelines::compile_with(self, None).map(|_| ())
    }
}
