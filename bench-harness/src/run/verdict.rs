//! The self-check: may this run's figures be published? A generator that fell behind its own
//! schedule, held requests back waiting for one of its own connections (queue wait), sent them
//! late (send lag), or whose cores were saturated, measured itself and not the target
//! (`generator-limited`); a target that did not answer what was offered inside the measured
//! window (too few in-window completions, too many timeouts, unfinished requests or transport
//! errors) was past its capacity (`target-saturated`). Either verdict marks the run invalid in
//! every output and makes the process exit non-zero (3 and 4; 0 only for a valid run).
//!
//! Completions are judged inside the window: a target that takes 10% more than it can carry
//! builds a backlog that a grace period may drain, so "every request eventually answered" would
//! pass it; "answered before the window closed" does not.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The outcome of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The generator kept its schedule and the target kept up.
    Valid,
    /// The generator fell behind: the figures describe the generator.
    GeneratorLimited,
    /// The target did not keep up with the offered load.
    TargetSaturated,
}

impl Verdict {
    /// Process exit code for this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::GeneratorLimited => 3,
            Verdict::TargetSaturated => 4,
        }
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::GeneratorLimited => "generator-limited",
            Verdict::TargetSaturated => "target-saturated",
        }
    }
}

/// Self-check limits.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Thresholds {
    /// Schedule lag (due to noticed) p99 above this: generator-limited.
    #[serde(with = "crate::units::serde_duration")]
    pub max_lag_p99: Duration,
    /// Queue wait (noticed to sent, waiting for a connection of ringbench's own) p99 above this:
    /// generator-limited.
    #[serde(with = "crate::units::serde_duration")]
    pub max_queue_wait_p99: Duration,
    /// Send lag (intended to sent) p99 above this: generator-limited.
    #[serde(with = "crate::units::serde_duration")]
    pub max_send_lag_p99: Duration,
    /// Completions inside the window below this share of scheduled: target-saturated.
    pub min_in_window: f64,
    /// A generator thread busier than this share of its window: generator-limited.
    pub max_generator_cpu: f64,
    /// A generator core busier than this (all processes): generator-limited.
    pub max_core_busy: f64,
    /// Timeouts + censored above this share of scheduled: target-saturated.
    pub max_unfinished: f64,
    /// Transport errors (refused, reset, closed, malformed) above this share: target-saturated
    /// (raise it to measure injected resets on purpose).
    pub max_errors: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_lag_p99: Duration::from_millis(1),
            max_queue_wait_p99: Duration::from_millis(1),
            max_send_lag_p99: Duration::from_millis(1),
            min_in_window: 0.995,
            max_generator_cpu: 0.90,
            max_core_busy: 0.98,
            max_unfinished: 0.001,
            max_errors: 0.001,
        }
    }
}

/// The facts a verdict is drawn from.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Schedule lag p99 (ns).
    pub lag_p99_ns: u64,
    /// Queue wait p99 (ns).
    pub queue_wait_p99_ns: u64,
    /// Send lag p99 (ns).
    pub send_lag_p99_ns: u64,
    /// Connections the generator may open (all threads), for the queue-wait hint.
    pub max_conns: usize,
    /// Longest generator wake-up delay seen by the hiccup meter (ns).
    pub hiccup_max_ns: u64,
    /// Busiest generator thread's CPU share of the window.
    pub generator_cpu: f64,
    /// Busy share of the generator's cores (all processes), when pinned.
    pub core_busy: Vec<(usize, f64)>,
    /// Requests due in the window.
    pub scheduled: u64,
    /// Responses completed inside the window (any request, warmup ones included).
    pub in_window: u64,
    /// Timed out.
    pub timeouts: u64,
    /// Unfinished at the end.
    pub censored: u64,
    /// Transport errors.
    pub errors: u64,
}

/// Draws the verdict and the reasons behind it.
pub fn judge(e: &Evidence, t: &Thresholds) -> (Verdict, Vec<String>) {
    let mut gen = Vec::new();
    if e.lag_p99_ns > t.max_lag_p99.as_nanos() as u64 {
        let hint = if e.hiccup_max_ns > t.max_lag_p99.as_nanos() as u64 {
            format!(
                " (its core stalled for up to {} between wake-ups: other load on the machine or the host)",
                crate::units::fmt_nanos(e.hiccup_max_ns as f64)
            )
        } else {
            String::new()
        };
        gen.push(format!(
            "schedule lag p99 {} exceeds {}{hint}",
            crate::units::fmt_nanos(e.lag_p99_ns as f64),
            crate::units::fmt_duration(t.max_lag_p99)
        ));
    }
    if e.queue_wait_p99_ns > t.max_queue_wait_p99.as_nanos() as u64 {
        gen.push(format!(
            "queue wait p99 {} exceeds {} (requests waited for one of ringbench's {} connections: \
             raise --max-conns)",
            crate::units::fmt_nanos(e.queue_wait_p99_ns as f64),
            crate::units::fmt_duration(t.max_queue_wait_p99),
            e.max_conns
        ));
    }
    if e.send_lag_p99_ns > t.max_send_lag_p99.as_nanos() as u64 {
        gen.push(format!(
            "send lag p99 {} exceeds {}",
            crate::units::fmt_nanos(e.send_lag_p99_ns as f64),
            crate::units::fmt_duration(t.max_send_lag_p99)
        ));
    }
    if e.generator_cpu > t.max_generator_cpu {
        gen.push(format!(
            "a generator thread used {:.0}% of its core (limit {:.0}%)",
            e.generator_cpu * 100.0,
            t.max_generator_cpu * 100.0
        ));
    }
    for (cpu, busy) in &e.core_busy {
        if *busy > t.max_core_busy {
            gen.push(format!("generator CPU {cpu} was {:.0}% busy", busy * 100.0));
        }
    }
    let mut tgt = Vec::new();
    if e.scheduled == 0 {
        tgt.push("no request was scheduled in the measured window".to_string());
    } else {
        let in_window = e.in_window as f64 / e.scheduled as f64;
        if in_window < t.min_in_window {
            tgt.push(format!(
                "completions inside the window were {:.2}% of those scheduled (need {:.2}%): \
                 the target fell behind the offered rate",
                in_window * 100.0,
                t.min_in_window * 100.0
            ));
        }
        let unfinished = (e.timeouts + e.censored) as f64 / e.scheduled as f64;
        if unfinished > t.max_unfinished {
            tgt.push(format!(
                "{:.2}% of requests timed out or never finished (limit {:.2}%)",
                unfinished * 100.0,
                t.max_unfinished * 100.0
            ));
        }
        let errors = e.errors as f64 / e.scheduled as f64;
        if errors > t.max_errors {
            tgt.push(format!(
                "{:.2}% of requests failed below HTTP (limit {:.2}%)",
                errors * 100.0,
                t.max_errors * 100.0
            ));
        }
    }
    // A late generator makes every other figure suspect, so it names the verdict; the target's
    // problems are still listed.
    let verdict = if !gen.is_empty() {
        Verdict::GeneratorLimited
    } else if !tgt.is_empty() {
        Verdict::TargetSaturated
    } else {
        Verdict::Valid
    };
    gen.extend(tgt);
    (verdict, gen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_generator_is_reported_before_a_slow_target() {
        let e = Evidence {
            lag_p99_ns: 5_000_000,
            scheduled: 100,
            in_window: 100,
            timeouts: 50,
            ..Default::default()
        };
        let (v, reasons) = judge(&e, &Thresholds::default());
        assert_eq!(v, Verdict::GeneratorLimited);
        assert!(reasons[0].contains("schedule lag"));
        assert!(reasons[1].contains("timed out"), "{reasons:?}");
    }

    #[test]
    fn unfinished_requests_mean_a_saturated_target() {
        let e = Evidence {
            scheduled: 1000,
            in_window: 1000,
            censored: 30,
            ..Default::default()
        };
        assert_eq!(
            judge(&e, &Thresholds::default()).0,
            Verdict::TargetSaturated
        );
        let refused = Evidence {
            scheduled: 1000,
            in_window: 1000,
            errors: 1000,
            ..Default::default()
        };
        assert_eq!(
            judge(&refused, &Thresholds::default()).0,
            Verdict::TargetSaturated
        );
        let ok = Evidence {
            scheduled: 1000,
            in_window: 1000,
            ..Default::default()
        };
        assert_eq!(judge(&ok, &Thresholds::default()), (Verdict::Valid, vec![]));
        assert_ne!(Verdict::TargetSaturated.exit_code(), 0);
    }

    #[test]
    fn queue_wait_send_lag_and_late_completions_each_invalidate() {
        let ok = Evidence {
            scheduled: 1000,
            in_window: 996,
            queue_wait_p99_ns: 900_000,
            send_lag_p99_ns: 900_000,
            ..Default::default()
        };
        let t = Thresholds::default();
        assert_eq!(judge(&ok, &t).0, Verdict::Valid);
        let queued = Evidence {
            queue_wait_p99_ns: 655_000_000,
            ..ok.clone()
        };
        let (v, why) = judge(&queued, &t);
        assert_eq!(v, Verdict::GeneratorLimited);
        assert!(why[0].contains("queue wait"), "{why:?}");
        let late = Evidence {
            send_lag_p99_ns: 2_000_000,
            ..ok.clone()
        };
        assert_eq!(judge(&late, &t).0, Verdict::GeneratorLimited);
        let behind = Evidence {
            in_window: 909,
            ..ok.clone()
        };
        let (v, why) = judge(&behind, &t);
        assert_eq!(v, Verdict::TargetSaturated);
        assert!(why[0].contains("inside the window"), "{why:?}");
        let relaxed = Thresholds {
            max_queue_wait_p99: Duration::from_secs(1),
            ..t
        };
        assert_eq!(judge(&queued, &relaxed).0, Verdict::Valid);
    }
}
