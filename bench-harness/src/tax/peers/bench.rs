//! The peers' and the allocation counter's turns in the ladder, called from the run loop after
//! ringgate's run of each rung: [`peer_runs`] runs every requested peer that [`super::supports`]
//! the rung on the same listen address, upstreams and scenario (a fresh process per run, like
//! ringgate's), and [`alloc_pass`] runs a short separate pass on a ringgate built with
//! `--features count-alloc` to count heap allocations per request.
//!
//! Allocation counting: that build prints `ringgate: heap allocations N` (a process-wide total
//! since start) to its stderr on SIGUSR2. The pass warms up, asks for the total, runs the
//! measured window, asks again, and divides the difference by the requests completed in the
//! window. It is a separate pass because the counting build is not the binary whose latency the
//! table shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::topology::Topology;
use super::super::{run_rung, start_rung_gateway, Rung, RungRun, Stage, Stand, TaxConfig};
use super::{haproxy, nginx, supports, Peer, PeerSetup};
use crate::compare::procs::{which, Proc};

/// What the peers need beside the tax config: the topology, where its replicas listen, and
/// where the gateway under test listens.
#[derive(Clone, Debug)]
pub struct PeerBench<'a> {
    /// The topology.
    pub topology: &'a Topology,
    /// Replica addresses (upstream `u`'s at `u * replicas ..`).
    pub endpoints: &'a [SocketAddr],
    /// The listen address of the gateway (and so of each peer in turn).
    pub listen: SocketAddr,
    /// Feature files and values.
    pub setup: PeerSetup,
}

fn io_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Waits until `addr` answers HTTP at all (any status: on an auth rung an anonymous probe may
/// be refused, which still shows the peer is up), or `p` exits. Over TLS (`tls`), a listener
/// that takes connections is enough (a cleartext probe would only fail its handshake).
fn wait_answers(
    p: &mut Proc,
    addr: SocketAddr,
    tls: bool,
    timeout: Duration,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let t0 = Instant::now();
    loop {
        let attempt = (|| {
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
            if tls {
                return Ok(());
            }
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")?;
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf)?;
            if &buf == b"HTTP/1.1" {
                Ok(())
            } else {
                Err(std::io::Error::other("not HTTP"))
            }
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if t0.elapsed() > timeout => return Err(e),
            Err(_) if !p.alive() => return Err(std::io::Error::other("it exited")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Why `peer` cannot run `rung` with `s`, if it cannot: a peer without what a feature needs would
/// refuse every request and read as slow.
pub fn missing_setup(peer: Peer, rung: Rung, s: &PeerSetup) -> Option<&'static str> {
    let f = rung.features()?;
    if f.auth && peer.has().auth && s.jwt.keys.is_empty() {
        return Some("no JWT keys it can verify (PeerSetup::jwt)");
    }
    if f.tls && (s.tls_cert.as_os_str().is_empty() || s.tls_key.as_os_str().is_empty()) {
        return Some("no certificate and key");
    }
    None
}

/// Writes `peer`'s config for `rung` into `setup.dir` and starts it on `cfg.target_cpus`.
pub fn start_peer(
    peer: Peer,
    rung: Rung,
    b: &PeerBench<'_>,
    cpus: &str,
) -> Result<(Proc, PathBuf), String> {
    let f = rung
        .features()
        .ok_or_else(|| format!("{} has no gateway", rung.name()))?;
    let s = &b.setup;
    if let Some(why) = missing_setup(peer, rung, s) {
        return Err(format!("{}: {why}", rung.name()));
    }
    let log = s.dir.join(format!("{}.log", peer.name()));
    let (bin, conf, args) = match peer {
        Peer::Nginx => {
            let conf = nginx::write(b.topology, b.listen, b.endpoints, f, s).map_err(io_err)?;
            (which("nginx"), conf.clone(), nginx::args(&s.dir, &conf))
        }
        Peer::Haproxy => {
            let conf = haproxy::write(b.topology, b.listen, b.endpoints, f, s).map_err(io_err)?;
            (which("haproxy"), conf.clone(), haproxy::args(&conf))
        }
        Peer::Ringgate => return Err("ringgate runs in the ladder itself".into()),
    };
    let bin = bin.ok_or_else(|| format!("{} is not installed", peer.name()))?;
    let mut p = Proc::start(peer.name(), cpus, &bin.display().to_string(), &args, &log)
        .map_err(|e| format!("{}: {e}", peer.name()))?;
    if let Err(e) = wait_answers(&mut p, b.listen, f.tls, Duration::from_secs(15)) {
        p.stop(Duration::from_secs(2));
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(format!(
            "{} did not come up: {e}; log: {}",
            peer.name(),
            tail.trim()
        ));
    }
    Ok((p, conf))
}

/// Runs each of `cfg.peers` that has a row at `rung`, once (repetition `rep`); saves each run's
/// JSON (and on the first repetition the peer's config) under `dir`.
pub(in crate::tax) fn peer_runs(
    cfg: &TaxConfig,
    b: &PeerBench<'_>,
    (rung, rep): (Rung, usize),
    scenario: &Path,
    stage: &Stage,
    upstream_pid: u32,
    dir: &Path,
) -> Result<Vec<RungRun>, String> {
    let mut out = Vec::new();
    for peer in cfg.peers.iter().filter(|p| supports(**p, rung)) {
        if let Some(why) = missing_setup(*peer, rung, &b.setup) {
            if rep == 1 {
                println!("{} has no row at {}: {why}", peer.name(), rung.name());
            }
            continue;
        }
        let (p, conf) = start_peer(*peer, rung, b, &cfg.target_cpus)?;
        let stand = Stand {
            addr: b.listen,
            gateway: Some(&p),
            features: rung.features().unwrap_or_default(),
            rotate: false,
        };
        let r = run_rung(cfg, scenario, &stand, stage, upstream_pid);
        p.stop(Duration::from_secs(5));
        let (r, _) = r?;
        println!(
            "rep {rep} {:<12} {:<9} {:<17} p50 {:>8} p99 {:>8} p99.9 {:>8}",
            rung.name(),
            peer.name(),
            r.verdict.name(),
            crate::units::fmt_nanos(r.latency.response.p50_ns as f64),
            crate::units::fmt_nanos(r.latency.response.p99_ns as f64),
            crate::units::fmt_nanos(r.latency.response.p999_ns as f64),
        );
        let stem = format!("{}-{}", peer.name(), rung.name());
        if rep == 1 {
            let peers_dir = dir.join("peers");
            std::fs::create_dir_all(&peers_dir).map_err(io_err)?;
            let name = conf.file_name().map_or("conf".into(), |n| n.to_os_string());
            let copy = peers_dir.join(format!("{stem}-{}", name.to_string_lossy()));
            std::fs::copy(&conf, copy).map_err(io_err)?;
        }
        let file = dir.join("runs").join(format!("{stem}-r{rep}.json"));
        let text = serde_json::to_string_pretty(&r).map_err(io_err)?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        out.push(RungRun {
            rung,
            peer: *peer,
            rep,
            report: r,
            allocs_per_req: None,
            rotation: None,
        });
    }
    Ok(out)
}

/// The prefix of the line the counting build prints on SIGUSR2.
pub const ALLOC_LINE: &str = "ringgate: heap allocations ";

/// The last allocation total in `log`, and how many such lines it has.
pub fn last_alloc_total(log: &str) -> (usize, Option<u64>) {
    let totals: Vec<u64> = log
        .lines()
        .filter_map(|l| l.strip_prefix(ALLOC_LINE))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    (totals.len(), totals.last().copied())
}

/// Asks the counting build `pid` (logging to `log`) for its allocation total.
pub fn read_allocations(pid: u32, log: &Path) -> Result<u64, String> {
    let before = last_alloc_total(&std::fs::read_to_string(log).unwrap_or_default()).0;
    crate::sys::signal(pid, libc::SIGUSR2).map_err(io_err)?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("heap allocations not counted") {
            return Err(format!(
                "{}: not a --features count-alloc build",
                log.display()
            ));
        }
        let (n, last) = last_alloc_total(&text);
        if let (true, Some(total)) = (n > before, last) {
            return Ok(total);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!(
        "no `{}N` line in {} after SIGUSR2: is it a --features count-alloc build?",
        ALLOC_LINE.trim(),
        log.display()
    ))
}

/// Heap allocations per request of `cfg.alloc_ringgate` on `rung` (a gateway rung), over a
/// short window (the run's, at most 5 s) after a warmup; `None` without a counting binary.
pub(in crate::tax) fn alloc_pass(
    cfg: &TaxConfig,
    rung: Rung,
    scenario: &Path,
    stage: &Stage,
    upstream_pid: u32,
    work: &Path,
) -> Result<Option<f64>, String> {
    let Some(bin) = &cfg.alloc_ringgate else {
        return Ok(None);
    };
    let mut counting = cfg.clone();
    counting.ringgate = bin.clone();
    let p = start_rung_gateway(&counting, rung, stage, work)?;
    let log = work.join("ringgate.log");
    let stand = Stand {
        addr: stage.listen,
        gateway: Some(&p),
        features: rung.features().unwrap_or_default(),
        rotate: false,
    };
    let pass = |duration: Duration| {
        let mut c = counting.clone();
        c.warmup = Duration::ZERO;
        c.duration = duration;
        run_rung(&c, scenario, &stand, stage, upstream_pid).map(|(r, _)| r)
    };
    let result = (|| {
        pass(cfg.warmup.max(Duration::from_millis(300)))?;
        let before = read_allocations(p.pid(), &log)?;
        let r = pass(cfg.duration.min(Duration::from_secs(5)))?;
        let after = read_allocations(p.pid(), &log)?;
        Ok::<_, String>(after.saturating_sub(before) as f64 / r.counts.completed.max(1) as f64)
    })();
    p.stop(Duration::from_secs(5));
    result.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_total_line_is_read() {
        let log = "ringgate: listening\nringgate: heap allocations 10\nx\nringgate: heap allocations 25\n";
        assert_eq!(last_alloc_total(log), (2, Some(25)));
        assert_eq!(last_alloc_total("nothing"), (0, None));
    }
}
