//! The YAML shape of transform pipelines: which topics (and optionally which consumer
//! groups) a pipeline applies to, its Connect-style flat `config` map, its checks and the
//! masking applied to dead-letter copies.
//!
//! ```yaml
//! pipelines:
//!   - topics: [orders]              # and/or topic_pattern: "orders-.*" (full match)
//!     groups: [billing]             # optional; empty = every group
//!     config:
//!       transforms: mask,insert
//!       transforms.mask.type: MaskField$Value
//!       transforms.mask.fields: email
//!       transforms.insert.type: org.apache.kafka.connect.transforms.InsertField$Value
//!       transforms.insert.topic.field: source_topic
//!       errors.tolerance: all
//!       errors.deadletterqueue.topic.name: orders-dlq
//!     checks:
//!       - type: json_schema
//!         file: schemas/order.json
//!     dlq_mask:
//!       fields: [email, card.number]
//!       replacement: "****"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::dlq_mask::MaskConfig;
use super::errors::ConfigError;

/// All transform pipelines. Embed it in the proxy's configuration; key paths in errors
/// start with `pipelines`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TransformConfig {
    /// Pipelines in order; the first one matching a record's topic and group applies.
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
}

impl TransformConfig {
    /// Parse the YAML text of a `TransformConfig` (a mapping with a `pipelines` list).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        serde_norway::from_str(text).map_err(|e| ConfigError::new("pipelines", e.to_string()))
    }
}

/// One pipeline: where it applies and what it does.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Optional name used in logs (defaults to `pipelines[N]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Exact topic names.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression that must match the whole topic name (like Connect's
    /// `topics.regex`).
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// Consumer groups this pipeline applies to; empty means every group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Connect-style flat properties: `transforms`, `transforms.<alias>.*`, `predicates`,
    /// `predicates.<name>.*`, `errors.*`.
    #[serde(default)]
    pub config: BTreeMap<String, PropValue>,
    /// Checks run before the transforms, in order (Connect's converter stage).
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    /// Masking applied to the copy written to the dead-letter topic.
    #[serde(default)]
    pub dlq_mask: Option<MaskConfig>,
}

/// A scalar of the flat `config` map. YAML users write `errors.log.enable: true` or
/// `transforms.c.spec: [a:int32, b:string]`; Connect users write strings. Both work.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PropValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string (lists are comma-separated, as in Connect).
    Str(String),
    /// A YAML list, equivalent to a comma-separated string.
    List(Vec<PropScalar>),
}

/// One element of a list-valued property.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PropScalar {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string.
    Str(String),
}

impl fmt::Display for PropScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropScalar::Bool(b) => write!(f, "{b}"),
            PropScalar::Int(i) => write!(f, "{i}"),
            PropScalar::Float(x) => write!(f, "{x}"),
            PropScalar::Str(s) => f.write_str(s),
        }
    }
}

impl PropValue {
    /// The value as Connect would see it: a string, lists joined with commas.
    pub fn as_connect_string(&self) -> String {
        match self {
            PropValue::Bool(b) => b.to_string(),
            PropValue::Int(i) => i.to_string(),
            PropValue::Float(x) => x.to_string(),
            PropValue::Str(s) => s.clone(),
            PropValue::List(items) => items
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The value as a list: YAML lists element-wise, strings split at commas, trimmed,
    /// empty elements dropped.
    pub fn as_list(&self) -> Vec<String> {
        match self {
            PropValue::List(items) => items
                .iter()
                .map(|s| s.to_string().trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            other => other
                .as_connect_string()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

/// Which part of the record a check reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckTarget {
    /// The record key (failures are stage `KEY_CONVERTER`).
    Key,
    /// The record value (failures are stage `VALUE_CONVERTER`).
    #[default]
    Value,
}

/// A check run before the transforms. A null key or value (tombstone) passes every check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckConfig {
    /// The bytes are valid JSON.
    Json {
        /// Key or value (default value).
        #[serde(default)]
        on: CheckTarget,
    },
    /// The bytes are JSON satisfying a JSON Schema (draft 7 or 2020-12; `$schema` decides,
    /// 2020-12 when absent). Exactly one of `file` and `schema`.
    JsonSchema {
        /// Key or value (default value).
        #[serde(default)]
        on: CheckTarget,
        /// Schema file; relative paths are resolved against the configuration's directory.
        #[serde(default)]
        file: Option<PathBuf>,
        /// Inline schema.
        #[serde(default)]
        schema: Option<serde_json::Value>,
    },
    /// The bytes are in the Confluent schema-registry wire format (magic byte 0, 4-byte
    /// big-endian schema id, payload).
    SchemaRegistry {
        /// Key or value (default value).
        #[serde(default)]
        on: CheckTarget,
        /// If not empty, the schema id must be one of these.
        #[serde(default)]
        allowed_ids: Vec<u32>,
        /// If set, the registry must know the id, and for JSON Schema and Avro schemas the
        /// payload must decode against it.
        #[serde(default)]
        registry: Option<RegistryConfig>,
    },
}

/// How to reach a Confluent-compatible schema registry.
#[derive(Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL, `http://host:port` or `https://host:port`, optionally with a path prefix.
    pub url: String,
    /// Timeout of one lookup in milliseconds (default 2000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long a failed lookup (unknown id or unreachable registry) is remembered before
    /// it is tried again, in milliseconds (default 10000).
    #[serde(default = "default_error_cache_ms")]
    pub error_cache_ms: u64,
    /// `user:password` for HTTP basic authentication (Confluent's
    /// `basic.auth.user.info`).
    #[serde(default)]
    pub basic_auth_user_info: Option<String>,
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("error_cache_ms", &self.error_cache_ms)
            .field(
                "basic_auth_user_info",
                &self
                    .basic_auth_user_info
                    .as_ref()
                    .map(|u| format!("{}:****", u.split(':').next().unwrap_or(""))),
            )
            .finish()
    }
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_error_cache_ms() -> u64 {
    10_000
}

/// Path of a key inside the flat config map of pipeline `index`, quoted as the errors
/// print it: `pipelines[0].config."transforms.mask.fields"`.
pub(crate) fn config_key(index: usize, key: &str) -> String {
    format!("pipelines[{index}].config.\"{key}\"")
}
