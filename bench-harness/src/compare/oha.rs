//! For the record beside our own figures: oha (a popular Rust load tool) with
//! `--latency-correction`, run at the same rate against the same `direct` target, pinned to the
//! same generator CPUs. Only its JSON summary's p50/p99 and rate are kept.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::procs::which;
use crate::units::fmt_nanos;

/// Runs oha and returns a one-line summary (or why it could not run).
pub fn run_oha(
    addr: SocketAddr,
    path: &str,
    rate: f64,
    duration: Duration,
    conns: usize,
    cpus: Option<&[usize]>,
) -> String {
    let Some(bin) = which("oha").or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = std::path::Path::new(&home).join(".cargo/bin/oha");
        p.is_file().then_some(p)
    }) else {
        return "oha not installed".into();
    };
    let mut cmd = match cpus {
        Some(c) if !c.is_empty() => {
            let list: Vec<String> = c.iter().map(|x| x.to_string()).collect();
            let mut t = Command::new("taskset");
            t.arg("-c").arg(list.join(",")).arg(&bin);
            t
        }
        _ => Command::new(&bin),
    };
    cmd.arg("-z")
        .arg(format!("{}s", duration.as_secs().max(1)))
        .arg("-q")
        .arg(format!("{rate:.0}"))
        .arg("-c")
        .arg(conns.max(1).to_string())
        .arg("--latency-correction")
        .arg("--no-tui")
        .arg("--output-format")
        .arg("json")
        .arg(format!("http://{addr}{path}"));
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return format!("oha failed to start: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return format!(
            "oha output not understood: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    };
    let secs = |k: &str| {
        v["latencyPercentiles"][k]
            .as_f64()
            .map(|s| fmt_nanos(s * 1e9))
    };
    format!(
        "oha --latency-correction -q {rate:.0} -c {conns}: p50 {} p99 {} rate {:.0}/s",
        secs("p50").unwrap_or_else(|| "?".into()),
        secs("p99").unwrap_or_else(|| "?".into()),
        v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0)
    )
}
