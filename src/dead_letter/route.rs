//! Where a dead-letter record goes: the DLQ topic's name (from a template) and the DLQ
//! partition (the source partition when the DLQ has it, so keyed order survives replay).

/// The default DLQ topic template: `order.confirmed` → `order.confirmed.dlq`.
pub const DEFAULT_TEMPLATE: &str = "{topic}.dlq";

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a template or a topic name is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not name the source topic.
    #[error("template `{0}` must contain {{topic}}")]
    MissingTopic(String),
    /// The template names the source topic itself, so the DLQ would be the source.
    #[error("template `{0}` would make every topic its own DLQ")]
    SameAsSource(String),
    /// A `{...}` placeholder other than `{topic}` and `{group}`.
    #[error(
        "template `{template}` has unknown placeholder `{{{name}}}` (known: {{topic}}, {{group}})"
    )]
    UnknownPlaceholder {
        /// The template.
        template: String,
        /// The placeholder's name.
        name: String,
    },
    /// The name is empty, `.` or `..`.
    #[error("`{0}` is not a legal topic name")]
    Reserved(String),
    /// A character Kafka does not allow in topic names.
    #[error("`{name}` contains `{ch}`; topic names allow only a-z A-Z 0-9 . _ -")]
    IllegalCharacter {
        /// The name or template.
        name: String,
        /// The offending character.
        ch: char,
    },
    /// Longer than Kafka allows.
    #[error("`{name}` is {len} characters long; topic names are at most 249")]
    TooLong {
        /// The name (or template).
        name: String,
        /// Its length.
        len: usize,
    },
}

fn legal(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks a topic name against Kafka's rules: 1 to 249 characters of `[a-zA-Z0-9._-]`,
/// not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TemplateError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(TemplateError::Reserved(name.to_string()));
    }
    if let Some(ch) = name.chars().find(|c| !legal(*c)) {
        return Err(TemplateError::IllegalCharacter {
            name: name.to_string(),
            ch,
        });
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TemplateError::TooLong {
            name: name.to_string(),
            len: name.len(),
        });
    }
    Ok(())
}

/// Checks a DLQ topic template: it contains `{topic}`, uses no other placeholder than
/// `{topic}` and `{group}`, is not just `{topic}`, and its literal text is legal in a topic
/// name with room left for the topic.
pub fn validate_template(template: &str) -> Result<(), TemplateError> {
    let mut literal = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(TemplateError::IllegalCharacter {
                name: template.to_string(),
                ch: '{',
            });
        };
        let name = &after[..end];
        if name != "topic" && name != "group" {
            return Err(TemplateError::UnknownPlaceholder {
                template: template.to_string(),
                name: name.to_string(),
            });
        }
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !template.contains("{topic}") {
        return Err(TemplateError::MissingTopic(template.to_string()));
    }
    if template == "{topic}" {
        return Err(TemplateError::SameAsSource(template.to_string()));
    }
    if let Some(ch) = literal.chars().find(|c| !legal(*c)) {
        return Err(TemplateError::IllegalCharacter {
            name: template.to_string(),
            ch,
        });
    }
    // Shortest possible result: one-character topic and group.
    validate_topic_name(&dlq_topic_name(template, "t", "g")).map_err(|e| match e {
        TemplateError::TooLong { len, .. } => TemplateError::TooLong {
            name: template.to_string(),
            len,
        },
        other => other,
    })
}

/// The DLQ topic for `topic` consumed by `group`: `{topic}` and `{group}` replaced. Group
/// ids may hold any character, so characters not legal in a topic name become `_`. Check
/// the result with [`validate_topic_name`] (a long group can push it past 249).
pub fn dlq_topic_name(template: &str, topic: &str, group: &str) -> String {
    let group: String = group
        .chars()
        .map(|c| if legal(c) { c } else { '_' })
        .collect();
    template
        .replace("{topic}", topic)
        .replace("{group}", &group)
}

/// Kafka's murmur2 hash, as its default partitioner computes it for keys.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The DLQ partition for a record of `source_partition`: the same partition when the DLQ
/// has it; else Kafka's default keyed choice (positive murmur2 of the key modulo the
/// count); else, for a null key, the source partition modulo the count (as KIP-1191 does).
/// Returns 0 when `dlq_partitions` is not positive.
pub fn dlq_partition(source_partition: i32, key: Option<&[u8]>, dlq_partitions: i32) -> i32 {
    if dlq_partitions <= 0 {
        return 0;
    }
    if (0..dlq_partitions).contains(&source_partition) {
        return source_partition;
    }
    match key {
        Some(k) => (murmur2(k) & 0x7fff_ffff) % dlq_partitions,
        None => source_partition.rem_euclid(dlq_partitions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's own UtilsTest.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), want, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn partition_is_kept_when_the_dlq_has_it() {
        assert_eq!(dlq_partition(3, Some(b"k"), 6), 3);
        assert_eq!(dlq_partition(0, None, 1), 0);
        assert_eq!(dlq_partition(5, None, 6), 5);
    }

    #[test]
    fn keyed_records_hash_like_kafka_when_the_dlq_is_smaller() {
        // positive(murmur2("foobar")) % 4
        let want = (-790332482i32 & 0x7fff_ffff) % 4;
        assert_eq!(dlq_partition(7, Some(b"foobar"), 4), want);
        // Same key, same DLQ partition, whatever the source partition.
        assert_eq!(
            dlq_partition(9, Some(b"foobar"), 4),
            dlq_partition(4, Some(b"foobar"), 4)
        );
    }

    #[test]
    fn null_keys_use_the_source_partition_modulo() {
        assert_eq!(dlq_partition(7, None, 4), 3);
        assert_eq!(dlq_partition(8, None, 4), 0);
        assert_eq!(dlq_partition(-1, None, 4), 3);
        assert_eq!(dlq_partition(2, None, 0), 0);
    }

    #[test]
    fn names_come_from_the_template() {
        assert_eq!(
            dlq_topic_name(DEFAULT_TEMPLATE, "order.confirmed", "orders"),
            "order.confirmed.dlq"
        );
        assert_eq!(
            dlq_topic_name("dlq.{group}.{topic}", "payments", "billing svc/1"),
            "dlq.billing_svc_1.payments"
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(validate_template(DEFAULT_TEMPLATE).is_ok());
        assert!(validate_template("{topic}-dlt").is_ok());
        assert!(validate_template("{group}.{topic}.dlq").is_ok());
        assert!(matches!(
            validate_template("dead-letters"),
            Err(TemplateError::MissingTopic(_))
        ));
        assert!(matches!(
            validate_template("{topic}"),
            Err(TemplateError::SameAsSource(_))
        ));
        assert!(matches!(
            validate_template("{topic}.{env}"),
            Err(TemplateError::UnknownPlaceholder { name, .. }) if name == "env"
        ));
        assert!(matches!(
            validate_template("{topic} dlq"),
            Err(TemplateError::IllegalCharacter { ch: ' ', .. })
        ));
        assert!(matches!(
            validate_template("{topic"),
            Err(TemplateError::IllegalCharacter { ch: '{', .. })
        ));
        let long = format!("{{topic}}.{}", "x".repeat(248));
        assert!(matches!(
            validate_template(&long),
            Err(TemplateError::TooLong { .. })
        ));
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(validate_topic_name("order.confirmed.dlq").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a/b").is_err());
    }
}
