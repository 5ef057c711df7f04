//! ReplaceField: keep only some top-level fields (`include`), drop some (`exclude`) and
//! rename others (`renames=old:new,...`), keeping the order of the fields.

use crate::transform::errors::DataError;
use crate::transform::props::{PropError, Props};
use crate::transform::step::{Step, Transform};
use crate::transform::working::{Side, Working};

/// Properties of ReplaceField (`blacklist`/`whitelist` are Connect's deprecated names).
pub(crate) const PROPS: &[&str] = &[
    "exclude",
    "include",
    "renames",
    "blacklist",
    "whitelist",
    "replace.null.with.default",
];

/// ReplaceField$Key / ReplaceField$Value.
#[derive(Debug)]
struct ReplaceField {
    side: Side,
    include: Vec<String>,
    exclude: Vec<String>,
    renames: Vec<(String, String)>,
}

pub(crate) fn build(props: &Props, side: Side) -> Result<Box<dyn Transform>, PropError> {
    props.bool("replace.null.with.default", true)?;
    let mut include = props.list("include");
    include.extend(props.list("whitelist"));
    let mut exclude = props.list("exclude");
    exclude.extend(props.list("blacklist"));
    let mut renames = Vec::new();
    for pair in props.list("renames") {
        match pair.split_once(':') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                renames.push((from.trim().to_string(), to.trim().to_string()))
            }
            _ => {
                return Err(PropError::new(
                    "renames",
                    format!("'{pair}' is not of the form old:new"),
                ))
            }
        }
    }
    Ok(Box::new(ReplaceField {
        side,
        include,
        exclude,
        renames,
    }))
}

impl ReplaceField {
    fn keeps(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|f| f == name))
            && !self.exclude.iter().any(|f| f == name)
    }

    /// The new name of a field, if it is renamed.
    fn renamed(&self, name: &str) -> Option<&str> {
        self.renames
            .iter()
            .find(|(from, _)| from == name)
            .map(|(_, to)| to.as_str())
    }
}

impl Transform for ReplaceField {
    fn apply(&self, w: &mut Working<'_>) -> Result<Step, DataError> {
        w.update_object(self.side, "field replacement", |map| {
            let needed = map
                .keys()
                .any(|k| !self.keeps(k) || self.renamed(k).is_some_and(|to| to != k));
            if needed {
                map.retain_renamed(|k| self.keeps(k).then(|| self.renamed(k)));
            }
            Ok(())
        })?;
        Ok(Step::Continue)
    }
}
