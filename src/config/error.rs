//! The configuration error every layer reports in: it always names the offending key. A
//! leaf, so the layers that check their own sections need nothing else from `config`.

use std::path::PathBuf;

/// A configuration problem, always naming the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named on the command line.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The YAML does not parse or does not fit the schema (unknown key, wrong type).
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value parsed but is not acceptable.
    #[error("invalid config key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key, e.g. `proxy.listen`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A value set by an environment variable (or a command-line flag) is not acceptable:
    /// names what the user set, and the key it overrides.
    #[error("invalid value in {source_name} (config key `{key}`): {message}")]
    Override {
        /// `environment variable QUARANTINE__PROXY__LISTEN` or `flag --listen`.
        source_name: String,
        /// Dotted path of the key, e.g. `proxy.listen`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}
