//! The host's own stalls, measured beside a run: this VM sometimes stops a thread for
//! milliseconds, which can decide a p99 on its own. A thread sleeps 1 ms in a loop and records
//! how late each wake-up is; a step whose window holds a long late wake-up is flagged, so the
//! report can say when the host, not the gateway, may have decided a percentile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The meter's nap.
const NAP: Duration = Duration::from_millis(1);

/// One late wake-up over the recording floor.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    /// When the wake-up was due, from the meter's start.
    pub at: Duration,
    /// How late it came.
    pub late: Duration,
}

/// What the meter saw in a window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StallSummary {
    /// Wake-ups in the window.
    pub wakes: u64,
    /// Late wake-ups at or over the floor.
    pub stalls: u64,
    /// Longest lateness (ns).
    pub max_ns: u64,
    /// Total lateness over the floor (ns).
    pub total_ns: u64,
}

/// A running stall meter; [`StallMeter::finish`] stops it and returns what it saw.
pub struct StallMeter {
    start: Instant,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(Vec<Stall>, Vec<Duration>)>>,
}

/// Everything recorded: every stall at or over the floor and the times of all wake-ups counted
/// per 100 ms bucket (to count wakes in any window).
pub struct StallLog {
    /// The meter's start.
    pub start: Instant,
    /// Stalls at or over the floor.
    pub stalls: Vec<Stall>,
    buckets: Vec<Duration>,
}

impl StallMeter {
    /// Starts the meter: wake-ups later than `floor` are recorded one by one.
    pub fn start(floor: Duration) -> std::io::Result<Self> {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("ringbench-stalls".into())
            .spawn(move || meter(start, floor, &flag))?;
        Ok(Self {
            start,
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the meter.
    pub fn finish(mut self) -> StallLog {
        self.stop.store(true, Ordering::Relaxed);
        let (stalls, buckets) = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        StallLog {
            start: self.start,
            stalls,
            buckets,
        }
    }
}

impl Drop for StallMeter {
    /// A meter dropped unfinished (a step failed) stops its thread too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn meter(start: Instant, floor: Duration, stop: &AtomicBool) -> (Vec<Stall>, Vec<Duration>) {
    crate::sys::set_timer_slack(Duration::from_nanos(1));
    let mut stalls = Vec::new();
    let mut wakes = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = Instant::now() + NAP;
        std::thread::sleep(NAP);
        let woke = Instant::now();
        let late = woke.saturating_duration_since(due);
        n += 1;
        let at = due.saturating_duration_since(start);
        if n.is_multiple_of(100) {
            wakes.push(at);
        }
        if late >= floor {
            stalls.push(Stall { at, late });
        }
    }
    (stalls, wakes)
}

impl StallLog {
    /// What the meter saw between `from` and `to` (instants of the run).
    pub fn window(&self, from: Instant, to: Instant) -> StallSummary {
        let a = from.saturating_duration_since(self.start);
        let b = to.saturating_duration_since(self.start);
        let inside: Vec<&Stall> = self
            .stalls
            .iter()
            .filter(|s| s.at >= a && s.at < b)
            .collect();
        StallSummary {
            wakes: 100 * self.buckets.iter().filter(|t| **t >= a && **t < b).count() as u64,
            stalls: inside.len() as u64,
            max_ns: inside
                .iter()
                .map(|s| s.late.as_nanos() as u64)
                .max()
                .unwrap_or(0),
            total_ns: inside.iter().map(|s| s.late.as_nanos() as u64).sum(),
        }
    }
}
