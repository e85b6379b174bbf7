//! The `process_*` metrics every Prometheus exporter has (the client libraries' standard
//! names): CPU seconds, resident and virtual memory, open and maximum file descriptors, start
//! time — read from `/proc/self` at each scrape. A file that cannot be read (not Linux, a
//! restricted `/proc`) leaves its metric out rather than reporting a wrong zero.

use weir_core::prometheus::{Exposition, Kind};

/// Writes the process families; `start_unix_time` is when Weir started (seconds).
pub fn render(e: &mut Exposition, start_unix_time: u64) {
    let none: &[(&str, &str)] = &[];
    if let Some(cpu) = cpu_seconds() {
        e.family(
            "process_cpu_seconds_total",
            Kind::Counter,
            "User and system CPU time spent, in seconds.",
            [(none, cpu)],
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for (field, name, help) in [
        (
            "VmRSS:",
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        ),
        (
            "VmSize:",
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        ),
    ] {
        if let Some(kib) = status_kib(&status, field) {
            e.family(name, Kind::Gauge, help, [(none, kib * 1024.0)]);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle read_dir holds is one of the entries: not counted.
        let open = fds.count().saturating_sub(1);
        e.family(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            [(none, open as f64)],
        );
    }
    if let Some(max) = max_fds() {
        e.family(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors (the soft limit).",
            [(none, max)],
        );
    }
    e.family(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since the Unix epoch, in seconds.",
        [(none, start_unix_time as f64)],
    );
}

/// utime + stime from `/proc/self/stat` (fields 14 and 15, after the parenthesised name, which
/// may itself hold spaces), in clock ticks; Linux reports them in USER_HZ, 100 per second on
/// every architecture it exports to user space.
fn cpu_seconds() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // after_name starts at field 3 (state); utime is field 14.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

fn status_kib(status: &str, field: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let mut e = weir_core::prometheus::Exposition::new();
        super::render(&mut e, 1_700_000_000);
        let text = e.finish();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds 1700000000",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("rss");
        assert!(rss > 1_000_000.0, "{rss}");
    }
}
