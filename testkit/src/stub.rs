//! The stub upstream (`ringgate-stubs`, also ringbench's), as tests use it.

use ringgate_stubs::{spawn, UpstreamConfig, UpstreamHandle};

/// A stub upstream on an ephemeral loopback port named `name` (its `x-upstream` header).
pub fn stub(name: &str) -> UpstreamHandle {
    stub_with(UpstreamConfig {
        name: name.into(),
        ..UpstreamConfig::default()
    })
}

/// A stub upstream with a custom config.
pub fn stub_with(cfg: UpstreamConfig) -> UpstreamHandle {
    spawn(cfg).expect("stub upstream starts")
}

/// A stub upstream named `name` that answers every request after `ms` milliseconds (for
/// requests that must still be in flight while the test does something else).
pub fn slow_stub(name: &str, ms: u64) -> UpstreamHandle {
    stub_with(UpstreamConfig {
        name: name.into(),
        latency: ringgate_stubs::LatencyDist::Fixed(std::time::Duration::from_millis(ms)),
        ..UpstreamConfig::default()
    })
}
