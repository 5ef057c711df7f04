//! How often one offset was delivered, and how its re-deliveries looked.

use std::time::{Duration, Instant};

use super::Reason;

/// Re-delivery count of one offset.
#[derive(Debug, Clone)]
pub(crate) struct OffsetCount {
    /// Deliveries (the first one included; a re-delivery after a stall adds two).
    pub count: u32,
    /// First delivery as far as known.
    pub first: Instant,
    /// Latest delivery.
    pub last: Instant,
    /// Longest failing session: from the commit moving (or the previous re-delivery)
    /// to this re-delivery. A hang shows here as its eviction time.
    pub max_gap: Duration,
    /// How the latest re-delivery looked.
    pub reason: Reason,
}
