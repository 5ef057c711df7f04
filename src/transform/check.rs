//! Checks run before the transforms, Connect's converter stage: the key or value is
//! valid JSON, satisfies a JSON Schema, or is in the schema-registry wire format.
//! A null key or value passes every check.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::config::{CheckConfig, CheckTarget, RegistryConfig};
use super::errors::ConfigError;
use super::json_schema;
use super::outcome::{Stage, DATA_EXCEPTION};
use super::registry::RegistryClient;
use super::wire_format::{RegistryCheck, Verdict};
use super::working::{Side, Working};

/// Class name reported for the JSON check (Connect's JSON converter).
const JSON_CLASS: &str = "org.apache.kafka.connect.json.JsonConverter";
/// Class name reported for the JSON Schema check.
const JSON_SCHEMA_CLASS: &str = "quarantine.check.JsonSchema";
/// Class name reported for the schema-registry check.
const REGISTRY_CLASS: &str = "quarantine.check.SchemaRegistry";

#[derive(Debug)]
enum Kind {
    Json,
    JsonSchema(jsonschema::Validator),
    Registry(RegistryCheck),
}

/// A compiled check.
#[derive(Debug)]
pub(crate) struct Check {
    side: Side,
    kind: Kind,
}

/// Registry clients shared between checks that name the same registry.
pub(crate) type RegistryPool = HashMap<RegistryConfig, Arc<RegistryClient>>;

impl Check {
    /// Compile check `i` of pipeline `index`. Without `base_dir` schema files are not read
    /// (validation only).
    pub(crate) fn compile(
        index: usize,
        i: usize,
        config: &CheckConfig,
        base_dir: Option<&Path>,
        pool: &mut RegistryPool,
    ) -> Result<Check, ConfigError> {
        let key = |field: &str| format!("pipelines[{index}].checks[{i}].{field}");
        let side = |on: &CheckTarget| match on {
            CheckTarget::Key => Side::Key,
            CheckTarget::Value => Side::Value,
        };
        Ok(match config {
            CheckConfig::Json { on } => Check {
                side: side(on),
                kind: Kind::Json,
            },
            CheckConfig::JsonSchema { on, file, schema } => {
                let schema = match (file, schema) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(ConfigError::new(
                            key("file"),
                            "set exactly one of file and schema",
                        ))
                    }
                    (None, Some(s)) => s.clone(),
                    (Some(f), None) => {
                        let Some(dir) = base_dir else {
                            // Validation only: the file is read when the pipelines are compiled.
                            return Ok(Check {
                                side: side(on),
                                kind: Kind::Json,
                            });
                        };
                        let path = dir.join(f);
                        let text = std::fs::read_to_string(&path).map_err(|e| {
                            ConfigError::new(
                                key("file"),
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?;
                        serde_json::from_str(&text).map_err(|e| {
                            ConfigError::new(
                                key("file"),
                                format!("{} is not JSON: {e}", path.display()),
                            )
                        })?
                    }
                };
                let field = if file.is_some() { "file" } else { "schema" };
                let validator =
                    json_schema::compile(&schema).map_err(|e| ConfigError::new(key(field), e))?;
                Check {
                    side: side(on),
                    kind: Kind::JsonSchema(validator),
                }
            }
            CheckConfig::SchemaRegistry {
                on,
                allowed_ids,
                registry,
            } => {
                if allowed_ids.is_empty() && registry.is_none() {
                    return Err(ConfigError::new(
                        key("allowed_ids"),
                        "set allowed_ids, registry, or both",
                    ));
                }
                let client = match registry {
                    None => None,
                    Some(r) => Some(match pool.get(r) {
                        Some(c) => c.clone(),
                        None => {
                            let c = Arc::new(
                                RegistryClient::new(r)
                                    .map_err(|e| ConfigError::new(key("registry.url"), e))?,
                            );
                            pool.insert(r.clone(), c.clone());
                            c
                        }
                    }),
                };
                let mut allowed = allowed_ids.clone();
                allowed.sort_unstable();
                allowed.dedup();
                Check {
                    side: side(on),
                    kind: Kind::Registry(RegistryCheck { allowed, client }),
                }
            }
        })
    }

    /// The stage failures of this check report.
    pub(crate) fn stage(&self) -> Stage {
        match self.side {
            Side::Key => Stage::KeyConverter,
            Side::Value => Stage::ValueConverter,
        }
    }

    /// The class name failures of this check report.
    pub(crate) fn class_name(&self) -> &'static str {
        match self.kind {
            Kind::Json => JSON_CLASS,
            Kind::JsonSchema(_) => JSON_SCHEMA_CLASS,
            Kind::Registry(_) => REGISTRY_CLASS,
        }
    }

    /// Whether this check looks schema ids up in a registry.
    pub(crate) fn uses_registry(&self) -> bool {
        matches!(
            &self.kind,
            Kind::Registry(RegistryCheck {
                client: Some(_),
                ..
            })
        )
    }

    /// The registry and the schema id this check will need for `bytes`, if any.
    pub(crate) fn registry_id(
        &self,
        record: &crate::protocol::record::Record,
    ) -> Option<(&Arc<RegistryClient>, u32)> {
        let Kind::Registry(check) = &self.kind else {
            return None;
        };
        let client = check.client.as_ref()?;
        let bytes = match self.side {
            Side::Key => record.key.as_ref(),
            Side::Value => record.value.as_ref(),
        }?;
        let id = super::wire_format::schema_id(bytes)?;
        check.allows(id).then_some((client, id))
    }

    /// Run the check.
    pub(crate) fn run(&self, w: &mut Working<'_>) -> Verdict {
        match &self.kind {
            Kind::Json => match w.parse(self.side) {
                Ok(_) => Verdict::Pass,
                Err(e) => Verdict::Fail {
                    exception: DATA_EXCEPTION,
                    message: e.0,
                },
            },
            Kind::JsonSchema(validator) => {
                let show = w.show_values;
                match w.whole(self.side) {
                    Ok(None) => Verdict::Pass,
                    Ok(Some(v)) => match json_schema::violations(validator, &v, show) {
                        None => Verdict::Pass,
                        Some(message) => Verdict::Fail {
                            exception: DATA_EXCEPTION,
                            message,
                        },
                    },
                    Err(e) => Verdict::Fail {
                        exception: DATA_EXCEPTION,
                        message: e.0,
                    },
                }
            }
            Kind::Registry(check) => match w.original(self.side) {
                None => Verdict::Pass,
                Some(bytes) => check.check(bytes, self.side.noun(), w.show_values),
            },
        }
    }
}
