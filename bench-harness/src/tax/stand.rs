//! What the feature rungs need around the gateway: the Redis its rate limits reconcile through
//! (a `redis-server` of our own on a free port, stopped by PID), the self-signed certificate of
//! the TLS rung, each rung's config file, and the key rotation timed to the middle of a run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::auth::{self, Keyring};
use super::features::Edge;
use super::topology::{self, Topology};
use super::{Features, Rung};
use crate::compare::procs::Proc;

/// `redis-server` on `port`, nothing persisted, answering `PING` before this returns.
pub fn start_redis(port: u16, work: &Path) -> Result<Proc, String> {
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &work.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let p = Proc::start("redis", "", "redis-server", &args, &work.join("redis.log"))
        .map_err(|e| format!("redis-server (is it installed?): {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ping(addr) {
            Ok(()) => return Ok(p),
            Err(e) if Instant::now() >= deadline => {
                p.stop(Duration::from_secs(2));
                return Err(format!("redis-server on {addr} did not answer: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Sends one inline command to Redis at `addr` and checks the first bytes of its answer.
fn command(addr: SocketAddr, cmd: &str, answer: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(format!("{cmd}\r\n").as_bytes())?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf)?;
    if buf[..n].starts_with(answer.as_bytes()) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{cmd}: answered {:?}",
            String::from_utf8_lossy(&buf[..n])
        )))
    }
}

fn ping(addr: SocketAddr) -> std::io::Result<()> {
    command(addr, "PING", "+PONG")
}

/// Empties the Redis at `addr`, so a limit rung starts with full buckets whatever the rung
/// before it spent.
pub fn flush_redis(addr: SocketAddr) -> Result<(), String> {
    command(addr, "FLUSHALL", "+OK").map_err(|e| format!("redis {addr}: {e}"))
}

/// Writes a self-signed certificate for 127.0.0.1 and the topology's host names into `dir`
/// (`tls/cert.pem`, `tls/key.pem`); the generator trusts the certificate itself (`--ca`).
pub fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let names = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "*.tax.test".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| format!("certificate: {e}"))?;
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).map_err(|e| format!("{}: {e}", tls.display()))?;
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    std::fs::write(&key, ck.signing_key.serialize_pem())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    Ok((cert, key))
}

/// The file name of a rung's gateway config: `gateway.toml` for passthrough (routing only),
/// `gateway-RUNG.toml` for the feature rungs.
pub fn config_name(rung: Rung) -> String {
    match rung.features() {
        Some(f) if f != Features::default() => format!("gateway-{}.toml", rung.name()),
        _ => "gateway.toml".into(),
    }
}

/// `edge` for a feature rung (`None` for direct and passthrough): its features, and an access
/// log of its own (`access-RUNG.log` beside `edge.access_log`).
pub fn rung_edge(edge: &Edge, rung: Rung) -> Option<Edge> {
    let features = rung.features().filter(|f| *f != Features::default())?;
    let log = Path::new(&edge.access_log).with_file_name(format!("access-{}.log", rung.name()));
    Some(Edge {
        features,
        access_log: log.display().to_string(),
        ..edge.clone()
    })
}

/// Writes the config of every feature rung of `rungs` into `dir` (passthrough's `gateway.toml`
/// is [`super::write_topology`]'s).
pub fn write_rung_configs(
    t: &Topology,
    dir: &Path,
    listen: SocketAddr,
    endpoints: &[SocketAddr],
    rungs: &[Rung],
    edge: &Edge,
) -> Result<(), String> {
    for rung in rungs {
        let Some(e) = rung_edge(edge, *rung) else {
            continue;
        };
        let file = dir.join(config_name(*rung));
        std::fs::write(&file, topology::rung_toml(t, listen, endpoints, Some(&e)))
            .map_err(|err| format!("{}: {err}", file.display()))?;
    }
    Ok(())
}

/// A key rotation made during a run.
#[derive(Clone, Debug, Serialize)]
pub struct Rotation {
    /// Seconds after the run started.
    pub at_s: f64,
    /// The reload's answer.
    pub answer: String,
}

/// The rotation waiting for its moment in another thread.
pub struct RotationTimer {
    cancel: mpsc::Sender<()>,
    thread: JoinHandle<Result<Option<Rotation>, String>>,
}

impl RotationTimer {
    /// Rotates `keys` in `jwks` and reloads through `admin` once `after` has passed, unless the
    /// run ends first.
    pub fn start(
        keys: &std::sync::Arc<Keyring>,
        jwks: &Path,
        admin: SocketAddr,
        after: Duration,
    ) -> Self {
        let (cancel, rx) = mpsc::channel::<()>();
        let keys = keys.clone();
        let jwks = jwks.to_path_buf();
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || match rx.recv_timeout(after) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let answer = auth::rotate(&keys, &jwks, admin)?;
                Ok(Some(Rotation {
                    at_s: t0.elapsed().as_secs_f64(),
                    answer,
                }))
            }
            _ => Ok(None),
        });
        Self { cancel, thread }
    }

    /// Stops waiting (if it still is) and returns what happened.
    pub fn finish(self) -> Result<Option<Rotation>, String> {
        let _ = self.cancel.send(());
        self.thread
            .join()
            .map_err(|_| "the rotation thread panicked".to_string())?
    }
}

/// Checks, before a feature rung's gateway stops, that its features did their part: the rate
/// limits reconciled through Redis (`ringgate_ratelimit_store_up` is 1; a store that was down
/// would leave the limit rung measuring per-node limits only) and the access log has lines.
pub fn check_after(rung: Rung, edge: &Edge) -> Result<(), String> {
    let Some(edge) = rung_edge(edge, rung) else {
        return Ok(());
    };
    let features = edge.features;
    if features.limit {
        let (status, metrics) = auth::admin_request(edge.admin, "GET", "/metrics")?;
        let up = metrics
            .lines()
            .any(|l| l.starts_with("ringgate_ratelimit_store_up{store=\"redis\"} 1"));
        if status != 200 || !up {
            return Err(format!(
                "ringgate's rate-limit store (redis {}) was not up at the end of the run",
                edge.redis
            ));
        }
    }
    if features.observe {
        let lines = std::fs::read_to_string(&edge.access_log).map_or(0, |t| t.lines().count());
        if lines == 0 {
            return Err(format!("no access log lines in {}", edge.access_log));
        }
    }
    Ok(())
}

/// The edge of `--emit`: files named relative to the emitted folder (run ringgate from there),
/// the admin API on 127.0.0.1:9901 and Redis on 127.0.0.1:6379.
pub fn emitted_edge() -> Edge {
    Edge {
        features: Features::default(),
        admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
        jwks: "jwks.json".into(),
        redis: SocketAddr::from(([127, 0, 0, 1], 6379)),
        access_log: "access.log".into(),
        cert: "tls/cert.pem".into(),
        key: "tls/key.pem".into(),
    }
}

/// Writes what `ringbench tax --emit DIR` promises into `dir`: every rung's config, the
/// scenario, and fresh keys' JWKS, token pools (valid for a day) and TLS certificate. Returns
/// the files written.
pub fn emit(
    t: &Topology,
    dir: &Path,
    listen: SocketAddr,
    endpoints: &[SocketAddr],
) -> Result<Vec<PathBuf>, String> {
    let (config, scenario) = super::write_topology(t, dir, listen, endpoints)?;
    let mut files = vec![config, scenario];
    write_rung_configs(t, dir, listen, endpoints, &Rung::ALL, &emitted_edge())?;
    for r in Rung::ALL
        .iter()
        .filter(|r| config_name(**r) != "gateway.toml")
    {
        files.push(dir.join(config_name(*r)));
    }
    let keys = Keyring::generate()?;
    keys.write_tokens(dir, Duration::from_secs(24 * 3600))?;
    files.push(dir.join("tokens"));
    let jwks = dir.join("jwks.json");
    auth::replace_file(&jwks, &keys.jwks_before())?;
    files.push(jwks);
    let (cert, key) = self_signed(dir)?;
    files.extend([cert, key]);
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_not_yet_due_is_called_off_and_a_failed_reload_is_reported() {
        let dir = std::env::temp_dir().join(format!("ringbench-rotation-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks = dir.join("jwks.json");
        let keys = std::sync::Arc::new(Keyring::generate().unwrap());
        auth::replace_file(&jwks, &keys.jwks_before()).unwrap();
        // Nothing listens here: the reload cannot be made.
        let admin = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let t = RotationTimer::start(&keys, &jwks, admin, Duration::from_secs(600));
        assert!(t.finish().unwrap().is_none());
        assert_eq!(std::fs::read_to_string(&jwks).unwrap(), keys.jwks_before());
        let t = RotationTimer::start(&keys, &jwks, admin, Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&jwks).unwrap() != keys.jwks_after() {
            assert!(Instant::now() < deadline, "the JWKS was never rewritten");
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = t.finish().unwrap_err();
        assert!(err.contains(&admin.to_string()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
