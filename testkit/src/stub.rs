//! ringbench's stub upstream, as tests use it.

use ringbench::upstream::{spawn, UpstreamConfig, UpstreamHandle};

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
