//! Metrics for the operator rather than for the data path: build info, the process (CPU,
//! memory, file descriptors, threads, start time, the `process_*` names every Prometheus
//! dashboard knows), readiness, and which partitions detection is working on.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// At most this many `quarantine_partition_state` series: each is a partition under
/// suspicion or isolation, normally a handful; a broken deploy can put every partition of
/// a group there, and the metric must not grow with the cluster.
pub const MAX_PARTITION_SERIES: usize = 100;

/// Labels of `quarantine_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// `quarantine_build_info{version, commit} 1`.
#[derive(Debug, Default)]
pub struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            commit: option_env!("QUARANTINE_GIT_COMMIT").unwrap_or("unknown"),
        };
        let gauge = ConstGauge::new(1i64);
        let mut metric = encoder.encode_descriptor(
            "build_info",
            "The running build: version and, when built by scripts/build-image.sh, the git commit",
            None,
            MetricType::Gauge,
        )?;
        gauge.encode(metric.encode_family(&labels)?)
    }
}

/// Labels of `quarantine_partition_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet, PartialOrd, Ord)]
pub struct PartitionStateLabels {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition, as text.
    pub partition: String,
    /// `suspect`, `isolating` or `diverting`.
    pub phase: &'static str,
}

/// The partitions detection is working on, refreshed by the watch's tick and rendered as
/// `quarantine_partition_state{group,topic,partition,phase} 1` (at most
/// [`MAX_PARTITION_SERIES`], the rest counted in `quarantine_partition_state_omitted`).
#[derive(Debug, Clone, Default)]
pub struct PartitionStates {
    inner: Arc<Mutex<(Vec<PartitionStateLabels>, usize)>>,
}

impl PartitionStates {
    /// Replaces the set: keeps the first [`MAX_PARTITION_SERIES`] in label order.
    pub fn set(&self, mut states: Vec<PartitionStateLabels>) {
        states.sort();
        let omitted = states.len().saturating_sub(MAX_PARTITION_SERIES);
        states.truncate(MAX_PARTITION_SERIES);
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = (states, omitted);
    }
}

impl Collector for PartitionStates {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (states, omitted) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        {
            let mut metric = encoder.encode_descriptor(
                "partition_state",
                "1 for each partition detection is working on (suspect, isolating or diverting), by group, topic, partition and phase; at most 100 series",
                None,
                MetricType::Gauge,
            )?;
            for labels in &states {
                ConstGauge::new(1i64).encode(metric.encode_family(labels)?)?;
            }
        }
        let metric = encoder.encode_descriptor(
            "partition_state_omitted",
            "Partitions in a detection phase left out of quarantine_partition_state by its series limit",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(omitted as i64).encode(metric)
    }
}

/// What `/proc/self` says about this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessSample {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: i64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: i64,
    /// Threads.
    pub threads: i64,
    /// Process start, seconds since the epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: i64,
    /// The soft limit on file descriptors.
    pub max_fds: i64,
}

/// Parses `/proc/self/stat` (fields after the command name, which may hold spaces and
/// parentheses), given the clock tick rate, page size and boot time (from `/proc/stat`).
pub fn parse_stat(
    stat: &str,
    ticks_per_second: f64,
    page_size: i64,
    boot_time: f64,
) -> Option<ProcessSample> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
    Some(ProcessSample {
        cpu_seconds: (num(14)? + num(15)?) / ticks_per_second,
        threads: num(20)? as i64,
        start_time_seconds: boot_time + num(22)? / ticks_per_second,
        virtual_bytes: num(23)? as i64,
        resident_bytes: num(24)? as i64 * page_size,
        ..ProcessSample::default()
    })
}

/// A `Name:   1234 kB` line of `/proc/self/status`, in bytes.
pub fn parse_status_kb(status: &str, name: &str) -> Option<i64> {
    let line = status
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(':')))?;
    let kb: i64 = line[name.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The soft `Max open files` limit from `/proc/self/limits`.
pub fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` from `/proc/stat`.
pub fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn sample() -> Option<ProcessSample> {
    // Linux reports CPU time in ticks of 1/100 s (USER_HZ) on every platform this runs
    // on; reading sysconf would need unsafe code, which the crate forbids. Memory comes
    // from /proc/self/status in kB, so the page size does not matter.
    let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let mut s = parse_stat(
        &std::fs::read_to_string("/proc/self/stat").ok()?,
        100.0,
        4096,
        boot,
    )?;
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        s.resident_bytes = parse_status_kb(&status, "VmRSS").unwrap_or(s.resident_bytes);
        s.virtual_bytes = parse_status_kb(&status, "VmSize").unwrap_or(s.virtual_bytes);
    }
    s.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    s.max_fds = parse_max_fds(&std::fs::read_to_string("/proc/self/limits").ok()?).unwrap_or(-1);
    Some(s)
}

/// The standard `process_*` metrics, read at each scrape (Linux; nothing elsewhere).
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds as f64,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                s.threads as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_a_hostile_command_name() {
        let stat = "4242 (quar (an) tine) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096, 1_700_000_000.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.resident_bytes, 2560 * 4096);
        assert_eq!(s.start_time_seconds, 1_700_000_123.45);
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let status = "Name:\tquarantine\nVmSize:\t  102400 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(status, "VmSize"), Some(102400 * 1024));
        assert_eq!(parse_status_kb(status, "Vm"), None);
    }

    #[test]
    fn reads_this_process() {
        let s = sample().expect("/proc/self is readable on Linux");
        assert!(
            s.threads >= 1 && s.resident_bytes > 0 && s.open_fds > 0,
            "{s:?}"
        );
    }

    #[test]
    fn partition_states_are_capped() {
        let p = PartitionStates::default();
        let many = (0..150)
            .map(|i| PartitionStateLabels {
                group: "g".into(),
                topic: "t".into(),
                partition: i.to_string(),
                phase: "isolating",
            })
            .collect();
        p.set(many);
        let (states, omitted) = p.inner.lock().unwrap().clone();
        assert_eq!((states.len(), omitted), (MAX_PARTITION_SERIES, 50));
    }
}
