//! Which topics and groups are watched, and with which settings: the `watch:` section of
//! the config, compiled into regexes once at start.

use regex::Regex;
use serde::Deserialize;

use crate::config::error::ConfigError;

/// Include/exclude lists of anchored regular expressions.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Selector {
    /// Names matching any of these are selected (`.*` = all).
    pub include: Vec<String>,
    /// ...unless they match one of these.
    pub exclude: Vec<String>,
}

impl Default for Selector {
    fn default() -> Self {
        Selector {
            include: vec![".*".into()],
            exclude: Vec::new(),
        }
    }
}

/// A compiled [`Selector`].
#[derive(Debug, Clone)]
pub struct Matcher {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl Matcher {
    /// Compiles a selector; `key` names it in errors.
    pub fn compile(sel: &Selector, key: &str) -> Result<Self, ConfigError> {
        let compile = |list: &[String], which: &str| -> Result<Vec<Regex>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                        ConfigError::invalid(format!("{key}.{which}[{i}]"), e.to_string())
                    })
                })
                .collect()
        };
        Ok(Matcher {
            include: compile(&sel.include, "include")?,
            exclude: compile(&sel.exclude, "exclude")?,
        })
    }

    /// Whether `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        self.include.iter().any(|r| r.is_match(name))
            && !self.exclude.iter().any(|r| r.is_match(name))
    }
}

/// How records are dead-lettered.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Topic name template: `{topic}` and `{group}` are replaced.
    pub topic_template: String,
    /// Header style: `connect`, `spring` or `kip-1191`.
    pub header_style: String,
    /// `retention.ms` of created DLQ topics (default 14 days).
    pub retention_ms: i64,
    /// Replication factor of created DLQ topics, lowered to the broker count with a warning.
    pub replication_factor: i16,
    /// Longest header value written (error messages are cut to this).
    pub max_header_bytes: usize,
    /// Timeout of one DLQ write, in milliseconds.
    pub write_timeout_ms: u64,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            topic_template: "{topic}.dlq".into(),
            header_style: "connect".into(),
            retention_ms: 14 * 24 * 3600 * 1000,
            replication_factor: 3,
            max_header_bytes: 1024,
            write_timeout_ms: 10_000,
        }
    }
}

/// The `watch:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Poison detection on or off (transforms configured under `pipelines` run either way).
    pub enabled: bool,
    /// Watched topics. Internal topics (`__*`), DLQ topics and the state topic never are.
    pub topics: Selector,
    /// Watched consumer groups.
    pub groups: Selector,
    /// Detection settings for everything watched.
    pub detection: crate::detect::DetectConfig,
    /// The deploy guard: stops diverting for a group whose failures are not isolated.
    pub guard: super::guard::GuardConfig,
    /// Per-topic/group detection and guard settings; the first matching entry that sets a
    /// section wins for that section.
    pub overrides: Vec<Override>,
    /// Dead-letter writing.
    pub dead_letter: DeadLetterConfig,
    /// Compacted topic holding quarantine decisions and shared delivery counts.
    pub state_topic: String,
    /// This proxy's name in DLQ headers and the state topic (default: host name).
    pub instance: Option<String>,
    /// Log payloads of diverted records (off: payloads stay out of logs).
    pub log_payloads: bool,
    /// Leaving the group on behalf of a consumer whose process is gone.
    pub fast_failover: FastFailoverConfig,
}

/// The `watch.fast_failover` section: when every connection of a consumer member closed
/// without a leave and the member did not come back within `grace`, the proxy sends the
/// leave for it, so its partitions move now instead of after `session.timeout.ms`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FastFailoverConfig {
    /// On or off (the default).
    pub enabled: bool,
    /// How long a member whose connections all closed may take to come back before the
    /// proxy leaves for it. Between 100 ms and 5 minutes.
    #[serde(deserialize_with = "grace_text")]
    pub grace: std::time::Duration,
    /// Also leave for static members (`group.instance.id`); off by default, as static
    /// membership exists to survive a restart without a rebalance.
    pub static_members: bool,
}

impl Default for FastFailoverConfig {
    fn default() -> Self {
        FastFailoverConfig {
            enabled: false,
            grace: std::time::Duration::from_secs(1),
            static_members: false,
        }
    }
}

/// Shortest and longest accepted `watch.fast_failover.grace`.
const GRACE_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(300);

fn grace_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Ms(u64),
        Text(String),
    }
    match Text::deserialize(d)? {
        Text::Ms(ms) => Ok(std::time::Duration::from_millis(ms)),
        Text::Text(t) => crate::detect::parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            enabled: true,
            topics: Selector::default(),
            groups: Selector::default(),
            detection: Default::default(),
            guard: Default::default(),
            overrides: Vec::new(),
            dead_letter: DeadLetterConfig::default(),
            state_topic: "__quarantine_state".into(),
            instance: None,
            log_payloads: false,
            fast_failover: FastFailoverConfig::default(),
        }
    }
}

/// Detection settings for some topics and groups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Topics this entry applies to.
    #[serde(default)]
    pub topics: Selector,
    /// Groups this entry applies to.
    #[serde(default)]
    pub groups: Selector,
    /// Detection settings (absent: the next matching entry's, or `watch.detection`).
    #[serde(default)]
    pub detection: Option<crate::detect::DetectConfig>,
    /// Guard settings (absent: the next matching entry's, or `watch.guard`).
    #[serde(default)]
    pub guard: Option<super::guard::GuardConfig>,
}

/// An override entry with its selectors compiled.
#[derive(Debug, Clone)]
struct CompiledOverride {
    topics: Matcher,
    groups: Matcher,
    detection: Option<crate::detect::DetectConfig>,
    guard: Option<super::guard::GuardConfig>,
}

impl CompiledOverride {
    fn matches(&self, topic: &str, group: &str) -> bool {
        self.topics.matches(topic) && self.groups.matches(group)
    }
}

/// The compiled watch policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The raw section.
    pub config: WatchConfig,
    topics: Matcher,
    groups: Matcher,
    overrides: Vec<CompiledOverride>,
    dlq_suffix: Option<String>,
    dlq_prefix: Option<String>,
}

impl Policy {
    /// Validates and compiles the section.
    pub fn compile(config: WatchConfig) -> Result<Self, ConfigError> {
        let topics = Matcher::compile(&config.topics, "watch.topics")?;
        let groups = Matcher::compile(&config.groups, "watch.groups")?;
        config
            .detection
            .validate()
            .map_err(|e| ConfigError::invalid(format!("watch.detection.{}", e.key), e.reason))?;
        config
            .guard
            .validate()
            .map_err(|e| ConfigError::invalid(format!("watch.guard.{}", e.key), e.reason))?;
        let mut overrides = Vec::new();
        for (i, o) in config.overrides.iter().enumerate() {
            if let Some(d) = &o.detection {
                d.validate().map_err(|e| {
                    ConfigError::invalid(
                        format!("watch.overrides[{i}].detection.{}", e.key),
                        e.reason,
                    )
                })?;
            }
            if let Some(g) = &o.guard {
                g.validate().map_err(|e| {
                    ConfigError::invalid(format!("watch.overrides[{i}].guard.{}", e.key), e.reason)
                })?;
            }
            overrides.push(CompiledOverride {
                topics: Matcher::compile(&o.topics, &format!("watch.overrides[{i}].topics"))?,
                groups: Matcher::compile(&o.groups, &format!("watch.overrides[{i}].groups"))?,
                detection: o.detection,
                guard: o.guard,
            });
        }
        let t = &config.dead_letter.topic_template;
        crate::dead_letter::validate_template(t)
            .map_err(|e| ConfigError::invalid("watch.dead_letter.topic_template", e.to_string()))?;
        if !matches!(
            config.dead_letter.header_style.as_str(),
            "connect" | "spring" | "kip-1191"
        ) {
            return Err(ConfigError::invalid(
                "watch.dead_letter.header_style",
                "must be connect, spring or kip-1191",
            ));
        }
        if config.dead_letter.replication_factor < 1 {
            return Err(ConfigError::invalid(
                "watch.dead_letter.replication_factor",
                "must be at least 1",
            ));
        }
        if config.state_topic.is_empty() {
            return Err(ConfigError::invalid(
                "watch.state_topic",
                "must not be empty",
            ));
        }
        if !GRACE_RANGE.contains(&config.fast_failover.grace) {
            return Err(ConfigError::invalid(
                "watch.fast_failover.grace",
                "must be between 100ms and 5m",
            ));
        }
        // DLQ topic names are recognised by the template's text around {topic}, so a DLQ is
        // never itself watched, whatever the include list says.
        let (prefix, suffix) = t.split_once("{topic}").unwrap_or((t, ""));
        let fixed = |s: &str| (!s.is_empty() && !s.contains("{group}")).then(|| s.to_string());
        Ok(Policy {
            topics,
            groups,
            overrides,
            dlq_prefix: fixed(prefix),
            dlq_suffix: fixed(suffix),
            config,
        })
    }

    /// Whether a topic is watched.
    pub fn watches_topic(&self, topic: &str) -> bool {
        if topic.starts_with("__") || topic == self.config.state_topic {
            return false;
        }
        if self
            .dlq_suffix
            .as_deref()
            .is_some_and(|s| topic.ends_with(s))
            || self
                .dlq_prefix
                .as_deref()
                .is_some_and(|p| topic.starts_with(p))
        {
            return false;
        }
        self.topics.matches(topic)
    }

    /// Whether a group is watched.
    pub fn watches_group(&self, group: &str) -> bool {
        self.groups.matches(group)
    }

    /// Detection settings for a topic and group.
    pub fn detection(&self, topic: &str, group: &str) -> &crate::detect::DetectConfig {
        self.overrides
            .iter()
            .filter(|o| o.matches(topic, group))
            .find_map(|o| o.detection.as_ref())
            .unwrap_or(&self.config.detection)
    }

    /// Guard settings for a topic and group.
    pub fn guard(&self, topic: &str, group: &str) -> &super::guard::GuardConfig {
        self.overrides
            .iter()
            .filter(|o| o.matches(topic, group))
            .find_map(|o| o.guard.as_ref())
            .unwrap_or(&self.config.guard)
    }

    /// The DLQ topic for a source topic and group.
    pub fn dlq_topic(&self, topic: &str, group: &str) -> String {
        crate::dead_letter::dlq_topic_name(&self.config.dead_letter.topic_template, topic, group)
    }
}
