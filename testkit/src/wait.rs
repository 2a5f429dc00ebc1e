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
