//! What a long run watches on the gateway, once per interval: its resident memory and open file
//! descriptors (from `/proc/PID`), its open connections to the upstreams and from clients (its
//! socket inodes matched against `/proc/PID/net/tcp`), and from its admin `/metrics` the idle
//! pooled connections, the new and reused upstream connection counters (whose deltas give the
//! reuse ratio of each interval) and the workers' event-loop lag. Flat series mean no leak.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t_s: f64,
    /// Resident set size of the gateway (KiB).
    pub rss_kib: u64,
    /// Open file descriptors of the gateway.
    pub fds: u64,
    /// Established TCP connections from the gateway to the upstream endpoints.
    pub upstream_conns: u64,
    /// Established TCP connections from clients to the gateway's listener.
    pub client_conns: u64,
    /// Idle pooled upstream connections (`ringgate_upstream_pool_idle_connections`).
    pub pool_idle: f64,
    /// Upstream connections opened so far (`ringgate_upstream_connections_new_total`).
    pub conns_new_total: f64,
    /// Requests sent on reused connections so far (`..._connections_reused_total`).
    pub conns_reused_total: f64,
    /// Share of this interval's upstream requests sent on a reused connection (NaN when none).
    pub reuse_ratio: f64,
    /// Largest last event-loop lag over the workers (ms).
    pub loop_lag_ms: f64,
    /// Largest loop lag since the previous housekeeping reset, over the workers (ms).
    pub loop_lag_max_ms: f64,
    /// Whether `/metrics` answered for this sample.
    pub metrics_ok: bool,
}

/// What to watch.
#[derive(Clone, Debug)]
pub struct Watch {
    /// The gateway's PID.
    pub pid: u32,
    /// Its client listener.
    pub listen: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Upstream endpoint ports.
    pub upstream_ports: HashSet<u16>,
}

/// A running sampler.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

impl Sampler {
    /// Starts sampling `w` every `every`, the first sample at once.
    pub fn start(w: Watch, every: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("ringbench-sampler".into())
            .spawn(move || sample_loop(&w, every, &flag))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops and returns the samples.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    /// A sampler dropped unfinished stops its thread too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sample_loop(w: &Watch, every: Duration, stop: &AtomicBool) -> Vec<Sample> {
    let start = Instant::now();
    let mut out: Vec<Sample> = Vec::new();
    let mut k = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let due = start + every * k;
        let now = Instant::now();
        if now < due {
            // Short naps so a stop is seen quickly.
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
            continue;
        }
        let mut s = take(w);
        s.t_s = due.duration_since(start).as_secs_f64();
        if let Some(prev) = out.last() {
            let new = s.conns_new_total - prev.conns_new_total;
            let reused = s.conns_reused_total - prev.conns_reused_total;
            s.reuse_ratio = reused / (new + reused);
        } else {
            s.reuse_ratio = f64::NAN;
        }
        out.push(s);
        k += 1;
    }
    out
}

/// One sample now (`t_s` and `reuse_ratio` are the caller's).
pub fn take(w: &Watch) -> Sample {
    let mut s = Sample {
        rss_kib: rss_kib(w.pid).unwrap_or(0),
        ..Sample::default()
    };
    let inodes = socket_inodes(w.pid, &mut s.fds);
    let (up, cl) = tcp_conns(w.pid, &inodes, &w.upstream_ports, w.listen.port());
    s.upstream_conns = up;
    s.client_conns = cl;
    if let Some(text) = scrape(w.admin) {
        s.metrics_ok = true;
        s.pool_idle = metric_sum(&text, "ringgate_upstream_pool_idle_connections");
        s.conns_new_total = metric_sum(&text, "ringgate_upstream_connections_new_total");
        s.conns_reused_total = metric_sum(&text, "ringgate_upstream_connections_reused_total");
        s.loop_lag_ms = metric_max(&text, "ringgate_worker_loop_lag_seconds") * 1e3;
        s.loop_lag_max_ms = metric_max(&text, "ringgate_worker_loop_lag_max_seconds") * 1e3;
    }
    s
}

/// Established client connections of `pid` on its listener port.
pub fn client_conns(pid: u32, listen_port: u16) -> u64 {
    let mut fds = 0;
    let inodes = socket_inodes(pid, &mut fds);
    tcp_conns(pid, &inodes, &HashSet::new(), listen_port).1
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The inodes of `pid`'s sockets; counts all its descriptors into `fds`.
fn socket_inodes(pid: u32, fds: &mut u64) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return inodes;
    };
    for e in dir.flatten() {
        *fds += 1;
        if let Ok(link) = std::fs::read_link(e.path()) {
            let l = link.to_string_lossy();
            if let Some(n) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                if let Ok(i) = n.parse() {
                    inodes.insert(i);
                }
            }
        }
    }
    inodes
}

/// Established connections of `pid` (by socket inode) towards `upstream` ports and from
/// clients to `listen_port`, from `/proc/PID/net/tcp` and `tcp6`.
fn tcp_conns(pid: u32, inodes: &HashSet<u64>, upstream: &HashSet<u16>, listen: u16) -> (u64, u64) {
    let (mut up, mut cl) = (0, 0);
    for file in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let Ok(inode) = f[9].parse::<u64>() else {
                continue;
            };
            if !inodes.contains(&inode) {
                continue;
            }
            let port = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if port(f[2]).is_some_and(|p| upstream.contains(&p)) {
                up += 1;
            } else if port(f[1]) == Some(listen) {
                cl += 1;
            }
        }
    }
    (up, cl)
}

/// `GET /metrics` from the admin listener; the body, or `None`.
pub fn scrape(admin: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The values of every series of metric `name` (exactly that name, any labels).
fn series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines().filter_map(move |l| {
        let rest = l.strip_prefix(name)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        l.rsplit(' ').next()?.parse::<f64>().ok()
    })
}

/// Sum of a metric's series (0 when absent).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    series(text, name).sum()
}

/// Largest of a metric's series (0 when absent).
pub fn metric_max(text: &str, name: &str) -> f64 {
    series(text, name).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_are_summed_by_exact_name() {
        let text =
            "# HELP x\nringgate_a{u=\"1\"} 2\nringgate_a{u=\"2\"} 3\nringgate_ab 7\nringgate_a 1\n";
        assert_eq!(metric_sum(text, "ringgate_a"), 6.0);
        assert_eq!(metric_max(text, "ringgate_a"), 3.0);
        assert_eq!(metric_sum(text, "ringgate_b"), 0.0);
    }
}
