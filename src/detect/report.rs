//! What the detector tells operators: one [`Report`] per event worth a log line, a
//! metric or an alert, with the sentence an operator reads.

use std::fmt;
use std::time::Duration;

use super::{format_duration, PartitionKey, Phase, Reason};

/// How an isolation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationOutcome {
    /// The commit passed the whole suspect range: the failures were transient.
    Transient,
    /// The whole range was processed without a failure (nor a commit).
    NoFailure,
    /// A window stayed quiet (no commit, no failure) far too long: search abandoned.
    Unresolved,
    /// The poison was written to the dead-letter topic and is now hidden.
    Diverted,
    /// The commit passed the poison record before it was diverted.
    CommitPassedPoison,
    /// The key went idle and was forgotten.
    Evicted,
}

/// Something an operator should hear about: logged, counted, maybe alerted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The partition it concerns.
    pub key: PartitionKey,
    /// What happened.
    pub event: Event,
}

/// The events of [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The commit has not moved for `stall_timeout` although records were delivered.
    StallStarted {
        /// Committed offset, when known.
        committed: Option<i64>,
        /// Highest offset delivered.
        delivered_to: i64,
        /// How long the commit has been still.
        still_for: Duration,
    },
    /// The partition is isolated: records go out one window at a time.
    IsolationStarted {
        /// Offset re-delivered `max_deliveries` times.
        offset: i64,
        /// Highest offset that can be the poison.
        range_end: i64,
        /// Deliveries counted for `offset`.
        deliveries: u32,
        /// How the last re-delivery looked.
        reason: Reason,
    },
    /// A window saw neither commit nor failure while the consumer asked for more: it is
    /// taken as processed and the group gets more records.
    WindowWidened {
        /// The window end before.
        previous_end: i64,
        /// The window end now.
        window_end: i64,
        /// How long the window was quiet.
        quiet_for: Duration,
    },
    /// A record is confirmed poison and handed to the proxy for diversion.
    PoisonFound {
        /// Offset of the record.
        offset: i64,
        /// Failed deliveries.
        deliveries: u32,
        /// How the consumer failed.
        reason: Reason,
    },
    /// The dead-letter write of a poison record failed; it stays visible.
    DivertFailed {
        /// Offset of the record.
        offset: i64,
    },
    /// Isolation ended.
    IsolationEnded {
        /// How.
        outcome: IsolationOutcome,
    },
    /// The key was forgotten after being idle.
    Evicted {
        /// Its phase when forgotten.
        phase: Phase,
    },
    /// The key limit is reached: this new key is not tracked.
    KeyLimitReached,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StallStarted {
                committed,
                delivered_to,
                still_for,
            } => match committed {
                Some(c) => write!(
                    f,
                    "commit stalled at {c} for {} with records delivered up to {delivered_to}",
                    format_duration(*still_for)
                ),
                None => write!(
                    f,
                    "no commit for {} with records delivered up to {delivered_to}",
                    format_duration(*still_for)
                ),
            },
            Event::IsolationStarted {
                offset,
                range_end,
                deliveries,
                reason,
            } => write!(
                f,
                "offset {offset} delivered {deliveries} times ({reason}): isolating offsets \
                 {offset}..={range_end} to find the record the group cannot process"
            ),
            Event::WindowWidened {
                previous_end,
                window_end,
                quiet_for,
            } => write!(
                f,
                "no commit and no failure for {} after delivering up to {previous_end}: \
                 taking it as processed, delivering up to {window_end}",
                format_duration(*quiet_for)
            ),
            Event::PoisonFound {
                offset,
                deliveries,
                reason,
            } => write!(
                f,
                "offset {offset} is poison ({reason}, {deliveries} failed deliveries): \
                 diverting it to the dead-letter topic"
            ),
            Event::DivertFailed { offset } => write!(
                f,
                "dead-letter write of offset {offset} failed: it stays visible and will be retried"
            ),
            Event::IsolationEnded { outcome } => {
                let what = match outcome {
                    IsolationOutcome::Transient => {
                        "the commit passed the suspect range: the failures were transient"
                    }
                    IsolationOutcome::NoFailure => {
                        "the suspect range was delivered without a failure"
                    }
                    IsolationOutcome::Unresolved => {
                        "the group neither committed nor failed for too long: search abandoned"
                    }
                    IsolationOutcome::Diverted => "the poison record is diverted and hidden",
                    IsolationOutcome::CommitPassedPoison => {
                        "the group committed past the poison record itself"
                    }
                    IsolationOutcome::Evicted => "the partition went idle",
                };
                write!(f, "isolation ended: {what}")
            }
            Event::Evicted { phase } => write!(f, "forgotten after being idle (was {phase:?})"),
            Event::KeyLimitReached => f.write_str("key limit reached: partition not tracked"),
        }
    }
}

/// Where reports of one key go.
pub(crate) struct Sink<'a> {
    key: &'a PartitionKey,
    reports: &'a mut Vec<Report>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(key: &'a PartitionKey, reports: &'a mut Vec<Report>) -> Self {
        Sink { key, reports }
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.reports.push(Report {
            key: self.key.clone(),
            event,
        });
    }
}
