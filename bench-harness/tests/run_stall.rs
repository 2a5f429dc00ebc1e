//! Acceptance: a 1 s server stall in a 10 s constant-rate run shows in p99 and max, because
//! latency runs from each request's intended send time. The same stall seen by a closed-loop
//! client (send, wait, record, send the next) is one slow sample among thousands: its p99 hides
//! it. Both are asserted.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{accounted, run_config, Client};
use ringbench::run;
use ringbench::upstream::{self, UpstreamConfig};

/// A naive fixed-pace closed-loop client: one connection, the next request only after the last
/// response, missed send slots skipped.
fn closed_loop(addr: std::net::SocketAddr, rate: f64, length: Duration) -> Vec<u64> {
    let mut c = Client::connect(addr);
    let gap = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut next = start;
    let mut samples = Vec::new();
    while start.elapsed() < length {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let t0 = Instant::now();
        assert_eq!(c.get("/").status, 200);
        samples.push(t0.elapsed().as_nanos() as u64);
        next += gap;
        while next < Instant::now() {
            next += gap;
        }
    }
    samples.sort_unstable();
    samples
}

#[test]
fn a_one_second_stall_shows_in_p99_and_max_but_closed_loop_hides_it() {
    let open_up = upstream::spawn(UpstreamConfig::default()).unwrap();
    let closed_up = upstream::spawn(UpstreamConfig::default()).unwrap();
    let closed_addr = closed_up.addr();
    let stall = Duration::from_secs(1);
    let closed = std::thread::spawn(move || {
        let stall_at = Instant::now() + Duration::from_secs(5);
        let stalled = std::thread::spawn(move || {
            std::thread::sleep(stall_at.saturating_duration_since(Instant::now()));
            closed_up.stall(stall);
            closed_up
        });
        let samples = closed_loop(closed_addr, 200.0, Duration::from_secs(10));
        drop(stalled.join().unwrap());
        samples
    });
    let cfg = run_config(
        &format!("http://{}/", open_up.addr()),
        200.0,
        Duration::from_secs(10),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stall_thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5200));
        open_up.stall(stall);
        rx.recv().unwrap();
    });
    let r = accounted(run::run(&cfg).unwrap());
    tx.send(()).unwrap();
    stall_thread.join().unwrap();
    let samples = closed.join().unwrap();

    let ms = 1_000_000u64;
    let p99 = r.latency.response.p99_ns;
    let max = r.latency.response.max_ns;
    println!("open model: p99 {}ms max {}ms", p99 / ms, max / ms);
    assert!(max >= 900 * ms, "max {max}");
    assert!(p99 >= 500 * ms, "p99 {p99}");
    assert_eq!(r.counts.completed, r.counts.scheduled);

    let closed_p99 = samples[(samples.len() as f64 * 0.99) as usize];
    let closed_max = *samples.last().unwrap();
    println!(
        "closed loop: {} samples, p99 {}us max {}ms",
        samples.len(),
        closed_p99 / 1000,
        closed_max / ms
    );
    assert!(closed_max >= 900 * ms, "the closed loop saw the stall once");
    assert!(
        closed_p99 < 100 * ms,
        "closed-loop p99 {closed_p99} hides the stall"
    );
}
