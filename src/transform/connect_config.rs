//! Reading a pipeline's flat, Connect-style `config` map: the `transforms` and
//! `predicates` lists, each alias's `type` and properties, and the `errors.*` keys.
//! Errors name the exact key, e.g. `pipelines[0].config."transforms.mask.fields"`.

use std::collections::BTreeMap;

use super::catalogue::{self, Built};
use super::config::{config_key, PropValue};
use super::errors::ConfigError;
use super::predicate::{self, Predicate};
use super::props::{PropError, Props};

/// Connect's `errors.tolerance`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tolerance {
    /// A failing record is reported, but passes unchanged (the proxy stays transparent).
    #[default]
    None,
    /// A failing record is diverted to the dead-letter topic (or dropped without one).
    All,
}

/// The `errors.*` settings of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorHandling {
    /// `errors.tolerance` (default none).
    pub tolerance: Tolerance,
    /// `errors.deadletterqueue.topic.name`; `None` when empty or absent.
    pub dead_letter_topic: Option<String>,
    /// `errors.deadletterqueue.topic.replication.factor`, used when this pipeline's DLQ
    /// topic is created; `None` (absent, or -1) means `watch.dead_letter.replication_factor`.
    pub dead_letter_replication_factor: Option<i16>,
    /// `errors.deadletterqueue.context.headers.enable`. **Default true**, unlike Connect
    /// (false): the reason a record was diverted belongs with the record. When false, the
    /// DLQ copy carries only the `__quarantine.*` headers (origin, reason), which restore
    /// and replay need, not the header style's `__connect.errors.*` (or Spring, KIP-1191)
    /// context headers.
    pub context_headers: bool,
    /// `errors.log.enable` (default false).
    pub log_enable: bool,
    /// `errors.log.include.messages` (default false): payloads may appear in logs and
    /// failure messages only when true.
    pub log_include_messages: bool,
    /// `errors.retry.timeout` in ms (default 0; -1 forever). Transforms are
    /// deterministic, so the pipeline itself never retries; kept for the DLQ writer.
    pub retry_timeout_ms: i64,
    /// `errors.retry.delay.max.ms` (default 60000).
    pub retry_delay_max_ms: i64,
}

impl Default for ErrorHandling {
    fn default() -> Self {
        ErrorHandling {
            tolerance: Tolerance::None,
            dead_letter_topic: None,
            dead_letter_replication_factor: None,
            context_headers: true,
            log_enable: false,
            log_include_messages: false,
            retry_timeout_ms: 0,
            retry_delay_max_ms: 60_000,
        }
    }
}

/// A transform alias, built.
#[derive(Debug)]
pub(crate) struct AliasTransform {
    /// The alias from `transforms`.
    pub alias: String,
    /// The transform and its class name.
    pub built: Built,
    /// The predicate gating it and whether it is negated.
    pub predicate: Option<(Predicate, bool)>,
}

/// A pipeline's flat config, read.
#[derive(Debug)]
pub(crate) struct ConnectConfig {
    pub transforms: Vec<AliasTransform>,
    pub errors: ErrorHandling,
}

/// Read the flat config map of pipeline `index`.
pub(crate) fn parse(
    index: usize,
    map: &BTreeMap<String, PropValue>,
) -> Result<ConnectConfig, ConfigError> {
    let key = |k: &str| config_key(index, k);
    let list_of = |name: &str| -> Result<Vec<String>, ConfigError> {
        let list = map.get(name).map(PropValue::as_list).unwrap_or_default();
        for (i, a) in list.iter().enumerate() {
            if list[..i].contains(a) {
                return Err(ConfigError::new(
                    key(name),
                    format!("'{a}' is listed twice"),
                ));
            }
            if a.contains('.') {
                return Err(ConfigError::new(
                    key(name),
                    format!("'{a}' must not contain a dot"),
                ));
            }
        }
        Ok(list)
    };
    let aliases = list_of("transforms")?;
    let predicate_names = list_of("predicates")?;

    let mut alias_props: BTreeMap<&str, BTreeMap<String, PropValue>> = BTreeMap::new();
    let mut predicate_props: BTreeMap<&str, BTreeMap<String, PropValue>> = BTreeMap::new();
    let mut errors = ErrorHandling::default();
    for (k, v) in map {
        let grouped = [
            ("transforms.", &aliases, &mut alias_props, "transforms"),
            (
                "predicates.",
                &predicate_names,
                &mut predicate_props,
                "predicates",
            ),
        ];
        let mut handled = false;
        for (prefix, names, target, list_key) in grouped {
            let Some(rest) = k.strip_prefix(prefix) else {
                continue;
            };
            handled = true;
            let Some((name, prop)) = rest
                .split_once('.')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            else {
                return Err(ConfigError::new(
                    key(k),
                    format!("expected {prefix}<name>.<property>"),
                ));
            };
            let Some(name) = names.iter().find(|n| *n == name) else {
                return Err(ConfigError::new(
                    key(k),
                    format!("'{name}' is not listed in {list_key}"),
                ));
            };
            target
                .entry(name.as_str())
                .or_default()
                .insert(prop.to_string(), v.clone());
        }
        if handled || k == "transforms" || k == "predicates" {
            continue;
        }
        read_error_key(k, v, &mut errors).map_err(|m| ConfigError::new(key(k), m))?;
    }

    let mut predicates: BTreeMap<&str, Predicate> = BTreeMap::new();
    for name in &predicate_names {
        let props = Props::new(predicate_props.remove(name.as_str()).unwrap_or_default());
        let prop_key = |e: PropError| {
            ConfigError::new(key(&format!("predicates.{name}.{}", e.prop)), e.message)
        };
        let type_name = props.req_str("type").map_err(prop_key)?;
        predicates.insert(
            name,
            predicate::build(&type_name, &props).map_err(prop_key)?,
        );
    }

    let mut transforms = Vec::with_capacity(aliases.len());
    for alias in &aliases {
        let props = Props::new(alias_props.remove(alias.as_str()).unwrap_or_default());
        let prop_key = |e: PropError| {
            ConfigError::new(key(&format!("transforms.{alias}.{}", e.prop)), e.message)
        };
        let type_name = props.req_str("type").map_err(prop_key)?;
        let built = catalogue::build(&type_name, &props).map_err(prop_key)?;
        let negate = props.bool("negate", false).map_err(prop_key)?;
        let predicate = match props.opt_str("predicate") {
            Some(p) if !p.trim().is_empty() => {
                let Some(pred) = predicates.get(p.trim()) else {
                    return Err(prop_key(PropError::new(
                        "predicate",
                        format!("predicate '{}' is not listed in predicates", p.trim()),
                    )));
                };
                Some((pred.clone(), negate))
            }
            _ if negate => {
                return Err(prop_key(PropError::new(
                    "negate",
                    "negate needs a predicate on the same transform",
                )))
            }
            _ => None,
        };
        transforms.push(AliasTransform {
            alias: alias.clone(),
            built,
            predicate,
        });
    }
    Ok(ConnectConfig { transforms, errors })
}

fn read_error_key(k: &str, v: &PropValue, errors: &mut ErrorHandling) -> Result<(), String> {
    let text = v.as_connect_string();
    let boolean = || match v {
        PropValue::Bool(b) => Ok(*b),
        _ => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("must be true or false".to_string()),
        },
    };
    let int = || {
        text.trim()
            .parse::<i64>()
            .map_err(|_| "must be an integer".to_string())
    };
    match k {
        "errors.tolerance" => {
            errors.tolerance = match text.trim().to_ascii_lowercase().as_str() {
                "none" => Tolerance::None,
                "all" => Tolerance::All,
                _ => return Err("must be none or all".to_string()),
            }
        }
        "errors.deadletterqueue.topic.name" => {
            let t = text.trim();
            errors.dead_letter_topic = (!t.is_empty()).then(|| t.to_string());
        }
        "errors.deadletterqueue.topic.replication.factor" => {
            let n = i16::try_from(int()?)
                .ok()
                .filter(|n| *n == -1 || *n >= 1)
                .ok_or("must be -1 (the proxy's default) or a positive number")?;
            errors.dead_letter_replication_factor = (n >= 1).then_some(n);
        }
        "errors.deadletterqueue.context.headers.enable" => errors.context_headers = boolean()?,
        "errors.log.enable" => errors.log_enable = boolean()?,
        "errors.log.include.messages" => errors.log_include_messages = boolean()?,
        "errors.retry.timeout" => {
            errors.retry_timeout_ms = int()?;
            if errors.retry_timeout_ms < -1 {
                return Err("must be -1 (forever) or at least 0".to_string());
            }
        }
        "errors.retry.delay.max.ms" => {
            errors.retry_delay_max_ms = int()?;
            if errors.retry_delay_max_ms < 0 {
                return Err("must not be negative".to_string());
            }
        }
        _ => {
            return Err(
                "unknown key (expected transforms, transforms.<alias>.*, predicates, predicates.<name>.*, or errors.*)"
                    .to_string(),
            )
        }
    }
    Ok(())
}
