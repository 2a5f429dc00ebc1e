//! Waiting on a condition with a deadline: tests never sleep a fixed time for something to
//! happen, they poll what shows it happened and fail with a message when it never does.

use std::time::{Duration, Instant};

/// Polls `ok` (every 5 ms) until it holds; panics when `within` passes first.
pub fn until(within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `ok` (every 20 ms) until it holds; panics naming `what` when `within` passes first.
pub fn until_named(what: &str, within: Duration, ok: impl FnMut() -> bool) {
    until_every(what, within, Duration::from_millis(20), ok);
}

/// Polls `ok` every `every` (for a check that costs requests) until it holds; panics naming
/// `what` when `within` passes first.
pub fn until_every(what: &str, within: Duration, every: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < within, "timed out: {what}");
        std::thread::sleep(every);
    }
}
