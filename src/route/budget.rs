//! The budget for bytes the proxy holds whole: request frames, and responses it may have
//! to change (a fetch with records to hide, transform or hold back). A frame waits for its
//! share before it is read, so a burst of large frames slows the peers down (TCP
//! backpressure) instead of growing memory. A frame larger than the whole budget takes all
//! of it and goes alone. Responses that pass through unchanged are streamed and take
//! nothing from it, and frames of up to [`SMALL`] bytes (nearly every request) are not
//! counted: a connection holds at most one at a time.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Frames up to this size are not counted.
pub const SMALL: usize = 64 * 1024;

/// Granularity of the budget.
const UNIT: usize = 1024;

/// Bytes that may be held whole at once, across every connection.
#[derive(Debug, Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// A share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Share {
    _permit: OwnedSemaphorePermit,
}

impl Budget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: u64) -> Budget {
        let units = u32::try_from(bytes / UNIT as u64)
            .unwrap_or(u32::MAX >> 4)
            .clamp(1, u32::MAX >> 4);
        Budget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// Waits for room for a frame of `bytes`.
    pub async fn take(&self, bytes: usize) -> Share {
        let want = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.units);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(want)
            .await
            .expect("the budget's semaphore is never closed");
        Share { _permit: permit }
    }

    /// Waits for room for a frame of `bytes`, unless it is small (see [`SMALL`]).
    pub async fn take_large(&self, bytes: usize) -> Option<Share> {
        if bytes <= SMALL {
            return None;
        }
        Some(self.take(bytes).await)
    }

    /// Whether a frame of `bytes` would have to wait now.
    pub fn would_wait(&self, bytes: usize) -> bool {
        let want = bytes.div_ceil(UNIT).clamp(1, self.units as usize);
        self.permits.available_permits() < want
    }

    /// Bytes held now.
    pub fn in_use(&self) -> u64 {
        (self.units as u64 - self.permits.available_permits() as u64) * UNIT as u64
    }
}

/// The default budget: a quarter of the container's memory limit (cgroup v2 or v1),
/// between 16 MiB and 1 GiB; 64 MiB when there is no limit.
pub fn default_bytes() -> u64 {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        // cgroup v1 reports "no limit" as a huge number.
        .filter(|l| *l < (1 << 50));
    match limit {
        Some(l) => (l / 4).clamp(16 << 20, 1 << 30),
        None => 64 << 20,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_wait_for_room_and_a_huge_one_goes_alone() {
        let b = Budget::new(10 * 1024);
        let a = b.take(6 * 1024).await;
        assert!(b.would_wait(6 * 1024));
        assert_eq!(b.in_use(), 6 * 1024);
        let c = b.take(4 * 1024).await;
        assert!(b.would_wait(1));
        drop(a);
        drop(c);
        // Larger than the budget: takes all of it.
        let huge = b.take(50 << 20).await;
        assert_eq!(b.in_use(), 10 * 1024);
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.take(1).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(huge);
        waiting.await.unwrap();
        assert!(default_bytes() >= 16 << 20);
    }
}
