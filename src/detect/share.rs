//! Delivery counts shared between the sidecars of one group, so a partition that moves to
//! another pod keeps its count. This file only shapes and merges the counts; carrying
//! them (a compacted Kafka topic keyed by group/topic/partition/offset) is the proxy's.
//!
//! Times travel as Unix milliseconds; they are converted from and to `Instant` with a
//! pair of readings of both clocks taken by the caller.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::config::DetectorLimits;
use super::partition::PartitionState;
use super::PartitionKey;

/// The delivery count of one re-delivered offset, in its shared form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCount {
    /// The partition, as consumed by one group.
    pub key: PartitionKey,
    /// The re-delivered offset.
    pub offset: i64,
    /// Deliveries counted.
    pub count: u32,
    /// First delivery, Unix milliseconds.
    pub first: i64,
    /// Latest delivery, Unix milliseconds.
    pub last: i64,
    /// Highest offset delivered to the group when this was exported: where the poison
    /// search must end.
    #[serde(default)]
    pub delivered_to: i64,
}

impl DeliveryCount {
    /// The record key to use on a compacted topic: one entry per offset.
    pub fn topic_key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.key.group, self.key.topic, self.key.partition, self.offset
        )
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// `at` on the wall clock, given that `now` and `wall` are the same moment.
fn to_unix_ms(at: Instant, now: Instant, wall: SystemTime) -> i64 {
    let wall_ms = unix_ms(wall);
    let back = i64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(i64::MAX);
    let ahead = i64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(i64::MAX);
    wall_ms.saturating_sub(back).saturating_add(ahead)
}

/// The instant of a Unix millisecond time, clamped to `now` for times in the future and
/// to `now` when the past is out of the monotonic clock's range.
fn from_unix_ms(ms: i64, now: Instant, wall: SystemTime) -> Instant {
    let ago = unix_ms(wall).saturating_sub(ms);
    match u64::try_from(ago) {
        Ok(ago) => now.checked_sub(Duration::from_millis(ago)).unwrap_or(now),
        Err(_) => now,
    }
}

pub(crate) fn export(
    key: &PartitionKey,
    state: &PartitionState,
    now: Instant,
    wall: SystemTime,
) -> Vec<DeliveryCount> {
    let delivered_to = state.high_delivered.unwrap_or(-1);
    state
        .counts
        .iter()
        .map(|(offset, c)| DeliveryCount {
            key: key.clone(),
            offset: *offset,
            count: c.count,
            first: to_unix_ms(c.first, now, wall),
            last: to_unix_ms(c.last, now, wall),
            delivered_to,
        })
        .collect()
}

pub(crate) fn merge(
    state: &mut PartitionState,
    dc: &DeliveryCount,
    now: Instant,
    wall: SystemTime,
    limits: &DetectorLimits,
) {
    let first = from_unix_ms(dc.first, now, wall);
    let last = from_unix_ms(dc.last, now, wall);
    state.merge_count(dc.offset, dc.count, first, last, dc.delivered_to, limits);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_round_trip() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = now.checked_sub(Duration::from_secs(5)).unwrap_or(now);
        let ms = to_unix_ms(at, now, wall);
        assert_eq!(ms, 1_700_000_000_000 - 5_000);
        let back = from_unix_ms(ms, now, wall);
        assert_eq!(now.duration_since(back), Duration::from_secs(5));
        // The future is clamped to now.
        assert_eq!(from_unix_ms(unix_ms(wall) + 10_000, now, wall), now);
    }

    #[test]
    fn serialized_form_is_stable() {
        let dc = DeliveryCount {
            key: PartitionKey::new("g", "orders", 2),
            offset: 41,
            count: 3,
            first: 1,
            last: 2,
            delivered_to: 99,
        };
        let json = serde_json::to_string(&dc).unwrap();
        assert_eq!(
            json,
            r#"{"key":{"group":"g","topic":"orders","partition":2},"offset":41,"count":3,"first":1,"last":2,"delivered_to":99}"#
        );
        assert_eq!(dc.topic_key(), "g/orders/2/41");
        let back: DeliveryCount = serde_json::from_str(&json).unwrap();
        assert_eq!(back, dc);
    }
}
