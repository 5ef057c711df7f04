//! Tests of the transform pipelines through their public API: configuration in, records
//! through, outcomes and rewritten records out.

mod checks;
mod config_errors;
mod dlq_masking;
mod lazy_values;
mod pipeline_behaviour;
mod registry_client;
mod support;
mod transforms;
