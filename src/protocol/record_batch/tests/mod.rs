//! Tests of the record-batch codec: encoding, interoperability with other encoders,
//! the rewrite/hide path, and hostile input. `support` builds batches for them and for
//! other modules' tests.

mod codec;
mod interop;
mod rewrite;
mod robustness;
pub(crate) mod support;
