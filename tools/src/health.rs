//! Active health checks: one prober thread per checked upstream, per process, never on a worker.
//!
//! A prober sends `GET <path>` to each endpoint in turn every interval (a fresh connection,
//! bounded by the timeout), feeds the results to a [`HealthTracker`] (consecutive thresholds),
//! and writes transitions to the upstream's [`HealthBoard`], which every core reads when picking.
//! Boards are shared by identity (upstream name, endpoints, check settings): a reload that leaves
//! an upstream's checks alone keeps its board and its prober; a prober whose board no snapshot
//! holds any more ends by itself (it holds only a weak reference).

use crate::config::HealthCheckConfig;
use ringgate_http::gateway::UpstreamTls;
use ringgate_http::resilience::HealthBoard;
use ringgate_policies::balance::{HealthConfig, HealthTracker, Transition};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

type Boards = Mutex<HashMap<String, Weak<HealthBoard>>>;

fn boards() -> &'static Boards {
    static B: OnceLock<Boards> = OnceLock::new();
    B.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The health board of upstream `name` checked as `hc`, with a prober running for it.
pub fn board_for(
    name: &str,
    endpoints: &[SocketAddr],
    hc: &HealthCheckConfig,
    tls: Option<&UpstreamTls>,
) -> Arc<HealthBoard> {
    let key = format!(
        "{name}|{endpoints:?}|{hc:?}|{:?}",
        tls.map(|t| &t.server_name)
    );
    let mut map = boards().lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(b) = map.get(&key).and_then(Weak::upgrade) {
        return b;
    }
    let board = Arc::new(HealthBoard::new(endpoints.len()));
    map.insert(key, Arc::downgrade(&board));
    let weak = Arc::downgrade(&board);
    let eps = endpoints.to_vec();
    let hc = hc.clone();
    let up = name.to_string();
    let tls = tls.cloned();
    let _ = std::thread::Builder::new()
        .name(format!("ringgate-hc-{name}"))
        .spawn(move || probe_loop(&up, &eps, &hc, tls.as_ref(), &weak));
    board
}

fn probe_loop(
    name: &str,
    eps: &[SocketAddr],
    hc: &HealthCheckConfig,
    tls: Option<&UpstreamTls>,
    board: &Weak<HealthBoard>,
) {
    let mut tracker = HealthTracker::new(
        eps.len(),
        HealthConfig {
            healthy_threshold: hc.healthy_threshold,
            unhealthy_threshold: hc.unhealthy_threshold,
            start_healthy: true,
        },
    );
    loop {
        for (i, ep) in eps.iter().enumerate() {
            let ok = probe(*ep, hc, tls).is_ok();
            let Some(b) = board.upgrade() else { return };
            match tracker.record(i, ok) {
                Some(Transition::BecameUnhealthy) => {
                    b.set(i, false);
                    eprintln!("ringgate: health: upstream {name} endpoint {ep} is unhealthy");
                }
                Some(Transition::BecameHealthy) => {
                    b.set(i, true);
                    eprintln!("ringgate: health: upstream {name} endpoint {ep} is healthy again");
                }
                None => {}
            }
        }
        // Sleep in short steps so a dropped board ends the prober promptly.
        let mut left = hc.interval;
        while !left.is_zero() {
            if board.strong_count() == 0 {
                return;
            }
            let step = left.min(Duration::from_millis(100));
            std::thread::sleep(step);
            left -= step;
        }
    }
}

/// One probe: a 2xx or 3xx status line within the timeout is a success. Over TLS (the
/// upstream's own settings: CA, server name, client certificate) when the upstream has it.
fn probe(ep: SocketAddr, hc: &HealthCheckConfig, tls: Option<&UpstreamTls>) -> Result<(), String> {
    let s = TcpStream::connect_timeout(&ep, hc.timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(hc.timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(hc.timeout))
        .map_err(|e| e.to_string())?;
    match tls {
        None => ask(s, ep, hc),
        Some(t) => {
            let conn = rustls::ClientConnection::new(t.config.clone(), t.server_name.clone())
                .map_err(|e| e.to_string())?;
            ask(rustls::StreamOwned::new(conn, s), ep, hc)
        }
    }
}

/// Sends the probe request on `s` and judges the status line.
fn ask(mut s: impl Read + Write, ep: SocketAddr, hc: &HealthCheckConfig) -> Result<(), String> {
    let host = hc.host.clone().unwrap_or_else(|| ep.to_string());
    write!(
        s,
        "GET {} HTTP/1.1\r\nhost: {host}\r\nuser-agent: ringgate-health\r\nconnection: close\r\n\r\n",
        hc.path
    )
    .map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut buf = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..]).map_err(|e| e.to_string())?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = &buf[..n];
    if line.len() >= 12 && line.starts_with(b"HTTP/1.") && (line[9] == b'2' || line[9] == b'3') {
        Ok(())
    } else {
        Err(format!("bad answer {:?}", String::from_utf8_lossy(line)))
    }
}
