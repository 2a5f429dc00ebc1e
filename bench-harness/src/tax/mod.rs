//! `ringbench tax`: what ringgate costs on a realistic mix, rung by rung. It starts the stub
//! upstreams of the [`topology`] (every replica a port of one stub process), starts ringgate on
//! the generated config for each gateway rung, runs the same open-model scenario against the
//! upstreams directly and through each rung, and writes a report directory: the generated config
//! and scenario, every run's JSON, and a summary (Markdown and JSON) of each rung's added
//! latency (p50/p99/p99.9 minus direct's) and CPU per request.
//!
//! The ladder is [`Rung`]: `direct`, `passthrough`, then auth, rate limit, breaker and retries,
//! metrics and access log, client TLS, each adding its feature to the one before. A rung's
//! [`Rung::features`] asks [`topology::rung_toml`] for the sections it needs ([`features`]);
//! [`auth`] makes the keys, tokens and the mid-run key rotation, [`stand`] the Redis, the
//! certificate and the rung configs, and [`accounting`] tells the answers each request kind
//! expects (401 to a bad token, 429 to the noisy consumer) from failures. The run loop, the CPU
//! accounting and the report take every rung alike.
//!
//! After ringgate's run of a rung, [`peers::bench`] runs the requested peers (nginx, HAProxy) on
//! it where they have every feature so far, and with a `count-alloc` build of ringgate a short
//! separate pass that counts heap allocations per request.

pub mod accounting;
pub mod auth;
pub mod features;
pub mod peers;
pub mod report;
pub mod stand;
pub mod topology;

// The modes beyond the ladder (`ringbench tax --mode ceiling,profile,soak,rolling`).
pub mod bench;
pub mod ceiling;
pub mod flame;
pub mod panels;
pub mod profile;
pub mod rolling;
pub mod sampler;
pub mod soak;
pub mod stalls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::compare::procs::{wait_http_ok, Proc};
use crate::run::{self, Plan, RunConfig, RunReport, Schedule, Target, TlsOptions};
use auth::Keyring;
use features::Edge;
use peers::Peer;
use topology::Topology;

/// A rung of the ladder. Each gateway rung keeps what the one before it had and adds one edge
/// feature, so the difference between neighbours is that feature's marginal cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rung {
    /// Straight to the stub upstreams: the baseline every other rung is measured against.
    Direct,
    /// Through ringgate with routing only: no auth, limits, breaker, metrics or TLS.
    Passthrough,
    /// Passthrough plus JWT authentication (warm key cache, several signing keys rotated during
    /// the run, a share of expired and invalid tokens, anonymous public routes).
    Auth,
    /// Auth plus rate limits.
    Limit,
    /// Limit plus circuit breaker and retries.
    Resilience,
    /// Resilience plus metrics and access log.
    Observe,
    /// Observe plus TLS between the clients and the gateway.
    Tls,
}

/// Gateway features a rung turns on (all off for `passthrough`); the config generator adds the
/// sections each asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Features {
    /// JWT authentication on the service routes.
    pub auth: bool,
    /// Rate limits.
    pub limit: bool,
    /// Circuit breaker and retries.
    pub resilience: bool,
    /// Metrics and access log.
    pub observe: bool,
    /// TLS towards clients.
    pub tls: bool,
}

impl Rung {
    /// Every rung, in ladder order.
    pub const ALL: [Rung; 7] = [
        Rung::Direct,
        Rung::Passthrough,
        Rung::Auth,
        Rung::Limit,
        Rung::Resilience,
        Rung::Observe,
        Rung::Tls,
    ];

    /// Parses a rung name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Rung::Direct => "direct",
            Rung::Passthrough => "passthrough",
            Rung::Auth => "auth",
            Rung::Limit => "limit",
            Rung::Resilience => "resilience",
            Rung::Observe => "observe",
            Rung::Tls => "tls",
        }
    }

    /// The full chain (every feature on): the default of the ceiling, soak and profile modes.
    pub fn full_chain() -> Self {
        Rung::Tls
    }

    /// The gateway features of this rung (its own and every rung's below it); `None` for
    /// `direct` (no gateway).
    pub fn features(self) -> Option<Features> {
        let level = Self::ALL.iter().position(|r| *r == self).unwrap_or(0);
        if level == 0 {
            return None;
        }
        Some(Features {
            auth: level >= 2,
            limit: level >= 3,
            resilience: level >= 4,
            observe: level >= 5,
            tls: level >= 6,
        })
    }
}

/// A tax run to make.
#[derive(Clone, Debug, Default)]
pub struct TaxConfig {
    /// Report name (folder under `out`).
    pub name: String,
    /// Parent folder of reports.
    pub out: PathBuf,
    /// Topology seed (also the generator's seed).
    pub seed: u64,
    /// Upstreams and replicas of the topology.
    pub upstreams: usize,
    /// Replicas per upstream.
    pub replicas: usize,
    /// Rungs in ladder order; `direct` must be among them (added latency is against it).
    pub rungs: Vec<Rung>,
    /// Offered rate.
    pub rate: f64,
    /// Repetitions of the ladder, interleaved.
    pub reps: usize,
    /// Measured length of each run.
    pub duration: Duration,
    /// Warmup of each run.
    pub warmup: Duration,
    /// Generator CPUs (`None`: unpinned, one thread).
    pub generator_cpus: Option<Vec<usize>>,
    /// CPUs of ringgate (`taskset -c` list; empty: unpinned).
    pub target_cpus: String,
    /// CPUs of the stub upstreams (`taskset -c` list; empty: unpinned).
    pub upstream_cpus: String,
    /// Connections the generator opens at start.
    pub conns: usize,
    /// The ringgate binary.
    pub ringgate: PathBuf,
    /// The ringbench binary serving the upstreams (default: this executable).
    pub ringbench: Option<PathBuf>,
    /// The command line, recorded in the report.
    pub command_line: String,
    /// Self-check limits of every run.
    pub thresholds: run::Thresholds,
    /// Peers run on each rung they support, after ringgate's run ([`peers::supports`]).
    pub peers: Vec<Peer>,
    /// A ringgate built with `--features count-alloc`: a short extra pass per gateway rung
    /// counts its heap allocations per request ([`peers::bench::alloc_pass`]).
    pub alloc_ringgate: Option<PathBuf>,
}

/// One finished run.
#[derive(Clone, Debug)]
pub struct RungRun {
    /// Rung.
    pub rung: Rung,
    /// Who served it (ringgate for `direct` too, where nobody is in between).
    pub peer: Peer,
    /// Repetition (from 1).
    pub rep: usize,
    /// Its report.
    pub report: RunReport,
    /// Heap allocations per request of the counting build on this rung (ringgate's rows).
    pub allocs_per_req: Option<f64>,
    /// The key rotation made during it (auth rungs).
    pub rotation: Option<stand::Rotation>,
}

/// `n` distinct loopback addresses free right now: all bound at once, then released, so no two
/// are the same port.
pub(crate) fn distinct_ports(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    held.iter().map(|l| l.local_addr()).collect()
}

/// Scratch space of this process (logs, the ringgate profile), removed at the end.
pub(crate) fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("ringbench-tax-{}", std::process::id()))
}

pub(crate) fn io_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The stub upstreams: one process listening on every replica's port.
pub(crate) fn start_upstreams(
    cfg: &TaxConfig,
    endpoints: &[SocketAddr],
    work: &Path,
) -> Result<Proc, String> {
    let exe = match &cfg.ringbench {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(io_err)?,
    };
    let listen: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    let args = vec![
        "upstream".into(),
        "--listen".into(),
        listen.join(","),
        "--workers".into(),
        "1".into(),
        "--body-bytes".into(),
        topology::SMALL_BODY_BYTES.to_string(),
        "--name".into(),
        "tax".into(),
    ];
    let p = Proc::start(
        "upstream",
        &cfg.upstream_cpus,
        &exe.display().to_string(),
        &args,
        &work.join("upstream.log"),
    )
    .map_err(|e| format!("upstream: {e}"))?;
    for a in endpoints {
        if let Err(e) = wait_http_ok(*a, "/healthz", Duration::from_secs(10)) {
            p.stop(Duration::from_secs(2));
            return Err(format!("upstream {a}: {e}"));
        }
    }
    Ok(p)
}

/// `binary serve --config config` pinned to `cfg.target_cpus` (its profile written into
/// `work`), with `extra` arguments, output to `log`; does not wait.
pub(crate) fn serve(
    cfg: &TaxConfig,
    binary: &Path,
    config: &Path,
    extra: &[String],
    (work, log): (&Path, &Path),
) -> Result<Proc, String> {
    let profile = crate::compare::procs::pinned_profile(work, &cfg.target_cpus).map_err(io_err)?;
    let mut args = vec![
        "serve".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--profile".into(),
        profile.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    let program = binary.display().to_string();
    Proc::start("ringgate", &cfg.target_cpus, &program, &args, log)
        .map_err(|e| format!("ringgate {program}: {e}"))
}

/// `p` once `health` (the listener, or the admin API, whose `/healthz` answers on every rung)
/// answers; otherwise stops it and says why, with its log.
pub(crate) fn wait_up(p: Proc, health: SocketAddr, log: &Path) -> Result<Proc, String> {
    if let Err(e) = wait_http_ok(health, "/healthz", Duration::from_secs(15)) {
        p.stop(Duration::from_secs(2));
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        return Err(format!(
            "ringgate did not come up: {e}; log: {}",
            tail.trim()
        ));
    }
    Ok(p)
}

/// ringgate on `config`, answering through to the upstreams; up once `health` answers.
fn start_gateway(
    cfg: &TaxConfig,
    config: &Path,
    health: SocketAddr,
    work: &Path,
) -> Result<Proc, String> {
    let log = work.join("ringgate.log");
    let p = serve(cfg, &cfg.ringgate, config, &[], (work, &log))?;
    wait_up(p, health, &log)
}

/// Starts ringgate (`cfg.ringgate`) on `rung`'s config from the key set before the rotation
/// and with full rate-limit buckets, and waits until it answers.
fn start_rung_gateway(
    cfg: &TaxConfig,
    rung: Rung,
    stage: &Stage,
    work: &Path,
) -> Result<Proc, String> {
    let f = rung
        .features()
        .ok_or_else(|| format!("{} has no gateway", rung.name()))?;
    auth::replace_file(&stage.jwks, &stage.keys.jwks_before())?;
    if f.limit {
        stand::flush_redis(stage.edge.redis)?;
    }
    let health = if f == Features::default() {
        stage.listen
    } else {
        stage.edge.admin
    };
    let config = stage.configs.join(stand::config_name(rung));
    start_gateway(cfg, &config, health, work)
}

/// Where a rung's load goes and whose CPU it is.
struct Stand<'a> {
    addr: SocketAddr,
    gateway: Option<&'a Proc>,
    features: Features,
    /// Rotate the signing keys halfway (ringgate's measured auth runs; peers read their keys
    /// once, and the allocation pass needs none).
    rotate: bool,
}

/// What the ladder's rungs share: addresses, the edge features' files and the signing keys.
struct Stage {
    /// The report folder, where the rung configs are.
    configs: PathBuf,
    listen: SocketAddr,
    direct: SocketAddr,
    edge: Edge,
    keys: Arc<Keyring>,
    jwks: PathBuf,
    ca: Option<PathBuf>,
}

fn run_rung(
    cfg: &TaxConfig,
    scenario: &Path,
    stand: &Stand<'_>,
    stage: &Stage,
    upstream_pid: u32,
) -> Result<(RunReport, Option<stand::Rotation>), String> {
    let ca = if stand.features.tls {
        stage.ca.as_deref()
    } else {
        None
    };
    let mut rc = scenario_run(cfg, scenario, stand.addr, cfg.rate, ca)?;
    match stand.gateway {
        None => rc.target_pids = vec![upstream_pid],
        Some(g) => {
            rc.target_pids = g.tree();
            rc.other_pids = vec![("upstream".into(), vec![upstream_pid])];
        }
    }
    // The rotation halfway through the measured window: the next key's tokens are refused
    // before it and accepted after, the retiring key's the other way round.
    let timer = (stand.features.auth && stand.rotate).then(|| {
        let after = cfg.warmup + cfg.duration / 2;
        stand::RotationTimer::start(&stage.keys, &stage.jwks, stage.edge.admin, after)
    });
    let report = run::run(&rc).map_err(io_err);
    let rotation = timer.map_or(Ok(None), stand::RotationTimer::finish);
    // A failed run says why first; then a rotation that failed or never came.
    let report = report?;
    let rotation = rotation?;
    if stand.features.auth && stand.rotate && rotation.is_none() {
        return Err("the key rotation did not happen before the run ended".into());
    }
    Ok((report, rotation))
}

/// How long the run's tokens must stay valid: the whole ladder and then some.
fn token_ttl(cfg: &TaxConfig) -> Duration {
    let runs = (cfg.reps.max(1) * cfg.rungs.len()) as u32;
    (cfg.warmup + cfg.duration + Duration::from_secs(30)) * runs + Duration::from_secs(600)
}

/// The run every part of the tax makes: `scenario` against `addr` at `rate` for `cfg.warmup +
/// cfg.duration`, with the tax's generator placement and self-check limits; over `https://`
/// trusting `ca` when given.
pub(crate) fn scenario_run(
    cfg: &TaxConfig,
    scenario: &Path,
    addr: SocketAddr,
    rate: f64,
    ca: Option<&Path>,
) -> Result<RunConfig, String> {
    let scheme = if ca.is_some() { "https" } else { "http" };
    let target = Target::parse(&format!("{scheme}://{addr}/")).map_err(io_err)?;
    let plan = Plan::from_scenario(scenario, &target).map_err(io_err)?;
    let total = cfg.warmup + cfg.duration;
    let mut rc = RunConfig::simple(target, plan, rate, total);
    rc.schedule = Schedule::constant(rate, total);
    rc.warmup = cfg.warmup;
    rc.cpus = cfg.generator_cpus.clone();
    rc.threads = cfg.generator_cpus.as_ref().map_or(1, |c| c.len().max(1));
    rc.conns = cfg.conns;
    rc.seed = cfg.seed;
    rc.thresholds = cfg.thresholds;
    // Downloads of 10 MiB at a low rate take longer than a small request's default deadline.
    rc.timeout = Duration::from_secs(30);
    rc.tls = ca.map(|c| TlsOptions::with_ca(c.to_path_buf()));
    Ok(rc)
}

/// Writes the generated config and scenario of `t` into `dir` (`gateway.toml`, `scenario.toml`).
pub fn write_topology(
    t: &Topology,
    dir: &Path,
    listen: SocketAddr,
    endpoints: &[SocketAddr],
) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("gateway.toml");
    let scenario = dir.join("scenario.toml");
    std::fs::write(&config, topology::gateway_toml(t, listen, endpoints)).map_err(io_err)?;
    std::fs::write(&scenario, topology::scenario_toml(t)).map_err(io_err)?;
    Ok((config, scenario))
}

/// Runs the ladder and writes the report folder; returns the Markdown summary.
pub fn tax(cfg: &TaxConfig) -> Result<String, String> {
    if !cfg.rungs.contains(&Rung::Direct) {
        return Err("the ladder needs the direct rung (added latency is against it)".into());
    }
    let dir = cfg.out.join(&cfg.name);
    let runs_dir = dir.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(|e| format!("{}: {e}", runs_dir.display()))?;
    std::fs::write(dir.join("command.txt"), format!("{}\n", cfg.command_line)).map_err(io_err)?;
    let work = work_dir();
    std::fs::create_dir_all(&work).map_err(io_err)?;
    let t = topology::generate(cfg.seed, cfg.upstreams, cfg.replicas);
    let mut ports = distinct_ports(t.upstreams.len() * t.replicas + 3).map_err(io_err)?;
    let (listen, admin, redis) = (ports.remove(0), ports.remove(0), ports.remove(0));
    let endpoints = ports;
    let (_, scenario) = write_topology(&t, &dir, listen, &endpoints)?;
    let stage = prepare(
        cfg,
        &t,
        (&dir, &work),
        [listen, admin, redis, endpoints[0]],
        &endpoints,
        token_ttl(cfg),
    )?;
    let upstream = start_upstreams(cfg, &endpoints, &work)?;
    let wants_redis = cfg
        .rungs
        .iter()
        .any(|r| r.features().is_some_and(|f| f.limit));
    let redis = match wants_redis.then(|| stand::start_redis(redis.port(), &work)) {
        Some(Err(e)) => {
            upstream.stop(Duration::from_secs(3));
            return Err(e);
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    let bench = peers::bench::PeerBench {
        topology: &t,
        endpoints: &endpoints,
        listen,
        setup: peers::PeerSetup {
            dir: work.join("peers"),
            access_log: work.join("peers").join("access.log"),
            limit_rps: peers::DEFAULT_LIMIT_RPS,
            tls_cert: stage.ca.clone().unwrap_or_default(),
            tls_key: PathBuf::from(&stage.edge.key),
            jwt: stage.keys.peer_jwt(
                &work.join("peers").join("keys"),
                t.routes
                    .iter()
                    .filter(|r| !r.auth)
                    .map(|r| r.id.clone())
                    .collect(),
            )?,
        },
    };
    let result = run_ladder(cfg, &scenario, &stage, &upstream, &dir, &bench);
    if let Some(r) = redis {
        r.stop(Duration::from_secs(3));
    }
    upstream.stop(Duration::from_secs(3));
    let _ = std::fs::remove_dir_all(&work);
    let runs = result?;
    report::write(cfg, &t, &dir, &runs)
}

/// The signing keys and token pools, the JWKS, the TLS certificate and every feature rung's
/// config, written into the report folder `dir`; `addrs` is the gateway's listener, its admin
/// API, Redis and the direct rung's replica.
fn prepare(
    cfg: &TaxConfig,
    t: &Topology,
    (dir, work): (&Path, &Path),
    addrs: [SocketAddr; 4],
    endpoints: &[SocketAddr],
    ttl: Duration,
) -> Result<Stage, String> {
    let [listen, admin, redis, direct] = addrs;
    let keys = Arc::new(Keyring::generate()?);
    keys.write_tokens(dir, ttl)?;
    let jwks = dir.join("jwks.json");
    auth::replace_file(&jwks, &keys.jwks_before())?;
    let wants_tls = cfg
        .rungs
        .iter()
        .any(|r| r.features().is_some_and(|f| f.tls));
    let (cert, key) = if wants_tls {
        let (c, k) = stand::self_signed(dir)?;
        (Some(c), Some(k))
    } else {
        (None, None)
    };
    let shown = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let edge = Edge {
        features: Features::default(),
        admin,
        jwks: jwks.display().to_string(),
        redis,
        access_log: work.join("access.log").display().to_string(),
        cert: shown(&cert).unwrap_or_default(),
        key: shown(&key).unwrap_or_default(),
    };
    stand::write_rung_configs(t, dir, listen, endpoints, &cfg.rungs, &edge)?;
    Ok(Stage {
        configs: dir.to_path_buf(),
        listen,
        direct,
        edge,
        keys,
        jwks,
        ca: cert,
    })
}

fn run_ladder(
    cfg: &TaxConfig,
    scenario: &Path,
    stage: &Stage,
    upstream: &Proc,
    dir: &Path,
    bench: &peers::bench::PeerBench<'_>,
) -> Result<Vec<RungRun>, String> {
    let work = work_dir();
    let mut runs = Vec::new();
    for rep in 1..=cfg.reps.max(1) {
        for rung in &cfg.rungs {
            // Each gateway rung gets a fresh process on its own config: no state (pools,
            // caches, limiter buckets) carries over from the rung before.
            let features = rung.features().unwrap_or_default();
            let gateway = match rung.features() {
                None => None,
                Some(_) => Some(start_rung_gateway(cfg, *rung, stage, &work)?),
            };
            let stand = Stand {
                addr: if gateway.is_some() {
                    stage.listen
                } else {
                    stage.direct
                },
                gateway: gateway.as_ref(),
                features,
                rotate: true,
            };
            let r = run_rung(cfg, scenario, &stand, stage, upstream.pid()).and_then(|r| {
                stand::check_after(*rung, &stage.edge)?;
                Ok(r)
            });
            if let Some(g) = gateway {
                g.stop(Duration::from_secs(5));
            }
            let (r, rotation) = r?;
            println!(
                "rep {rep} {:<12} {:<17} p50 {:>8} p99 {:>8} p99.9 {:>8}",
                rung.name(),
                r.verdict.name(),
                crate::units::fmt_nanos(r.latency.response.p50_ns as f64),
                crate::units::fmt_nanos(r.latency.response.p99_ns as f64),
                crate::units::fmt_nanos(r.latency.response.p999_ns as f64),
            );
            let file = dir
                .join("runs")
                .join(format!("{}-r{rep}.json", rung.name()));
            let text = serde_json::to_string_pretty(&r).map_err(io_err)?;
            std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
            let allocs_per_req = match rung.features() {
                Some(_) => {
                    peers::bench::alloc_pass(cfg, *rung, scenario, stage, upstream.pid(), &work)?
                }
                None => None,
            };
            runs.push(RungRun {
                rung: *rung,
                peer: Peer::Ringgate,
                rep,
                report: r,
                allocs_per_req,
                rotation,
            });
            runs.extend(peers::bench::peer_runs(
                cfg,
                bench,
                (*rung, rep),
                scenario,
                stage,
                upstream.pid(),
                dir,
            )?);
        }
    }
    Ok(runs)
}
