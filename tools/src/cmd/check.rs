//! `ringgate check`: validate a config (and a profile), print a summary, exit non-zero listing
//! every problem.

use super::{load_profile, CmdResult};
use std::process::ExitCode;

/// Checks `profile` as `serve` would before starting a worker and `config` fully, printing a
/// summary of each, or every problem found.
pub fn check(config: &str, profile: Option<&str>) -> CmdResult {
    let mut failed = false;
    // The same checks `serve` makes before it starts a worker, not only the file's own rules.
    match load_profile(profile).and_then(|p| {
        let pre = ringgate_core::worker::preflight(&p)?;
        Ok((p, pre))
    }) {
        Ok((p, pre)) => println!(
            "profile ok: driver={}{} workers={} cpus=[{}] pin={} uring_entries={} sqpoll={}",
            pre.driver.as_str(),
            pre.fallback_reason
                .map_or(String::new(), |why| format!(" (epoll fallback: {why})")),
            pre.cpus.len(),
            if p.workers.cpus.is_empty() {
                "*".to_string()
            } else {
                p.workers
                    .cpus
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            },
            p.workers.pin,
            p.io.uring_entries,
            p.io.sqpoll
        ),
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    match ringgate::load_snapshot(config) {
        Ok(s) => {
            let endpoints: usize = s.upstreams.iter().map(|u| u.endpoints.len()).sum();
            println!(
                "config ok: version={} listeners={} upstreams={} endpoints={} routes={} rate_limits={} rate_limit_store={}",
                s.version,
                s.listeners.len(),
                s.upstreams.len(),
                endpoints,
                s.table.len(),
                s.limits.limits.len(),
                if s.process.rate_limit.redis.is_some() {
                    "redis"
                } else if !s.process.rate_limit.cluster.is_empty() {
                    "redis-cluster"
                } else {
                    "local"
                }
            );
        }
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
