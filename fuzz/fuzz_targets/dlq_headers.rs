//! Dead-letter header parsing (`quarantine dlq inspect`, `stats`, `replay`) on records
//! whose headers come from the input: any key, any bytes, null values, duplicates, in the
//! Connect, Spring, KIP-1191 and quarantine styles. Never panics.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use quarantine_fuzz::batches::{Header, Record};
use quarantine_fuzz::dead_letter::{parse_origin, replay_count};

/// Header names the parser looks for, so that random input reaches its branches.
const KEYS: &[&str] = &[
    "__connect.errors.topic",
    "__connect.errors.partition",
    "__connect.errors.offset",
    "__connect.errors.stage",
    "__connect.errors.exception.message",
    "__connect.errors.exception.class.name",
    "kafka_dlt-original-topic",
    "kafka_dlt-original-partition",
    "kafka_dlt-original-offset",
    "kafka_dlt-exception-message",
    "__dlq.errors.topic",
    "__dlq.errors.partition",
    "__dlq.errors.offset",
    "__quarantine.group",
    "__quarantine.topic",
    "__quarantine.partition",
    "__quarantine.offset",
    "__quarantine.reason",
    "__quarantine.delivery.count",
    "__quarantine.first.delivery.ms",
    "__quarantine.last.delivery.ms",
    "__quarantine.replay.count",
];

fn run(u: &mut Unstructured) -> Result<()> {
    let mut headers = Vec::new();
    while !u.is_empty() && headers.len() < 32 {
        let key = if u.ratio(3, 4)? {
            KEYS[u.choose_index(KEYS.len())?].to_string()
        } else {
            u.arbitrary::<String>()?
        };
        let value = if u.ratio(1, 10)? {
            None
        } else {
            let n = u.int_in_range(0..=24)?;
            Some(Bytes::copy_from_slice(u.bytes(n)?))
        };
        headers.push(Header { key, value });
    }
    let record = Record {
        offset: 0,
        timestamp: 0,
        key: None,
        value: None,
        headers,
    };
    let _ = parse_origin(&record);
    let _ = replay_count(&record);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
