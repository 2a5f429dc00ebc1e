//! A gateway with its control plane (reloads, discovery) and its admin API, in this process,
//! started the way `ringgate serve` starts one: discovery sources first, the first snapshot
//! built with their answers.

use crate::files::TempFile;
use crate::gateway::test_profile;
use ringgate::admin::AdminServer;
use ringgate::config::RawConfig;
use ringgate::contenthash::config_hash;
use ringgate::control::{first_snapshot, ConfigSource, Control};
use ringgate::server::{start, RunningGateway};
use std::net::SocketAddr;
use std::sync::Arc;

/// A running gateway, its control plane and (when the config has `[admin]`) its admin API;
/// stopped on drop.
pub struct Controlled {
    gw: Option<RunningGateway>,
    /// The control plane.
    pub control: Arc<Control>,
    admin: Option<AdminServer>,
    /// The config file (rewrite it and call `control.reload`).
    pub file: TempFile,
}

impl Controlled {
    /// Starts from config text (written to a temp file named `name`).
    pub fn start(name: &str, text: &str) -> Self {
        Self::start_with(name, text, test_profile())
    }

    /// [`Controlled::start`] with a given profile (more workers, say).
    pub fn start_with(
        name: &str,
        text: &str,
        profile: ringgate_core::profile::PerfProfile,
    ) -> Self {
        let file = TempFile::new(name, text);
        let raw = RawConfig::parse(text).expect("test config parses");
        let (hub, snap) = first_snapshot(&raw, config_hash(text, &raw)).expect("valid");
        let gw = start(snap, &profile).expect("gateway starts");
        let control = Control::with_discovery(
            ConfigSource::File(file.path().into()),
            raw.clone(),
            &gw,
            hub,
        );
        let admin = raw.admin.as_ref().map(|a| {
            AdminServer::start(
                a.address.parse().expect("admin address"),
                a.token.clone(),
                control.clone(),
            )
            .expect("admin API starts")
        });
        Controlled {
            gw: Some(gw),
            control,
            admin,
            file,
        }
    }

    /// The first listen address.
    pub fn addr(&self) -> SocketAddr {
        self.gw.as_ref().expect("running until drop").addrs[0]
    }

    /// The admin API's address (the config must have `[admin]`).
    pub fn admin(&self) -> SocketAddr {
        self.admin.as_ref().expect("config has [admin]").addr
    }

    /// The Prometheus text the admin API serves.
    pub fn metrics(&self) -> String {
        ringgate::admin::metrics_text(&self.control)
    }

    /// The value of the first sample line of [`Controlled::metrics`] starting with `line_start`
    /// (labels included); 0 when there is none.
    pub fn metric(&self, line_start: &str) -> f64 {
        metric_in(&self.metrics(), line_start)
    }
}

/// The value of the first sample line of Prometheus text `text` starting with `line_start`
/// (labels included); 0 when there is none.
pub fn metric_in(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

impl Drop for Controlled {
    fn drop(&mut self) {
        self.control.discovery.stop();
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        if let Some(gw) = self.gw.take() {
            gw.stop();
        }
    }
}
