//! The stand the ceiling, soak, profile and rolling-restart modes share: the seeded topology's
//! stub upstreams, the scenario, what the mode's rung needs (signing keys and tokens, Redis for
//! limits, a certificate for TLS: the ladder's [`super::prepare`]), and ringgate configs for the
//! rung with the admin listener on (the soak reads `/metrics` from it). Each mode brings it up,
//! runs, and takes it down. The modes do not rotate keys: their tokens live for hours.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{
    distinct_ports, io_err, prepare, scenario_run, serve, stand, start_upstreams, topology,
    wait_up, work_dir,
};
use super::{Rung, Stage, TaxConfig};
use crate::compare::procs::Proc;
use crate::run::RunConfig;

/// How long the modes' tokens stay valid (a ceiling search, a profile and a soak).
const MODE_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

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
    /// Keys, certificate and feature settings of the rung.
    stage: Stage,
    /// Redis, when the rung has limits.
    redis: Option<Proc>,
    /// The rung has TLS towards clients (runs to a gateway go over `https://`).
    tls: bool,
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

/// The text of `rung`'s ringgate config on `listen`, its admin API on `admin` for feature rungs.
fn rung_toml(
    t: &topology::Topology,
    (rung, stage): (Rung, &Stage),
    (listen, admin): (SocketAddr, SocketAddr),
    eps: &[SocketAddr],
) -> String {
    let mut edge = stage.edge.clone();
    edge.admin = admin;
    topology::rung_toml(t, listen, eps, stand::rung_edge(&edge, rung).as_ref())
}

/// The admin address of a config that already has an `[admin]` section.
fn admin_of(text: &str) -> Option<SocketAddr> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    doc.get("admin")?.get("address")?.as_str()?.parse().ok()
}

impl Bench {
    /// Writes the topology and scenario into `dir` and starts the stub upstreams.
    pub fn up(cfg: &TaxConfig, dir: &Path, rung: Rung) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("command.txt"), format!("{}\n", cfg.command_line))
            .map_err(io_err)?;
        // One scratch folder per stand: tests bring several up in one process.
        static STANDS: AtomicUsize = AtomicUsize::new(0);
        let work = work_dir().join(format!("stand-{}", STANDS.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&work).map_err(io_err)?;
        let t = topology::generate(cfg.seed, cfg.upstreams, cfg.replicas);
        let mut endpoints = distinct_ports(t.upstreams.len() * t.replicas + 3).map_err(io_err)?;
        let (listen, admin, redis) = (
            endpoints.remove(0),
            endpoints.remove(0),
            endpoints.remove(0),
        );
        let scenario = dir.join("scenario.toml");
        std::fs::write(&scenario, topology::scenario_toml(&t)).map_err(io_err)?;
        let mut one = cfg.clone();
        one.rungs = vec![rung];
        let stage = prepare(
            &one,
            &t,
            (dir, &work),
            [listen, admin, redis, endpoints[0]],
            &endpoints,
            MODE_TOKEN_TTL,
        )?;
        let features = rung.features().unwrap_or_default();
        let redis = match features.limit {
            true => Some(stand::start_redis(redis.port(), &work)?),
            false => None,
        };
        let upstream = match start_upstreams(cfg, &endpoints, &work) {
            Ok(u) => u,
            Err(e) => {
                if let Some(r) = redis {
                    r.stop(Duration::from_secs(3));
                }
                return Err(e);
            }
        };
        Ok(Self {
            t,
            dir: dir.to_path_buf(),
            work,
            endpoints,
            scenario,
            upstream,
            stage,
            redis,
            tls: features.tls,
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
        let mut text = rung_toml(
            &self.t,
            (rung, &self.stage),
            (ports[0], ports[1]),
            &self.endpoints,
        );
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

    /// Starts ringgate on `gc` and waits until its listener answers.
    pub fn start_gateway(&self, cfg: &TaxConfig, gc: &GatewayConfig) -> Result<Proc, String> {
        let p = self.start_ringgate(cfg, &cfg.ringgate, gc, &[], "ringgate.log")?;
        // The admin API answers /healthz on every rung (the listener may want TLS or a token).
        wait_up(p, gc.admin, &self.work.join("ringgate.log"))
    }

    /// Starts `binary serve` on `gc` pinned to `cfg.target_cpus` (one worker per CPU listed),
    /// with `extra` arguments, output to `log` in the scratch space; does not wait.
    pub fn start_ringgate(
        &self,
        cfg: &TaxConfig,
        binary: &Path,
        gc: &GatewayConfig,
        extra: &[String],
        log: &str,
    ) -> Result<Proc, String> {
        serve(
            cfg,
            binary,
            &gc.path,
            extra,
            (&self.work, &self.work.join(log)),
        )
    }

    /// The run every mode makes: the scenario against `addr` at `rate` for `cfg.warmup +
    /// cfg.duration`, with the tax's generator placement and self-check limits (as the ladder's).
    pub fn run_config(
        &self,
        cfg: &TaxConfig,
        addr: SocketAddr,
        rate: f64,
    ) -> Result<RunConfig, String> {
        let tls = self.tls && addr != self.direct();
        let ca = if tls { self.stage.ca.as_deref() } else { None };
        scenario_run(cfg, &self.scenario, addr, rate, ca)
    }

    /// Stops the upstreams and removes the scratch space.
    pub fn down(self) {
        self.upstream.stop(Duration::from_secs(3));
        if let Some(r) = self.redis {
            r.stop(Duration::from_secs(3));
        }
        let _ = std::fs::remove_dir_all(&self.work);
        if let Some(parent) = self.work.parent() {
            // Removed when it is empty (no other stand of this process is up).
            let _ = std::fs::remove_dir(parent);
        }
    }
}
