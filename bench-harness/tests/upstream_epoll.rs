//! The stub upstream on monoio's epoll driver (`MONOIO_FORCE_LEGACY_DRIVER=1`), as on kernels
//! without io_uring. Its own test binary: monoio reads the variable once per process.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Client;
use ringbench::runtime::Driver;
use ringbench::upstream::{self, UpstreamConfig};

#[test]
fn epoll_driver_serves_delays_streams_and_stops() {
    std::env::set_var("MONOIO_FORCE_LEGACY_DRIVER", "1");
    let up = upstream::spawn(UpstreamConfig {
        workers: 2,
        latency: "fixed:2ms".parse().unwrap(),
        body_bytes: 10,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(up.drivers(), &[Driver::Epoll, Driver::Epoll]);
    let mut c = Client::connect(up.addr());
    let t0 = Instant::now();
    assert_eq!(c.get("/").body.len(), 10);
    assert!(t0.elapsed() >= Duration::from_millis(2));
    assert_eq!(c.get("/chunked?n=3&size=5").body.len(), 15);
    assert_eq!(
        c.get("/sse?n=2&interval_ms=1")
            .text()
            .matches("data:")
            .count(),
        2
    );
    up.stop();
    assert!(c.closed());
}
