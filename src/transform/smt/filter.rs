//! Filter: drop the record (use it with a predicate, as in Connect, to drop only some).

use crate::transform::errors::DataError;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::{Side, Working};

/// Connect's `org.apache.kafka.connect.transforms.Filter`.
#[derive(Debug)]
struct Filter;

pub(crate) fn build(_props: &Props, _side: Side) -> Result<Box<dyn Transform>, PropError> {
    Ok(Box::new(Filter))
}

impl Transform for Filter {
    fn apply(&self, _w: &mut Working<'_>) -> Result<Step, DataError> {
        Ok(Step::Drop)
    }
}
