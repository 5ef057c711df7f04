//! Tests of the transform pipelines through their public API.
