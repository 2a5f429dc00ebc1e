//! Starting and stopping many stub upstreams leaks neither threads nor file descriptors (its own
//! test binary, so no other test opens fds meanwhile).
#![allow(clippy::unwrap_used)]

mod common;

use common::Client;
use ringbench::upstream::{self, UpstreamConfig};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn repeated_spawn_and_stop_leaks_no_descriptors() {
    let cycle = || {
        let up = upstream::spawn(UpstreamConfig {
            workers: 2,
            latency: "fixed:1ms".parse().unwrap(),
            ..Default::default()
        })
        .unwrap();
        let mut idle = Client::connect(up.addr());
        assert_eq!(idle.get("/").status, 200);
        let mut busy = Client::connect(up.addr());
        busy.send(b"GET /sse?n=1000&interval_ms=5 HTTP/1.1\r\n\r\n");
        up.stop();
        assert!(idle.closed());
    };
    cycle();
    let before = open_fds();
    for _ in 0..20 {
        cycle();
    }
    assert!(open_fds() <= before + 2, "{} -> {}", before, open_fds());
}
