//! What every single message transform is: a [`Transform`] over the record under work,
//! deciding a [`Step`].

use std::fmt;

use super::errors::DataError;
use super::working::Working;

/// What a transform decided about the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Go on with the next transform.
    Continue,
    /// Drop the record (Filter).
    Drop,
}

/// A single message transform over a record under work.
pub(crate) trait Transform: Send + Sync + fmt::Debug {
    /// Apply to the record; a `DataError` is a TRANSFORMATION-stage failure.
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError>;
}
