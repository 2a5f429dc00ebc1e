//! The admin API: health, readiness, metrics, the live config and routes, reloads.
//!
//! It runs on its own listener (loopback by default) and its own threads, never on a worker: a
//! scrape or a reload costs the data plane nothing but the workers' 50 ms tick publishing a copy
//! of their counters. One short-lived thread per admin connection (at most [`MAX_CONNS`] at once),
//! one request per connection, a 5 s read timeout: simple, and enough for probes and scrapers.
//! With a token configured every request needs `Authorization: Bearer <token>`, compared in
//! constant time. The API is described in `docs/admin-api.openapi.yaml`.

use crate::control::Control;
use ringgate_http::metrics::{render_prometheus, Registry};
use serde_json::json;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Admin connections served at once; more are answered 503 and closed.
pub const MAX_CONNS: usize = 16;

/// A running admin listener.
pub struct AdminServer {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    listener: TcpListener,
}

impl AdminServer {
    /// Binds `addr` and serves the admin API for `control`; `token` protects it when given.
    pub fn start(
        addr: SocketAddr,
        token: Option<String>,
        control: Arc<Control>,
    ) -> std::io::Result<Self> {
        Self::serve(TcpListener::bind(addr)?, token, control)
    }

    /// Serves the admin API on a listener bound beforehand (so that a busy admin port can fail
    /// the start before the gateway takes traffic).
    pub fn serve(
        listener: TcpListener,
        token: Option<String>,
        control: Arc<Control>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let l2 = listener.try_clone()?;
        let stop2 = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let token: Option<Arc<str>> = token.map(Into::into);
        std::thread::Builder::new()
            .name("ringgate-admin".into())
            .spawn(move || {
                for conn in l2.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut s) = conn else { continue };
                    if active.load(Ordering::Relaxed) >= MAX_CONNS {
                        let _ = respond(&mut s, 503, "application/json", br#"{"error":"busy"}"#);
                        continue;
                    }
                    active.fetch_add(1, Ordering::Relaxed);
                    let guard = Slot(active.clone());
                    let (c, t) = (control.clone(), token.clone());
                    // The slot is given back when the thread ends, even by a panic (or when
                    // the spawn fails and the closure, with the guard, is dropped).
                    let _ = std::thread::Builder::new()
                        .name("ringgate-admin-conn".into())
                        .spawn(move || {
                            let _slot = guard;
                            serve(s, &c, t.as_deref());
                        });
                }
            })?;
        Ok(Self {
            addr,
            stop,
            listener,
        })
    }

    /// Stops accepting admin connections and releases the port.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept, then let the socket go.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
    }
}

/// One admin connection's place under [`MAX_CONNS`].
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The whole request (head and any body) must arrive within this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

fn respond(s: &mut TcpStream, status: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    write_response(s, status, ctype, body, true)
}

/// Writes a response; without `with_body` (a HEAD request) the head announces the body's length
/// and the body is left out.
fn write_response(
    s: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let reason = ringgate_http::error::reason_phrase(status);
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    if with_body {
        s.write_all(body)?;
    }
    s.flush()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The head of one admin request.
struct AdminRequest {
    method: String,
    path: String,
    authorized: bool,
    /// The request body (at most 64 KiB is kept).
    body: Vec<u8>,
}

/// Largest admin request body kept (a purge names a key, a prefix or a tag).
const MAX_BODY: usize = 64 * 1024;

fn read_request(s: &mut TcpStream, token: Option<&str>) -> Option<AdminRequest> {
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    // Each read gets what is left of one overall deadline: a client trickling bytes cannot
    // hold its slot for longer than that.
    let arm = |s: &TcpStream| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        !left.is_zero() && s.set_read_timeout(Some(left)).is_ok()
    };
    let _ = s.set_write_timeout(Some(REQUEST_DEADLINE));
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        if !arm(s) {
            return None;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hs);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = req.method.unwrap_or("").to_string();
                let target = req.path.unwrap_or("/");
                let path = target.split('?').next().unwrap_or("/").to_string();
                let authorized = match token {
                    None => true,
                    Some(t) => req.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("authorization")
                            && h.value.len() > 7
                            && h.value[..7].eq_ignore_ascii_case(b"bearer ")
                            && ct_eq(h.value[7..].trim_ascii(), t.as_bytes())
                    }),
                };
                // Drain a small body (reload takes none) so the close does not reset the reply.
                let body_len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(0)
                    .min(1 << 20);
                let mut body: Vec<u8> = buf[head_len..].to_vec();
                let mut have = body.len();
                while have < body_len && arm(s) {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            have += n;
                            if body.len() < MAX_BODY {
                                body.extend_from_slice(&chunk[..n]);
                            }
                        }
                    }
                }
                body.truncate(body_len.min(MAX_BODY));
                return Some(AdminRequest {
                    method,
                    path,
                    authorized,
                    body,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => continue,
            _ => {
                let _ = respond(s, 400, "application/json", br#"{"error":"bad_request"}"#);
                return None;
            }
        }
    }
}

fn serve(mut s: TcpStream, c: &Control, token: Option<&str>) {
    let Some(req) = read_request(&mut s, token) else {
        return;
    };
    if !req.authorized {
        let head = "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"ringgate-admin\"\r\ncontent-type: application/json\r\ncontent-length: 24\r\nconnection: close\r\n\r\n{\"error\":\"unauthorized\"}";
        let _ = s.write_all(head.as_bytes());
        return;
    }
    let (status, ctype, body) = if req.path == "/cache/purge" && req.method == "POST" {
        crate::cachepurge::purge(&req.body)
    } else {
        route(c, &req.method, &req.path)
    };
    let _ = write_response(&mut s, status, ctype, &body, req.method != "HEAD");
}

const JSON: &str = "application/json";

fn json_body(v: serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(&v).unwrap_or_default();
    b.push(b'\n');
    b
}

fn route(c: &Control, method: &str, path: &str) -> (u16, &'static str, Vec<u8>) {
    let allowed: &[&str] = match path {
        "/healthz" | "/readyz" | "/metrics" | "/routes" | "/config" | "/upstreams" => {
            &["GET", "HEAD"]
        }
        "/config/reload" | "/cache/purge" => &["POST"],
        _ => {
            return (404, JSON, json_body(json!({"error": "not_found"})));
        }
    };
    if !allowed.contains(&method) {
        return (
            405,
            JSON,
            json_body(json!({"error": "method_not_allowed", "allow": allowed})),
        );
    }
    match path {
        "/healthz" => (200, JSON, json_body(json!({"status": "ok"}))),
        "/readyz" => {
            if c.is_ready() {
                (
                    200,
                    JSON,
                    json_body(json!({"ready": true, "status": "ready"})),
                )
            } else {
                // The admin API keeps serving through a drain, so a load balancer sees this.
                let why = if c.shutdown.is_stopping() {
                    "draining"
                } else {
                    "no_config"
                };
                (
                    503,
                    JSON,
                    json_body(json!({"ready": false, "status": why, "reason": why})),
                )
            }
        }
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_text(c).into_bytes(),
        ),
        "/config" => {
            let st = c.state();
            (
                200,
                JSON,
                json_body(json!({
                    "version": st.version,
                    "hash": format!("{:016x}", st.hash),
                    "loaded_at": st.loaded_at,
                    "source": c.source().describe(),
                    "reloads": {"ok": st.reloads_ok, "failed": st.reloads_failed},
                    "last_error": st.last_error,
                    "last_attempt": st.last_attempt,
                    "source_revision": st.source_revision,
                })),
            )
        }
        "/routes" => {
            let st = c.state();
            (
                200,
                JSON,
                json_body(json!({"version": st.version, "routes": st.raw.routes})),
            )
        }
        "/upstreams" => (200, JSON, json_body(upstreams_json(c))),
        "/config/reload" => match c.reload("admin API") {
            Ok(r) => (
                200,
                JSON,
                json_body(
                    json!({"result": "ok", "version": r.version, "epoch": r.epoch, "changed": r.changed}),
                ),
            ),
            Err(e) => (
                422,
                JSON,
                json_body(
                    json!({"result": "refused", "error": e, "live_version": c.state().version}),
                ),
            ),
        },
        _ => (404, JSON, json_body(json!({"error": "not_found"}))),
    }
}

fn upstreams_json(c: &Control) -> serde_json::Value {
    let st = c.state();
    let snap = c.snapshot();
    let workers = c.hub.collect(Duration::from_millis(500));
    let mut merged = ringgate_http::metrics::WorkerMetrics::default();
    for m in workers.iter().filter_map(|w| w.0.as_ref()) {
        merged.merge(m);
    }
    let discovered = c.discovery.status();
    let list: Vec<serde_json::Value> = st
        .raw
        .upstreams
        .iter()
        .map(|u| {
            let live = snap.upstreams.iter().find(|x| &*x.name == u.name.as_str());
            let addrs: Vec<String> = match live {
                Some(x) => x.endpoints.iter().map(|a| a.to_string()).collect(),
                None => u.endpoints.clone(),
            };
            let source = discovered.get(&u.name).map(|d| {
                json!({
                    "kind": u.discovery.name(),
                    "targets": if u.discovery == crate::config::discovery::DiscoveryKind::Etcd {
                        u.etcd_prefix.clone().into_iter().collect::<Vec<_>>()
                    } else {
                        u.endpoints.clone()
                    },
                    "answers": d.answers,
                    "changes": d.changes,
                    "errors": d.errors,
                    "last_error": d.last_error,
                    "last_success": d.last_success.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()),
                    "revision": d.revision,
                })
            });
            let id = Registry::with(|r| r.upstream(&u.name));
            let stats = merged.upstreams.get(id as usize).and_then(Option::as_ref);
            let (new, reused, cf, fails) = stats.map_or((0, 0, 0, 0), |s| {
                (s.connects, s.reused, s.connect_failures, s.failures)
            });
            let total = new + reused;
            let board = snap
                .upstreams
                .iter()
                .position(|x| &*x.name == u.name.as_str())
                .and_then(|i| snap.upstream_policies.get(i))
                .and_then(|p| p.health.clone());
            let (opened, half, closed) = stats.map_or((0, 0, 0), |s| s.breaker_transitions);
            let open_cores = stats.map_or(0, |s| s.breaker_open);
            json!({
                "name": u.name,
                "discovery": source.unwrap_or_else(|| json!({"kind": "static"})),
                "endpoints": addrs.iter().enumerate().map(|(i, e)| json!({
                    "address": e,
                    "health": match &board {
                        None => "unchecked",
                        Some(b) if b.is_healthy(i) => "healthy",
                        Some(_) => "unhealthy",
                    },
                })).collect::<Vec<_>>(),
                "ejected_endpoints": stats.map_or(0, |s| s.ejected),
                "breaker": {
                    "configured": u.circuit_breaker.is_some(),
                    "open_on_cores": open_cores,
                    "transitions": {"open": opened, "half_open": half, "closed": closed},
                },
                "connections": {
                    "new": new,
                    "reused": reused,
                    "reuse_ratio": if total > 0 { reused as f64 / total as f64 } else { 0.0 },
                    "connect_failures": cf,
                    "failures": fails,
                },
            })
        })
        .collect();
    json!({"version": st.version, "upstreams": list,
        "pool": {"idle": merged.pool_idle, "reused": merged.pool.reused, "missed": merged.pool.missed, "evicted": merged.pool.evicted}})
}

/// The Prometheus text of the whole process.
pub fn metrics_text(c: &Control) -> String {
    let workers = c.hub.collect(Duration::from_millis(500));
    let mut out = String::with_capacity(16 * 1024);
    {
        let reg = Registry::global().lock().unwrap_or_else(|p| p.into_inner());
        render_prometheus(&mut out, &reg, &workers);
    }
    let st = c.state();
    let _ = writeln!(
        out,
        "# HELP ringgate_config_reloads_total Config reloads, by result.\n# TYPE ringgate_config_reloads_total counter\nringgate_config_reloads_total{{result=\"ok\"}} {}\nringgate_config_reloads_total{{result=\"failed\"}} {}",
        st.reloads_ok, st.reloads_failed
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_config_info The live config.\n# TYPE ringgate_config_info gauge\nringgate_config_info{{version=\"{}\",hash=\"{:016x}\"}} 1",
        escape_label(&st.version),
        st.hash
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_config_source_revision The config source's revision of the live config (etcd; -1 for a file).\n# TYPE ringgate_config_source_revision gauge\nringgate_config_source_revision {}",
        st.source_revision.unwrap_or(-1)
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_config_loaded_timestamp_seconds When the live config went live.\n# TYPE ringgate_config_loaded_timestamp_seconds gauge\nringgate_config_loaded_timestamp_seconds {}",
        st.loaded_at
    );
    render_rate_limits(&mut out, &c.snapshot());
    render_discovery(&mut out, c);
    if let Some(l) = &c.access_log {
        let _ = writeln!(
            out,
            "# HELP ringgate_access_log_lines_total Access log lines written.\n# TYPE ringgate_access_log_lines_total counter\nringgate_access_log_lines_total {}\n# HELP ringgate_access_log_dropped_total Access log lines dropped because the log thread fell behind.\n# TYPE ringgate_access_log_dropped_total counter\nringgate_access_log_dropped_total {}",
            l.lines_written(),
            l.dropped_total()
        );
    }
    let _ = writeln!(
        out,
        "# HELP ringgate_uptime_seconds Time since the process started.\n# TYPE ringgate_uptime_seconds gauge\nringgate_uptime_seconds {}",
        c.hub.uptime().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_ready Whether the gateway is ready (1) or draining (0).\n# TYPE ringgate_ready gauge\nringgate_ready {}",
        u8::from(c.is_ready())
    );
    out
}

/// The rate-limit section of `/metrics`: decisions per limit, and the reconciler's view of its
/// store.
fn render_rate_limits(out: &mut String, snap: &crate::snapshot::Snapshot) {
    let Some(svc) = &snap.limiter else {
        return;
    };
    let st = svc.stats();
    let _ = writeln!(
        out,
        "# HELP ringgate_ratelimit_decisions_total Requests judged by a rate limit, by result.\n# TYPE ringgate_ratelimit_decisions_total counter"
    );
    for l in &snap.limits.limits {
        let c = st.counters.get(&l.id).copied().unwrap_or_default();
        for (result, v) in [
            ("allowed", c.allowed),
            ("limited", c.limited),
            ("untracked", c.overflow),
        ] {
            let _ = writeln!(
                out,
                "ringgate_ratelimit_decisions_total{{limit=\"{}\",result=\"{result}\"}} {v}",
                l.name
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP ringgate_ratelimit_store_up Whether the last reconcile tick reached the rate-limit store.\n# TYPE ringgate_ratelimit_store_up gauge\nringgate_ratelimit_store_up{{store=\"{}\"}} {}",
        st.store,
        u8::from(st.store_up)
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_ratelimit_store_errors_total Reconcile ticks whose sync with the store failed.\n# TYPE ringgate_ratelimit_store_errors_total counter\nringgate_ratelimit_store_errors_total {}",
        st.store_errors
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_ratelimit_syncs_total Reconcile ticks that synced keys with the store.\n# TYPE ringgate_ratelimit_syncs_total counter\nringgate_ratelimit_syncs_total {}",
        st.syncs
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_ratelimit_synced_keys_total Keys synced with the store, summed over ticks.\n# TYPE ringgate_ratelimit_synced_keys_total counter\nringgate_ratelimit_synced_keys_total {}",
        st.synced_keys
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_ratelimit_store_commands_total Commands sent to Redis.\n# TYPE ringgate_ratelimit_store_commands_total counter\nringgate_ratelimit_store_commands_total {}",
        st.store_commands
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_ratelimit_keys Rate-limit keys tracked, by where.\n# TYPE ringgate_ratelimit_keys gauge\nringgate_ratelimit_keys{{where=\"reconciler\"}} {}\nringgate_ratelimit_keys{{where=\"cores\"}} {}",
        st.node_keys, st.core_keys
    );
    let _ = writeln!(
        out,
        "# HELP ringgate_ratelimit_expired_keys_total Keys forgotten after idling.\n# TYPE ringgate_ratelimit_expired_keys_total counter\nringgate_ratelimit_expired_keys_total {}",
        st.expired
    );
}

/// Dynamic upstreams' sources: live endpoints, answers, changes and errors, the last success
/// and the source's revision.
fn render_discovery(out: &mut String, c: &Control) {
    let status = c.discovery.status();
    if status.is_empty() {
        return;
    }
    let mut names: Vec<&String> = status.keys().collect();
    names.sort();
    let series: [(&str, &str, &str); 6] = [
        (
            "ringgate_discovery_endpoints",
            "gauge",
            "Endpoints of a dynamic upstream in the live set.",
        ),
        (
            "ringgate_discovery_answers_total",
            "counter",
            "Good answers of a dynamic upstream's source (changed or not).",
        ),
        (
            "ringgate_discovery_changes_total",
            "counter",
            "Times a dynamic upstream's endpoint set changed.",
        ),
        (
            "ringgate_discovery_errors_total",
            "counter",
            "Failed or empty answers (the last good endpoints stay).",
        ),
        (
            "ringgate_discovery_last_success_timestamp_seconds",
            "gauge",
            "When the source last answered well (0: never).",
        ),
        (
            "ringgate_discovery_revision",
            "gauge",
            "The source's revision of the live set (etcd; -1 when the source has none).",
        ),
    ];
    for (metric, kind, help) in series {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for name in &names {
            let s = &status[*name];
            let v = match metric {
                "ringgate_discovery_endpoints" => s.endpoints as f64,
                "ringgate_discovery_answers_total" => s.answers as f64,
                "ringgate_discovery_changes_total" => s.changes as f64,
                "ringgate_discovery_errors_total" => s.errors as f64,
                "ringgate_discovery_last_success_timestamp_seconds" => s
                    .last_success
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64()),
                _ => s.revision.map_or(-1.0, |r| r as f64),
            };
            let source = s.source.map_or("unknown", |k| k.name());
            let _ = writeln!(
                out,
                "{metric}{{upstream=\"{}\",source=\"{source}\"}} {v}",
                escape_label(name)
            );
        }
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
