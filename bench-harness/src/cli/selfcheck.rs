//! The generator's self-check limits, one set of flags for every command that runs load (`run`,
//! `compare`, `tax`): above them a run is marked generator-limited.

use std::time::Duration;

use clap::Args;

use crate::run::Thresholds;
use crate::units::parse_duration;

/// `--max-lag`, `--max-queue-wait`, `--max-send-lag`.
#[derive(Debug, Clone, Args)]
pub struct SelfCheckArgs {
    /// Self-check: schedule lag p99 above this marks a run generator-limited.
    #[arg(long, value_parser = parse_duration, default_value = "1ms")]
    pub max_lag: Duration,
    /// Self-check: queue wait p99 (a request waiting for one of ringbench's own connections)
    /// above this marks a run generator-limited.
    #[arg(long, value_parser = parse_duration, default_value = "1ms")]
    pub max_queue_wait: Duration,
    /// Self-check: send lag p99 (intended to actual send) above this marks a run
    /// generator-limited.
    #[arg(long, value_parser = parse_duration, default_value = "1ms")]
    pub max_send_lag: Duration,
}

impl SelfCheckArgs {
    /// The thresholds these flags set, the others at their defaults.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_lag_p99: self.max_lag,
            max_queue_wait_p99: self.max_queue_wait,
            max_send_lag_p99: self.max_send_lag,
            ..Thresholds::default()
        }
    }
}
