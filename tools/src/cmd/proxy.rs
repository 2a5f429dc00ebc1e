//! `ringgate proxy`: a whole reverse proxy from one line, every request on one listener to a
//! round-robin set of endpoints.

use super::{load_profile, run::run_until_stopped, CmdResult};
use ringgate::config::{ListenerConfig, PathConfig, RawConfig, RouteConfig, UpstreamConfig};
use ringgate::control::{ConfigSource, Control};
use ringgate::server::start;
use ringgate::snapshot::{text_hash, Snapshot};
use std::net::SocketAddr;

/// Serves the config [`proxy_config`] builds until stopped.
pub fn proxy(listen: SocketAddr, to: Vec<String>, profile: Option<&str>) -> CmdResult {
    let profile = load_profile(profile)?;
    let raw = proxy_config(listen, to);
    let text = toml::to_string(&raw)?;
    let snapshot = Snapshot::build(&raw, text_hash(&text))?;
    let gw = start(snapshot, &profile)?;
    println!("{}", gw.start_line);
    let control = Control::new(
        ConfigSource::Inline {
            label: "ringgate proxy".into(),
            text,
        },
        raw,
        &gw,
    );
    run_until_stopped(gw, control, None, None, false)
}

/// The config `ringgate proxy` stands for: one listener, one upstream, one catch-all route.
fn proxy_config(listen: SocketAddr, to: Vec<String>) -> RawConfig {
    RawConfig {
        version: Some("proxy".into()),
        listeners: vec![ListenerConfig {
            name: Some("proxy".into()),
            ..ListenerConfig::at(listen.to_string())
        }],
        upstreams: vec![UpstreamConfig {
            name: "to".into(),
            endpoints: to,
            ..UpstreamConfig::default()
        }],
        routes: vec![RouteConfig {
            id: "all".into(),
            path: PathConfig {
                prefix: Some("/".into()),
                ..PathConfig::default()
            },
            upstream: "to".into(),
            ..RouteConfig::default()
        }],
        ..RawConfig::default()
    }
}
