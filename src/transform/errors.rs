//! The two ways the transform layer fails: a configuration mistake, naming the exact key
//! ([`ConfigError`]), and a record a transform or check cannot handle ([`DataError`]).

/// A configuration mistake, naming the exact key so the binary can print it and exit 64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Path of the offending key, e.g. `pipelines[0].config."transforms.mask.fields"`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A data error raised by a transform or check: becomes Connect's `DataException`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataError(pub String);

impl DataError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        DataError(message.into())
    }
}
