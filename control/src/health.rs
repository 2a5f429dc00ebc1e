//! Active health checks: one prober thread per checked upstream, per process, never on a worker.
//!
//! A prober sends `GET <path>` to each endpoint in turn every interval (a fresh connection,
//! bounded by the timeout), feeds the results to a [`HealthTracker`] (consecutive thresholds),
//! and writes transitions to the upstream's [`HealthBoard`], which every core reads when picking.
//! For `protocol = "h2"` upstreams the probe is an HTTP/2 request, run on a small epoll runtime
//! of the prober's own: a GET, or with `grpc = true` a call of the gRPC health protocol
//! (`grpc.health.v1.Health/Check`), healthy only when the service answers `SERVING`.
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

/// Live boards by identity; each with its family (the identity without the endpoints) and its
/// endpoints, so a board for a changed endpoint list starts from what the previous one knew.
type Boards = Mutex<HashMap<String, (String, Vec<SocketAddr>, Weak<HealthBoard>)>>;

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
    h2: bool,
) -> Arc<HealthBoard> {
    // The TLS key changes with the CA, client certificate and name: a reload that changes them
    // gets a prober with the new settings.
    let family = format!("{name}|{hc:?}|{:?}|{h2}", tls.map(|t| t.key));
    let key = format!("{family}|{endpoints:?}");
    let mut map = boards().lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, (_, _, w)| w.strong_count() > 0);
    if let Some(b) = map.get(&key).and_then(|(_, _, w)| w.upgrade()) {
        return b;
    }
    let board = Arc::new(HealthBoard::new(endpoints.len()));
    // The endpoints list changed (discovery, or an edit): an endpoint that stayed keeps the
    // health its checks found, instead of starting healthy again.
    let previous = map
        .values()
        .filter(|(f, _, _)| *f == family)
        .find_map(|(_, eps, w)| w.upgrade().map(|b| (eps.clone(), b)));
    if let Some((old_eps, old)) = previous {
        for (i, ep) in endpoints.iter().enumerate() {
            if let Some(j) = old_eps.iter().position(|e| e == ep) {
                board.set(i, old.is_healthy(j));
            }
        }
    }
    map.insert(key, (family, endpoints.to_vec(), Arc::downgrade(&board)));
    let weak = Arc::downgrade(&board);
    let eps = endpoints.to_vec();
    let hc = hc.clone();
    let up = name.to_string();
    let tls = tls.cloned();
    let _ = std::thread::Builder::new()
        .name(format!("ringgate-hc-{name}"))
        .spawn(move || probe_loop(&up, &eps, &hc, tls.as_ref(), h2, &weak));
    board
}

fn probe_loop(
    name: &str,
    eps: &[SocketAddr],
    hc: &HealthCheckConfig,
    tls: Option<&UpstreamTls>,
    h2: bool,
    board: &Weak<HealthBoard>,
) {
    // HTTP/2 probes run on a runtime of this thread's own (epoll: a control thread needs no ring).
    let mut rt = if h2 {
        match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                eprintln!("ringgate: health: upstream {name}: no runtime for HTTP/2 probes: {e}");
                return;
            }
        }
    } else {
        None
    };
    let mut tracker = HealthTracker::new(
        eps.len(),
        HealthConfig {
            healthy_threshold: hc.healthy_threshold,
            unhealthy_threshold: hc.unhealthy_threshold,
            start_healthy: true,
        },
    );
    if let Some(b) = board.upgrade() {
        for i in 0..eps.len() {
            tracker.start_as(i, b.is_healthy(i));
        }
    }
    loop {
        for (i, ep) in eps.iter().enumerate() {
            let ok = match rt.as_mut() {
                Some(rt) => rt.block_on(probe_h2(*ep, hc, tls)).is_ok(),
                None => probe(*ep, hc, tls).is_ok(),
            };
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

/// One HTTP/2 probe: a GET answered 2xx or 3xx, or (`grpc`) a health check answered `SERVING`
/// with `grpc-status` 0, within the timeout.
async fn probe_h2(
    ep: SocketAddr,
    hc: &HealthCheckConfig,
    tls: Option<&UpstreamTls>,
) -> Result<(), String> {
    use ringgate_http::engine::h2probe::{probe_h2, ProbeRequest};
    let authority = hc.host.clone().unwrap_or_else(|| ep.to_string());
    let req = if hc.grpc {
        ProbeRequest {
            method: "POST",
            authority: &authority,
            path: "/grpc.health.v1.Health/Check",
            headers: &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("user-agent", "ringgate-health"),
            ],
            body: grpc_health_request(&hc.grpc_service).into(),
        }
    } else {
        ProbeRequest {
            method: "GET",
            authority: &authority,
            path: &hc.path,
            headers: &[("user-agent", "ringgate-health")],
            body: bytes::Bytes::new(),
        }
    };
    let a = probe_h2(ep, tls, &req, hc.timeout)
        .await
        .map_err(|e| e.to_string())?;
    if hc.grpc {
        if a.status != 200 || a.grpc_status != Some(0) {
            return Err(format!(
                "status {} grpc-status {:?}",
                a.status, a.grpc_status
            ));
        }
        match grpc_health_status(&a.body) {
            Some(1) => Ok(()),
            other => Err(format!("health status {other:?}, not SERVING (1)")),
        }
    } else if (200..400).contains(&a.status) {
        Ok(())
    } else {
        Err(format!("status {}", a.status))
    }
}

/// A gRPC-framed `HealthCheckRequest { service }`: the uncompressed-message flag, the length
/// (big-endian), then field 1 (length-delimited) unless the name is empty.
fn grpc_health_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(service.len() + 3);
    if !service.is_empty() {
        msg.push(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at the start of `b`: the value and its length.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The `status` (field 1) of the gRPC-framed `HealthCheckResponse` in `body`: 0 unknown,
/// 1 serving, 2 not serving, 3 service unknown. `None` when the body is not one (compressed,
/// cut short, malformed). An absent field is its default, 0.
fn grpc_health_status(body: &[u8]) -> Option<u64> {
    let (&flag, rest) = body.split_first()?;
    if flag != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let mut msg = rest.get(4..4 + len)?;
    let mut status = 0;
    while !msg.is_empty() {
        let (tag, n) = varint(msg)?;
        msg = &msg[n..];
        match tag & 7 {
            0 => {
                let (v, n) = varint(msg)?;
                msg = &msg[n..];
                if tag >> 3 == 1 {
                    status = v;
                }
            }
            1 => msg = msg.get(8..)?,
            2 => {
                let (l, n) = varint(msg)?;
                msg = msg.get(n + usize::try_from(l).ok()?..)?;
            }
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::{grpc_health_request, grpc_health_status};

    #[test]
    fn health_messages_are_framed_and_read() {
        assert_eq!(grpc_health_request(""), [0, 0, 0, 0, 0]);
        assert_eq!(
            grpc_health_request("svc"),
            [0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']
        );
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        // An empty message is status 0 (UNKNOWN); unknown fields are skipped.
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(
            grpc_health_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]),
            Some(1)
        );
        // Compressed, cut short or malformed: not an answer.
        for bad in [
            &[1u8, 0, 0, 0, 2, 0x08, 1][..],
            &[0, 0, 0, 0, 9, 0x08, 1],
            &[0, 0, 0, 0, 1, 0x08],
            &[0, 0, 0, 0, 2, 0x0f, 1],
            &[],
        ] {
            assert_eq!(grpc_health_status(bad), None, "{bad:?}");
        }
    }
}
