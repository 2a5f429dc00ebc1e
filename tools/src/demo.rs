//! `ringgate demo`: the bundled example config served against two built-in demo upstreams.
//!
//! The upstreams are the stub servers of `ringgate-stubs` (ringbench's, without the load harness)
//! started in-process on loopback (ephemeral ports, so the demo never collides with a real
//! service); the example config's endpoints are pointed at them before the snapshot is built. No Redis, no files to prepare: one command shows the gateway
//! routing, rewriting, balancing and streaming.

use crate::config::{ConfigError, RawConfig};
use crate::server::{start, RunningGateway, ServeError};
use crate::snapshot::{text_hash, Snapshot};
use ringgate_core::profile::PerfProfile;
use ringgate_stubs::{spawn, UpstreamConfig, UpstreamHandle};
use std::net::SocketAddr;

/// The bundled example config.
pub const EXAMPLE_CONFIG: &str = include_str!("../../examples/ringgate.toml");

/// A running demo.
pub struct Demo {
    /// The gateway.
    pub gateway: RunningGateway,
    /// The two demo upstreams (kept alive with the demo).
    pub upstreams: Vec<UpstreamHandle>,
    /// `curl` command lines to try, each answering 2xx.
    pub try_lines: Vec<String>,
    /// The config the demo runs (the example, pointed at the demo upstreams).
    pub config: RawConfig,
    /// Its text.
    pub config_text: String,
}

/// Starts the demo upstreams and the gateway listening on `listen`.
pub fn start_demo(profile: &PerfProfile, listen: SocketAddr) -> Result<Demo, ServeError> {
    let mut raw = RawConfig::parse(EXAMPLE_CONFIG)?;
    let mut upstreams = Vec::new();
    for name in ["demo-a", "demo-b"] {
        let h = spawn(UpstreamConfig {
            name: name.into(),
            body_bytes: 64,
            ..UpstreamConfig::default()
        })
        .map_err(ServeError::DemoUpstream)?;
        upstreams.push(h);
    }
    let a = upstreams[0].addrs()[0].to_string();
    let b = upstreams[1].addrs()[0].to_string();
    for u in &mut raw.upstreams {
        u.endpoints = if u.endpoints.len() > 1 {
            vec![a.clone(), b.clone()]
        } else {
            vec![a.clone()]
        };
    }
    raw.listeners.truncate(1);
    if let Some(l) = raw.listeners.first_mut() {
        l.address = listen.to_string();
    }
    let config_text = toml::to_string(&raw).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let snapshot = Snapshot::build(&raw, text_hash(&config_text))?;
    let gateway = start(snapshot, profile)?;
    let at = gateway.addrs[0];
    let try_lines = vec![
        format!("curl -i http://{at}/users/42"),
        format!("curl -i http://{at}/catalog/items?page=2"),
        format!("curl -i -H 'x-beta: 1' http://{at}/catalog/items"),
        format!("curl -i -H 'Host: acme.example.com' http://{at}/api/echo/v1/things"),
        format!("curl -i -X POST --data-binary @/etc/hostname http://{at}/catalog/upload"),
        format!("curl -iN 'http://{at}/stream/chunked?n=5&size=10'"),
        format!("curl -i http://{at}/healthz"),
    ];
    Ok(Demo {
        gateway,
        upstreams,
        try_lines,
        config: raw,
        config_text,
    })
}
