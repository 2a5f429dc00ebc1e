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
