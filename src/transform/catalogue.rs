//! The transforms quarantine knows, by Connect class name: which properties each accepts,
//! whether it has `$Key`/`$Value` variants, and how to build it from its properties.

use super::props::{PropError, Props};
use super::smt::{cast, fields, filter, flatten, headers, insert, mask, replace, timestamp};
use super::step::Transform;
use super::working::Side;

/// Package of Connect's built-in transforms.
pub(crate) const TRANSFORMS_PACKAGE: &str = "org.apache.kafka.connect.transforms.";

type Build = fn(&Props, Side) -> Result<Box<dyn Transform>, PropError>;

struct Spec {
    name: &'static str,
    /// Whether Connect has `$Key` and `$Value` variants (and requires one).
    variants: bool,
    props: &'static [&'static str],
    build: Build,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "InsertField",
        variants: true,
        props: insert::PROPS,
        build: insert::build,
    },
    Spec {
        name: "ReplaceField",
        variants: true,
        props: replace::PROPS,
        build: replace::build,
    },
    Spec {
        name: "MaskField",
        variants: true,
        props: mask::PROPS,
        build: mask::build,
    },
    Spec {
        name: "ValueToKey",
        variants: false,
        props: fields::VALUE_TO_KEY_PROPS,
        build: fields::build_value_to_key,
    },
    Spec {
        name: "ExtractField",
        variants: true,
        props: fields::EXTRACT_PROPS,
        build: fields::build_extract,
    },
    Spec {
        name: "HoistField",
        variants: true,
        props: fields::HOIST_PROPS,
        build: fields::build_hoist,
    },
    Spec {
        name: "Flatten",
        variants: true,
        props: flatten::PROPS,
        build: flatten::build,
    },
    Spec {
        name: "Cast",
        variants: true,
        props: cast::PROPS,
        build: cast::build,
    },
    Spec {
        name: "TimestampConverter",
        variants: true,
        props: timestamp::PROPS,
        build: timestamp::build,
    },
    Spec {
        name: "InsertHeader",
        variants: false,
        props: headers::INSERT_PROPS,
        build: headers::build_insert,
    },
    Spec {
        name: "DropHeaders",
        variants: false,
        props: headers::DROP_PROPS,
        build: headers::build_drop,
    },
    Spec {
        name: "HeaderFrom",
        variants: true,
        props: headers::FROM_PROPS,
        build: headers::build_from,
    },
    Spec {
        name: "Filter",
        variants: false,
        props: &[],
        build: filter::build,
    },
];

/// Connect built-ins that cannot run on a consumer's fetch path, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "RegexRouter",
        "it changes the topic, which a proxy cannot do for records already fetched from one",
    ),
    (
        "TimestampRouter",
        "it changes the topic, which a proxy cannot do for records already fetched from one",
    ),
    (
        "SetSchemaMetadata",
        "it only applies to records with schemas; quarantine transforms schemaless JSON",
    ),
];

/// Properties every alias may have besides its own.
pub(crate) const COMMON_PROPS: &[&str] = &["type", "predicate", "negate"];

/// A built transform with the class name failures report.
#[derive(Debug)]
pub(crate) struct Built {
    /// Full Connect class name, e.g. `org.apache.kafka.connect.transforms.MaskField$Value`.
    pub class_name: String,
    /// The transform.
    pub transform: Box<dyn Transform>,
}

/// Build a transform from its `type` and properties. Errors name the property (`type`
/// for an unknown type).
pub(crate) fn build(type_name: &str, props: &Props) -> Result<Built, PropError> {
    let short = type_name
        .trim()
        .strip_prefix(TRANSFORMS_PACKAGE)
        .unwrap_or(type_name.trim());
    let (base, variant) = match short.split_once('$') {
        Some((b, v)) => (b, Some(v)),
        None => (short, None),
    };
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == base) {
        return Err(PropError::new(
            "type",
            format!("{base} is not supported: {why}"),
        ));
    }
    let Some(spec) = SPECS.iter().find(|s| s.name == base) else {
        let known: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        return Err(PropError::new(
            "type",
            format!(
                "unknown transform type '{type_name}' (known: {})",
                known.join(", ")
            ),
        ));
    };
    let side = match (spec.variants, variant) {
        (true, Some("Key")) => Side::Key,
        (true, Some("Value")) => Side::Value,
        (true, _) => {
            return Err(PropError::new(
                "type",
                format!("{base} needs a $Key or $Value variant, e.g. {base}$Value"),
            ))
        }
        (false, None) => Side::Value,
        (false, Some(v)) => {
            return Err(PropError::new(
                "type",
                format!("{base} has no ${v} variant"),
            ));
        }
    };
    for name in props.names() {
        if !COMMON_PROPS.contains(&name) && !spec.props.contains(&name) {
            let known = if spec.props.is_empty() {
                "it takes none".to_string()
            } else {
                format!("known: {}", spec.props.join(", "))
            };
            return Err(PropError::new(
                name,
                format!("unknown property for {base} ({known})"),
            ));
        }
    }
    let transform = (spec.build)(props, side)?;
    let class_name = match variant {
        Some(v) => format!("{TRANSFORMS_PACKAGE}{base}${v}"),
        None => format!("{TRANSFORMS_PACKAGE}{base}"),
    };
    Ok(Built {
        class_name,
        transform,
    })
}
