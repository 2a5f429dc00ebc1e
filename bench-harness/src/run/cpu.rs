//! CPU accounting from /proc: the target's processes (utime + stime of all their threads, the
//! figure our comparisons rest on) and the busy share of the generator's own cores (another
//! process on them makes the generator late, and the verdict must say so).

use std::io;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sys;

/// CPU time (user + system, all threads, live and exited) of process `pid`.
pub fn process_cpu(pid: u32) -> io::Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text)
        .map(|ticks| Duration::from_nanos(ticks * 1_000_000_000 / sys::clock_ticks_per_second()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc stat"))
}

/// utime + stime (clock ticks) from a /proc/PID/stat line; the command name may hold spaces
/// and parentheses, so fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Per-CPU (busy, total) jiffies from /proc/stat.
pub fn cpu_jiffies() -> Vec<(u64, u64)> {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let Some(id) = it.next().and_then(|s| s.parse::<usize>().ok()) else {
            continue;
        };
        let v: Vec<u64> = it.filter_map(|s| s.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        if out.len() <= id {
            out.resize(id + 1, (0, 0));
        }
        out[id] = (total - idle, total);
    }
    out
}

/// The busy share of each CPU between two `cpu_jiffies` samples.
pub fn busy_share(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let total = a.1.saturating_sub(b.1);
            if total == 0 {
                0.0
            } else {
                a.0.saturating_sub(b.0) as f64 / total as f64
            }
        })
        .collect()
}

/// A named set of processes whose CPU time is accounted together (`target`, `upstream`, ...).
#[derive(Clone, Debug, Serialize)]
pub struct CpuGroup {
    /// Name in reports.
    pub name: String,
    /// Processes.
    pub pids: Vec<u32>,
    /// Their CPU time over the window (ns); `None` when a process could not be read.
    pub ns: Option<u64>,
}

/// What the accounted processes and the CPUs did over the measured window.
#[derive(Clone, Debug, Serialize)]
pub struct WindowCpu {
    /// One entry per accounted group.
    pub groups: Vec<CpuGroup>,
    /// Busy share of every CPU over the window (all processes).
    pub cpu_busy: Vec<f64>,
    /// Window length (ns).
    pub wall_ns: u64,
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn total_cpu(pids: &[u32]) -> Option<Duration> {
    pids.iter()
        .map(|p| process_cpu(*p).ok())
        .sum::<Option<Duration>>()
}

/// Samples every group and all CPUs at `start` and `end` (blocks until `end`).
pub fn measure_window(groups: &[(String, Vec<u32>)], start: Instant, end: Instant) -> WindowCpu {
    sleep_until(start);
    let t0 = Instant::now();
    let before: Vec<Option<Duration>> = groups.iter().map(|g| total_cpu(&g.1)).collect();
    let j0 = cpu_jiffies();
    sleep_until(end);
    let after: Vec<Option<Duration>> = groups.iter().map(|g| total_cpu(&g.1)).collect();
    let j1 = cpu_jiffies();
    let wall = t0.elapsed();
    WindowCpu {
        groups: groups
            .iter()
            .zip(before.iter().zip(&after))
            .map(|((name, pids), (a, b))| CpuGroup {
                name: name.clone(),
                pids: pids.clone(),
                ns: match (a, b) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(*a).as_nanos() as u64),
                    _ => None,
                },
            })
            .collect(),
        cpu_busy: busy_share(&j0, &j1),
        wall_ns: wall.as_nanos() as u64,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let line = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1";
        assert_eq!(parse_stat(line), Some(325));
    }

    #[test]
    fn own_process_cpu_grows_while_spinning() {
        let pid = std::process::id();
        let a = process_cpu(pid).unwrap();
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(process_cpu(pid).unwrap() > a);
    }

    #[test]
    fn cpu_jiffies_lists_every_cpu() {
        let j = cpu_jiffies();
        assert!(!j.is_empty());
        assert!(j.iter().all(|(busy, total)| busy <= total));
    }
}
