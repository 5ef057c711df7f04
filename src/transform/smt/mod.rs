//! The single message transforms, one per file, each a [`super::step::Transform`] built
//! from its Kafka Connect properties.

pub(super) mod cast;
pub(super) mod fields;
pub(super) mod filter;
pub(super) mod flatten;
pub(super) mod headers;
pub(super) mod insert;
pub(super) mod mask;
pub(super) mod replace;
pub(super) mod timestamp;
