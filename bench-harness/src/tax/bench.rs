//! The stand the ceiling, soak, profile and rolling-restart modes share: the seeded topology's
//! stub upstreams, the scenario, and ringgate configs for a rung with the admin listener on (the
//! soak reads `/metrics` from it). Each mode brings it up, runs, and takes it down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{distinct_ports, io_err, start_gateway, start_upstreams, topology, work_dir};
use super::{Rung, TaxConfig};
use crate::compare::procs::Proc;

/// The running stand.
pub struct Bench {
    /// The topology.
    pub t: topology::Topology,
    /// The report folder.
    pub dir: PathBuf,
    /// Scratch space (logs), removed by [`Bench::down`].
    pub work: PathBuf,
    /// Replica addresses (all served by `upstream`).
    pub endpoints: Vec<SocketAddr>,
    /// The scenario file.
    pub scenario: PathBuf,
    /// The stub upstreams.
    pub upstream: Proc,
}

/// One ringgate config written by [`Bench::gateway_config`].
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The file.
    pub path: PathBuf,
    /// Client listener.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`).
    pub admin: SocketAddr,
}

/// The text of `rung`'s ringgate config. The one place that asks the topology for a rung's
/// config: once the generator takes [`Rung::features`], they are passed here.
fn rung_toml(t: &topology::Topology, rung: Rung, listen: SocketAddr, eps: &[SocketAddr]) -> String {
    let _features = rung.features();
    topology::gateway_toml(t, listen, eps)
}

/// The admin address of a config that already has an `[admin]` section.
fn admin_of(text: &str) -> Option<SocketAddr> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    doc.get("admin")?.get("address")?.as_str()?.parse().ok()
}

impl Bench {
    /// Writes the topology and scenario into `dir` and starts the stub upstreams.
    pub fn up(cfg: &TaxConfig, dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("command.txt"), format!("{}\n", cfg.command_line))
            .map_err(io_err)?;
        // One scratch folder per stand: tests bring several up in one process.
        static STANDS: AtomicUsize = AtomicUsize::new(0);
        let work = work_dir().join(format!("stand-{}", STANDS.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&work).map_err(io_err)?;
        let t = topology::generate(cfg.seed, cfg.upstreams, cfg.replicas);
        let endpoints = distinct_ports(t.upstreams.len() * t.replicas).map_err(io_err)?;
        let scenario = dir.join("scenario.toml");
        std::fs::write(&scenario, topology::scenario_toml(&t)).map_err(io_err)?;
        let upstream = start_upstreams(cfg, &endpoints, &work)?;
        Ok(Self {
            t,
            dir: dir.to_path_buf(),
            work,
            endpoints,
            scenario,
            upstream,
        })
    }

    /// Where the `direct` rung sends (one replica: they are all the same stub process).
    pub fn direct(&self) -> SocketAddr {
        self.endpoints[0]
    }

    /// Writes `rung`'s config as `name` into the report folder, on fresh listen and admin ports
    /// (an `[admin]` section is added unless the rung's config has one).
    pub fn gateway_config(&self, rung: Rung, name: &str) -> Result<GatewayConfig, String> {
        let ports = distinct_ports(2).map_err(io_err)?;
        let mut text = rung_toml(&self.t, rung, ports[0], &self.endpoints);
        let admin = match admin_of(&text) {
            Some(a) => a,
            None => {
                text.push_str(&format!("\n[admin]\naddress = \"{}\"\n", ports[1]));
                ports[1]
            }
        };
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(GatewayConfig {
            path,
            listen: ports[0],
            admin,
        })
    }

    /// Starts ringgate on `gc` and waits until it answers.
    pub fn start_gateway(&self, cfg: &TaxConfig, gc: &GatewayConfig) -> Result<Proc, String> {
        start_gateway(cfg, &gc.path, gc.listen, &self.work)
    }

    /// Stops the upstreams and removes the scratch space.
    pub fn down(self) {
        self.upstream.stop(Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&self.work);
        if let Some(parent) = self.work.parent() {
            // Removed when it is empty (no other stand of this process is up).
            let _ = std::fs::remove_dir(parent);
        }
    }
}
