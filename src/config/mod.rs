//! The proxy's configuration: one YAML file, overridden by `QUARANTINE__SECTION__KEY`
//! environment variables, overridden by command-line flags, then validated.
//!
//! Every error names the key it is about, so an operator can fix it without reading code;
//! the binary turns any [`ConfigError`] into exit code 64 (`EX_USAGE`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use crate::cluster::sasl::{Credentials, Mechanism};

pub mod error;

pub use error::ConfigError;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Client-facing side: listeners and advertised addresses.
    pub proxy: ProxyConfig,
    /// Broker-facing side: where the cluster is and how to reach it.
    pub upstream: UpstreamConfig,
    /// The admin HTTP server (health, readiness, metrics, quarantine API).
    pub admin: AdminConfig,
    /// Logging.
    pub log: LogConfig,
    /// Poison detection and dead-letter writing.
    pub watch: crate::watch::policy::WatchConfig,
    /// Kafka-Connect-style transforms and checks on the consume path.
    pub pipelines: Vec<crate::transform::PipelineConfig>,
    /// Directory of the config file: schema files are read relative to it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Client-facing listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Bootstrap listener; applications point `bootstrap.servers` here.
    pub listen: String,
    /// Host name or IP put in every broker address a client sees (localhost, the pod IP).
    pub advertised_host: String,
    /// Address the per-broker listeners bind to; defaults to the IP of `listen`.
    pub bind_host: Option<String>,
    /// Broker node N is served on `node_port_base + N` unless `node_ports` names it.
    pub node_port_base: u16,
    /// Explicit node id to local port map, taking precedence over `node_port_base`.
    pub node_ports: BTreeMap<i32, u16>,
    /// Largest frame accepted from either side, in bytes.
    pub max_frame_bytes: usize,
    /// Bytes the proxy may hold whole at once across all connections (request frames and
    /// the responses it may change); frames wait for room. Default: a quarter of the
    /// container's memory limit, between 16 MiB and 1 GiB, or 64 MiB without a limit.
    pub buffer_budget_bytes: Option<u64>,
    /// How long in-flight requests may take to finish on shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Client connections served at once, over every listener; a connection past the
    /// limit is closed as soon as it is accepted (counted and logged).
    pub max_connections: usize,
    /// Optional TLS on the client-facing listeners.
    pub tls: Option<DownstreamTls>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:9092".into(),
            advertised_host: "127.0.0.1".into(),
            bind_host: None,
            node_port_base: 19000,
            node_ports: BTreeMap::new(),
            max_frame_bytes: 100 * 1024 * 1024,
            buffer_budget_bytes: None,
            shutdown_grace_ms: 10_000,
            max_connections: 4096,
            tls: None,
        }
    }
}

/// TLS for connections from applications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamTls {
    /// PEM certificate chain presented to clients.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
}

/// Broker-facing side.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The cluster's bootstrap servers, `host:port` each (a comma-separated string works
    /// too, as in a Kafka client's `bootstrap.servers`).
    #[serde(deserialize_with = "servers")]
    pub bootstrap_servers: Vec<String>,
    /// Connect timeout in milliseconds.
    pub connect_timeout_ms: u64,
    /// TLS towards the brokers.
    pub tls: UpstreamTls,
    /// SASL for the proxy's own connections (readiness probe, dead-letter writes, state
    /// topic, `quarantine dlq`); client connections authenticate themselves through it.
    pub sasl: Option<UpstreamSasl>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            bootstrap_servers: vec!["127.0.0.1:9093".into()],
            connect_timeout_ms: 10_000,
            tls: UpstreamTls::default(),
            sasl: None,
        }
    }
}

/// TLS towards the brokers.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTls {
    /// Use TLS to the brokers.
    pub enabled: bool,
    /// PEM file of CA certificates to trust instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// Name to verify the brokers' certificates against, instead of each broker's host.
    pub server_name: Option<String>,
}

/// `upstream.sasl`: how the proxy authenticates its own connections. Exactly one of
/// `password` and `password_file`; the file is read when the config is loaded, and from
/// then on `password` holds its content. `Debug` never shows the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: Mechanism,
    /// The user the proxy authenticates as.
    pub username: String,
    /// The password itself.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (a mounted secret); one trailing newline is ignored.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for UpstreamSasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl UpstreamSasl {
    /// Reads `password_file` into `password`, checking that exactly one of them is given.
    /// A relative `password_file` is read relative to `base_dir`, the config file's folder.
    fn load_password(&mut self, base_dir: &Path) -> Result<(), ConfigError> {
        let file = match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "upstream.sasl",
                    "give either `password` or `password_file`, not both",
                ))
            }
            (None, None) => {
                return Err(ConfigError::invalid(
                    "upstream.sasl.password",
                    "missing: give `password` or `password_file`",
                ))
            }
            (Some(_), None) => return Ok(()),
            (None, Some(file)) => base_dir.join(file),
        };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            ConfigError::invalid(
                "upstream.sasl.password_file",
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if text.is_empty() {
            return Err(ConfigError::invalid(
                "upstream.sasl.password_file",
                format!("{} is empty", file.display()),
            ));
        }
        self.password = Some(text.to_string());
        Ok(())
    }

    /// The credentials to authenticate with (after [`Config::load`], which reads the file).
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        let password = self.password.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "upstream.sasl.password",
                "missing: give `password` or `password_file`",
            )
        })?;
        Ok(Credentials::new(
            self.mechanism,
            self.username.clone(),
            password.clone(),
        ))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.username.is_empty() {
            return Err(ConfigError::invalid(
                "upstream.sasl.username",
                "must not be empty",
            ));
        }
        // A missing password was reported by `load_password`, which runs first.
        if self.password.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                "upstream.sasl.password",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

/// Admin HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address; loopback by default. Empty string disables the server.
    pub listen: String,
    /// Bearer token required by the admin API's write operations, when set.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9644".into(),
            token: None,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter: `info`, `debug`, `quarantine=debug,info`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

fn servers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Servers {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Servers::deserialize(d)? {
        Servers::One(s) => split_list(&s),
        Servers::Many(v) => v.iter().flat_map(|s| split_list(s)).collect(),
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "QUARANTINE__";

impl Config {
    /// Reads `path` (if any), applies `QUARANTINE__A__B=v` overrides from `env`, parses and
    /// validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::load_with_flags(path, env, Vec::new())
    }

    /// [`Config::load`], then command-line `flags` on top: `(flag, dotted key, value)`,
    /// e.g. `("--listen", "proxy.listen", "0.0.0.0:9092")`. An error about a value set by
    /// a variable or a flag names that variable or flag.
    pub fn load_with_flags(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Vec<(&str, &str, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                if text.trim().is_empty() {
                    Value::Mapping(Default::default())
                } else {
                    serde_norway::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?
                }
            }
            None => Value::Mapping(Default::default()),
        };
        let mut origins = apply_env_sourced(&mut tree, env)?;
        for (flag, key, value) in flags {
            let path: Vec<String> = key.split('.').map(String::from).collect();
            set_path(&mut tree, &path, Value::String(value));
            origins.retain(|(k, _)| k != key);
            origins.push((key.to_string(), format!("flag {flag}")));
        }
        let base_dir = path
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_value_in(tree, base_dir).map_err(|e| name_override(e, &origins))
    }

    /// Parses an already-merged YAML tree and validates it.
    pub fn from_value(tree: Value) -> Result<Config, ConfigError> {
        Self::from_value_in(tree, PathBuf::from("."))
    }

    fn from_value_in(tree: Value, base_dir: PathBuf) -> Result<Config, ConfigError> {
        let tree = if tree.is_null() {
            Value::Mapping(Default::default())
        } else {
            tree
        };
        let mut config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::invalid(path, e.into_inner().to_string())
        })?;
        if let Some(sasl) = &mut config.upstream.sasl {
            sasl.load_password(&base_dir)?;
        }
        let config = Config { base_dir, ..config };
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_addr("proxy.listen", &self.proxy.listen)?;
        if self.proxy.advertised_host.trim().is_empty() {
            return Err(ConfigError::invalid(
                "proxy.advertised_host",
                "must not be empty",
            ));
        }
        if self.proxy.buffer_budget_bytes.is_some_and(|b| b < 1 << 20) {
            return Err(ConfigError::invalid(
                "proxy.buffer_budget_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.proxy.max_connections == 0 {
            return Err(ConfigError::invalid(
                "proxy.max_connections",
                "must be at least 1",
            ));
        }
        if self.proxy.max_frame_bytes < 1024 || self.proxy.max_frame_bytes > i32::MAX as usize {
            return Err(ConfigError::invalid(
                "proxy.max_frame_bytes",
                "must be between 1024 and 2147483647",
            ));
        }
        if self.upstream.bootstrap_servers.is_empty() {
            return Err(ConfigError::invalid(
                "upstream.bootstrap_servers",
                "at least one host:port is required",
            ));
        }
        for (i, s) in self.upstream.bootstrap_servers.iter().enumerate() {
            split_host_port(s).ok_or_else(|| {
                ConfigError::invalid(
                    format!("upstream.bootstrap_servers[{i}]"),
                    format!("`{s}` is not host:port"),
                )
            })?;
        }
        let tls = &self.upstream.tls;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(ConfigError::invalid(
                "upstream.tls.key_file",
                "cert_file and key_file go together",
            ));
        }
        for (key, file) in [
            ("upstream.tls.ca_file", &tls.ca_file),
            ("upstream.tls.cert_file", &tls.cert_file),
            ("upstream.tls.key_file", &tls.key_file),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    return Err(ConfigError::invalid(
                        key,
                        format!("no such file: {}", f.display()),
                    ));
                }
            }
        }
        if let Some(sasl) = &self.upstream.sasl {
            sasl.validate()?;
        }
        if let Some(t) = &self.proxy.tls {
            for (key, f) in [
                ("proxy.tls.cert_file", &t.cert_file),
                ("proxy.tls.key_file", &t.key_file),
            ] {
                if !f.is_file() {
                    return Err(ConfigError::invalid(
                        key,
                        format!("no such file: {}", f.display()),
                    ));
                }
            }
        }
        for (node, port) in &self.proxy.node_ports {
            if *port == 0 {
                return Err(ConfigError::invalid(
                    format!("proxy.node_ports.{node}"),
                    "port 0 cannot be advertised",
                ));
            }
        }
        if !self.admin.listen.is_empty() {
            parse_addr("admin.listen", &self.admin.listen)?;
        }
        crate::watch::policy::Policy::compile(self.watch.clone())?;
        self.compile_pipelines()?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::invalid(
                "log.format",
                format!("`{}` is neither `text` nor `json`", self.log.format),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                format!("`{}` is not a tracing filter", self.log.level),
            ));
        }
        Ok(())
    }

    /// Compiles the transform pipelines (reading schema files).
    pub fn compile_pipelines(&self) -> Result<crate::transform::Pipelines, ConfigError> {
        let tc = crate::transform::TransformConfig {
            pipelines: self.pipelines.clone(),
        };
        crate::transform::Pipelines::compile(&tc, &self.base_dir)
            .map_err(|e| ConfigError::invalid(e.key.clone(), e.message.clone()))
    }

    /// The bootstrap listener address (validated).
    pub fn listen_addr(&self) -> SocketAddr {
        self.proxy.listen.parse().expect("validated")
    }

    /// The host per-broker listeners bind to.
    pub fn bind_host(&self) -> String {
        self.proxy
            .bind_host
            .clone()
            .unwrap_or_else(|| self.listen_addr().ip().to_string())
    }

    /// Local port that serves broker `node_id`, if it fits in a port number.
    pub fn node_port(&self, node_id: i32) -> Option<u16> {
        if let Some(p) = self.proxy.node_ports.get(&node_id) {
            return Some(*p);
        }
        let port = i64::from(self.proxy.node_port_base) + i64::from(node_id);
        u16::try_from(port).ok().filter(|p| *p != 0)
    }
}

/// Splits `host:port` (with `[v6]:port` support).
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(key, format!("`{value}` is not an ip:port socket address"))
    })
}

/// Keys whose environment values are taken as strings verbatim: a password such as `0123`,
/// `true` or `null` must not turn into a number, a boolean or nothing. The same for the
/// admin API token.
const VERBATIM_ENV_KEYS: [&str; 4] = [
    "admin.token",
    "upstream.sasl.username",
    "upstream.sasl.password",
    "upstream.sasl.password_file",
];

/// Applies `QUARANTINE__SECTION__KEY=value` variables onto the YAML tree. Values are read as
/// YAML scalars, so numbers and booleans keep their types (except the secrets and names in
/// [`VERBATIM_ENV_KEYS`], kept verbatim).
pub fn apply_env(
    tree: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    apply_env_sourced(tree, env).map(|_| ())
}

/// [`apply_env`], returning which variable set which dotted key (`(key, "environment
/// variable NAME")`), for error messages.
pub fn apply_env_sourced(
    tree: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut origins: Vec<(String, String)> = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(name, "empty path segment"));
        }
        let value = if VERBATIM_ENV_KEYS.contains(&path.join(".").as_str()) {
            Value::String(raw)
        } else {
            serde_norway::from_str(&raw).unwrap_or(Value::String(raw))
        };
        set_path(tree, &path, value);
        let key = path.join(".");
        origins.retain(|(k, _)| *k != key);
        origins.push((key, format!("environment variable {name}")));
    }
    Ok(origins)
}

/// Whether the error key `key` is about the value at dotted path `set` (the same key, or a
/// field or element under it).
fn key_within(key: &str, set: &str) -> bool {
    key == set
        || key
            .strip_prefix(set)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Rewrites an error about a key set by a variable or flag to name that variable or flag.
fn name_override(e: ConfigError, origins: &[(String, String)]) -> ConfigError {
    let ConfigError::Invalid { key, message } = e else {
        return e;
    };
    let origin = origins
        .iter()
        .filter(|(set, _)| key_within(&key, set))
        .max_by_key(|(set, _)| set.len());
    match origin {
        Some((_, source_name)) => ConfigError::Override {
            source_name: source_name.clone(),
            key,
            message,
        },
        None => ConfigError::Invalid { key, message },
    }
}

/// Sets a dotted path in a YAML tree, creating mappings as needed.
pub fn set_path(tree: &mut Value, path: &[String], value: Value) {
    if !tree.is_mapping() {
        *tree = Value::Mapping(Default::default());
    }
    let Value::Mapping(map) = tree else {
        return;
    };
    let key = Value::String(path[0].clone());
    if path.len() == 1 {
        map.insert(key, value);
    } else {
        let child = map
            .entry(key)
            .or_insert_with(|| Value::Mapping(Default::default()));
        set_path(child, &path[1..], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut tree: Value = serde_norway::from_str(yaml).unwrap();
        apply_env(
            &mut tree,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        Config::from_value(tree)
    }

    #[test]
    fn defaults_are_valid() {
        let c = load("{}", &[]).unwrap();
        assert_eq!(c.proxy.listen, "127.0.0.1:9092");
        assert_eq!(c.node_port(111), Some(19111));
        assert_eq!(c.bind_host(), "127.0.0.1");
    }

    #[test]
    fn env_overrides_file_and_keeps_types() {
        let c = load(
            "proxy: {listen: '127.0.0.1:1'}\nupstream: {bootstrap_servers: [a:1]}",
            &[
                ("QUARANTINE__PROXY__LISTEN", "127.0.0.1:2"),
                ("QUARANTINE__PROXY__NODE_PORT_BASE", "3000"),
                ("QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS", "b:1, c:2"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.proxy.listen, "127.0.0.1:2");
        assert_eq!(c.proxy.node_port_base, 3000);
        assert_eq!(c.upstream.bootstrap_servers, vec!["b:1", "c:2"]);
    }

    #[test]
    fn env_admin_token_is_kept_verbatim() {
        for token in ["0123", "true", "null", "1e3"] {
            let c = load("{}", &[("QUARANTINE__ADMIN__TOKEN", token)]).unwrap();
            assert_eq!(c.admin.token.as_deref(), Some(token));
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("proxy: {listen: nowhere}", "proxy.listen"),
            ("proxy: {lisen: '1.2.3.4:5'}", "lisen"),
            (
                "upstream: {bootstrap_servers: []}",
                "upstream.bootstrap_servers",
            ),
            (
                "upstream: {bootstrap_servers: [nohost]}",
                "bootstrap_servers[0]",
            ),
            ("log: {format: xml}", "log.format"),
            ("proxy: {max_frame_bytes: 10}", "proxy.max_frame_bytes"),
            (
                "proxy: {buffer_budget_bytes: 1000}",
                "proxy.buffer_budget_bytes",
            ),
            ("proxy: {max_connections: 0}", "proxy.max_connections"),
            ("proxy: {node_port_base: -1}", "node_port_base"),
            (
                "upstream: {tls: {ca_file: /no/such/file}}",
                "upstream.tls.ca_file",
            ),
        ];
        for (yaml, key) in cases {
            let err = load(yaml, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: `{err}` should name {key}");
        }
    }

    #[test]
    fn admin_listens_on_loopback_by_default() {
        let c = load("{}", &[]).unwrap();
        let addr: SocketAddr = c.admin.listen.parse().unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert!(c.admin.token.is_none());
    }

    const SASL: &str = "upstream: {sasl: {mechanism: SCRAM-SHA-512, username: q, password: pw}}";

    #[test]
    fn sasl_section_parses_into_credentials() {
        let c = load(SASL, &[]).unwrap();
        let creds = c.upstream.sasl.as_ref().unwrap().credentials().unwrap();
        assert_eq!(creds.mechanism, Mechanism::ScramSha512);
        assert_eq!((creds.username.as_str(), creds.password()), ("q", "pw"));
        assert!(load("{}", &[]).unwrap().upstream.sasl.is_none());
        let shown = format!("{c:?}");
        assert!(!shown.contains("\"pw\""), "password shown in {shown}");
    }

    #[test]
    fn sasl_errors_name_the_key() {
        let cases = [
            ("upstream: {sasl: {mechanism: GSSAPI, username: q, password: p}}", "upstream.sasl.mechanism"),
            ("upstream: {sasl: {mechanism: scram-sha-512, username: q, password: p}}", "upstream.sasl.mechanism"),
            ("upstream: {sasl: {mechanism: PLAIN, username: '', password: p}}", "upstream.sasl.username"),
            ("upstream: {sasl: {mechanism: PLAIN, username: q}}", "upstream.sasl.password"),
            ("upstream: {sasl: {mechanism: PLAIN, username: q, password: ''}}", "upstream.sasl.password"),
            ("upstream: {sasl: {mechanism: PLAIN, username: q, password: p, password_file: /etc/hostname}}", "upstream.sasl"),
            ("upstream: {sasl: {mechanism: PLAIN, username: q, password_file: /no/such/file}}", "upstream.sasl.password_file"),
            ("upstream: {sasl: {mechanism: PLAIN, username: q, password: p, pasword: x}}", "upstream.sasl"),
        ];
        for (yaml, key) in cases {
            let err = load(yaml, &[]).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}")),
                "{yaml}: `{err}` should name {key}"
            );
        }
        let both = load(cases[5].0, &[]).unwrap_err().to_string();
        assert!(both.contains("not both"), "{both}");
    }

    #[test]
    fn sasl_password_file_is_read_at_load_with_its_newline_trimmed() {
        let dir = std::env::temp_dir().join(format!("quarantine-sasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from file\n").unwrap();
        let yaml = "upstream: {sasl: {mechanism: PLAIN, username: q, password_file: pw}}";
        let tree: Value = serde_norway::from_str(yaml).unwrap();
        let c = Config::from_value_in(tree, dir.clone());
        std::fs::remove_dir_all(&dir).unwrap();
        let creds = c.unwrap().upstream.sasl.unwrap().credentials().unwrap();
        assert_eq!(creds.password(), "from file");
    }

    #[test]
    fn sasl_env_overrides_work_and_keep_passwords_verbatim() {
        let yaml = "upstream: {sasl: {mechanism: PLAIN, username: q}}";
        let c = load(
            yaml,
            &[
                ("QUARANTINE__UPSTREAM__SASL__PASSWORD", "007"),
                ("QUARANTINE__UPSTREAM__SASL__MECHANISM", "SCRAM-SHA-256"),
            ],
        )
        .unwrap();
        let creds = c.upstream.sasl.unwrap().credentials().unwrap();
        assert_eq!(creds.password(), "007");
        assert_eq!(creds.mechanism, Mechanism::ScramSha256);
        let c = load(SASL, &[("QUARANTINE__UPSTREAM__SASL__PASSWORD", "true")]).unwrap();
        assert_eq!(
            c.upstream.sasl.unwrap().credentials().unwrap().password(),
            "true"
        );
    }

    #[test]
    fn fast_failover_section_defaults_parses_and_names_bad_keys() {
        let c = load("{}", &[]).unwrap();
        let f = &c.watch.fast_failover;
        assert!(!f.enabled && !f.static_members);
        assert_eq!(f.grace, std::time::Duration::from_secs(1));
        let c = load(
            "watch: {fast_failover: {enabled: true, grace: 1500ms, static_members: true}}",
            &[],
        )
        .unwrap();
        let f = &c.watch.fast_failover;
        assert!(f.enabled && f.static_members);
        assert_eq!(f.grace, std::time::Duration::from_millis(1500));
        let c = load(
            "{}",
            &[
                ("QUARANTINE__WATCH__FAST_FAILOVER__ENABLED", "true"),
                ("QUARANTINE__WATCH__FAST_FAILOVER__GRACE", "2s"),
            ],
        )
        .unwrap();
        assert!(c.watch.fast_failover.enabled);
        assert_eq!(
            c.watch.fast_failover.grace,
            std::time::Duration::from_secs(2)
        );
        let cases = [
            (
                "watch: {fast_failover: {grace: 10ms}}",
                "watch.fast_failover.grace",
            ),
            (
                "watch: {fast_failover: {grace: 1h}}",
                "watch.fast_failover.grace",
            ),
            (
                "watch: {fast_failover: {grace: soon}}",
                "watch.fast_failover.grace",
            ),
            (
                "watch: {fast_failover: {enabled: maybe}}",
                "watch.fast_failover.enabled",
            ),
            ("watch: {fast_failover: {grase: 1s}}", "watch.fast_failover"),
        ];
        for (yaml, key) in cases {
            let err = load(yaml, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: `{err}` should name {key}");
        }
    }

    #[test]
    fn node_ports_map_wins_and_overflow_is_none() {
        let c = load("proxy: {node_port_base: 65000, node_ports: {7: 4000}}", &[]).unwrap();
        assert_eq!(c.node_port(7), Some(4000));
        assert_eq!(c.node_port(536), None);
        assert_eq!(c.node_port(1), Some(65001));
    }

    #[test]
    fn override_errors_name_the_variable_or_flag() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = Config::load(None, env(&[("QUARANTINE__PROXY__LISTEN", "nowhere")])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("QUARANTINE__PROXY__LISTEN"), "{text}");
        assert!(text.contains("proxy.listen"), "{text}");
        let e = Config::load(
            None,
            env(&[("QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS", "a:1,nohost")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS"), "{e}");
        let e = Config::load(None, env(&[("QUARANTINE__PROXY__LISEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("QUARANTINE__PROXY__LISEN"), "{e}");
        // A flag wins over the variable and is the one named.
        let e = Config::load_with_flags(
            None,
            env(&[("QUARANTINE__PROXY__LISTEN", "127.0.0.1:1")]),
            vec![("--listen", "proxy.listen", "nowhere".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("flag --listen") && !e.contains("QUARANTINE__"),
            "{e}"
        );
        // Errors about keys nobody overrode still name only the key.
        let e = Config::load(None, env(&[("QUARANTINE__LOG__FORMAT", "xml")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("QUARANTINE__LOG__FORMAT"), "{e}");
        let c = Config::load_with_flags(
            None,
            Vec::new(),
            vec![(
                "--upstream",
                "upstream.bootstrap_servers",
                "b:1, c:2".into(),
            )],
        )
        .unwrap();
        assert_eq!(c.upstream.bootstrap_servers, vec!["b:1", "c:2"]);
    }
}
