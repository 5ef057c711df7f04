//! Kafka-Connect-style single message transforms, predicates and checks over decoded
//! records, configured per topic (name or pattern) and optionally per consumer group.
//!
//! The proxy asks [`Pipelines::for_record`] (or [`Pipelines::applies_to`], to skip
//! batches undecoded), awaits [`Pipeline::prepare`] for a batch (schema-registry
//! lookups), then calls [`Pipeline::apply`] per record. The [`Outcome`] says whether the
//! record passes (maybe rewritten), was filtered, or failed; a failure carries Connect's
//! stage, class and exception names for the dead-letter context headers. Dead-letter
//! copies are masked with [`mask_for_dlq`].
//!
//! Semantics worth knowing:
//! - Keys and values are schemaless JSON, parsed at most once per record per pipeline and
//!   re-encoded only when a transform changed them (key order is preserved). An object is
//!   parsed lazily: split into its top-level fields, each parsed only when a transform
//!   touches it; untouched fields are written back byte for byte (escapes, number forms
//!   and inner whitespace as they came), the rest compactly as `serde_json` writes it.
//!   What is accepted or refused, and with which message, is the same as a full parse.
//! - A null key or value, or JSON `null`, passes every transform and check untouched.
//! - Bytes that are not JSON fail a transform that needs them (stage `TRANSFORMATION`)
//!   and the JSON checks (stage `KEY_CONVERTER`/`VALUE_CONVERTER`).
//! - `errors.tolerance=all`: a failure diverts the record. `none` (the default): the
//!   record passes exactly as it came and the failure is logged and reported.
//! - A schema registry that cannot be reached does not make records vanish: they pass
//!   unverified ([`Outcome::Pass`] with `unverified` set), whatever the tolerance.
//! - Failure messages name fields and types, never payload values, unless
//!   `errors.log.include.messages=true`.

mod catalogue;
mod check;
mod config;
mod connect_config;
mod date_format;
mod dlq_mask;
mod errors;
mod field_path;
mod json_schema;
mod lazy_object;
mod lazy_scan;
mod outcome;
mod pipeline;
mod predicate;
mod props;
mod registry;
mod smt;
mod step;
mod wire_format;
mod working;

#[cfg(test)]
mod tests;

pub use config::{
    CheckConfig, CheckTarget, PipelineConfig, PropScalar, PropValue, RegistryConfig,
    TransformConfig,
};
pub use connect_config::{ErrorHandling, Tolerance};
pub use dlq_mask::{mask_for_dlq, MaskConfig, MaskReport, Unparseable};
pub use errors::ConfigError;
pub use field_path::{FieldPath, FieldSyntax};
pub use outcome::{Failure, Outcome, Stage, DATA_EXCEPTION, SERIALIZATION_EXCEPTION};
pub use pipeline::{Pipeline, Pipelines, RecordContext};
pub use registry::RegistryClient;
pub use working::Side;
