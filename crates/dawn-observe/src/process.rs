//! Process metrics in the standard Prometheus names (`process_*`), read from
//! `/proc/self` at each scrape.
//!
//! They are written directly as exposition text rather than through the
//! `metrics` facade so that `process_cpu_seconds_total` keeps its fractional
//! seconds (facade counters are integers). On systems other than Linux the
//! block is empty.

/// Standard process metric names written by [`render`] on Linux.
pub const PROCESS_METRICS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_threads",
];

/// A snapshot of the process's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Process start, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// OS threads.
    pub threads: u64,
}

/// Reads the current process statistics; `None` where unsupported or when
/// `/proc` cannot be read.
pub fn read_stats() -> Option<ProcessStats> {
    imp::read_stats()
}

/// The process metrics as Prometheus text, empty where unsupported.
pub fn render() -> String {
    let Some(s) = read_stats() else {
        return String::new();
    };
    let mut out = String::with_capacity(1024);
    let mut family = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        format_f64(s.cpu_seconds),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        s.resident_memory_bytes.to_string(),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        s.virtual_memory_bytes.to_string(),
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        s.open_fds.to_string(),
    );
    if let Some(max) = s.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max.to_string(),
        );
    }
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        format_f64(s.start_time_seconds),
    );
    family(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        s.threads.to_string(),
    );
    out
}

fn format_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".into()
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::ProcessStats;

    pub(super) fn read_stats() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may contain spaces;
        // fields after the last ')' start at field 3 (state).
        let after = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
        let ticks = rustix::param::clock_ticks_per_second().max(1);
        #[allow(clippy::cast_precision_loss)]
        let ticks_f = ticks as f64;
        let utime = field(14)?;
        let stime = field(15)?;
        let threads = field(20)?;
        let start_ticks = field(22)?;
        let vsize = field(23)?;
        let rss_pages = field(24)?;
        let page = u64::try_from(rustix::param::page_size()).unwrap_or(4096);
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        #[allow(clippy::cast_precision_loss)]
        Some(ProcessStats {
            cpu_seconds: (utime + stime) as f64 / ticks_f,
            resident_memory_bytes: rss_pages.saturating_mul(page),
            virtual_memory_bytes: vsize,
            open_fds,
            max_fds: limit.current,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / ticks_f,
            threads,
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::ProcessStats;

    pub(super) fn read_stats() -> Option<ProcessStats> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = read_stats().unwrap();
        assert!(s.resident_memory_bytes > 0);
        assert!(s.virtual_memory_bytes >= s.resident_memory_bytes);
        assert!(s.open_fds >= 3, "stdin, stdout, stderr at least");
        assert!(s.threads >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0);
        assert!(s.start_time_seconds > now - 86_400.0 * 365.0);
        let text = render();
        for name in PROCESS_METRICS {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} in {text}"
            );
        }
    }
}
