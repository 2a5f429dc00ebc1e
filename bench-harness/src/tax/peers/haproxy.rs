//! HAProxy's config for a tax rung: one frontend whose `use_backend` rules are the topology's
//! routes in ringgate's precedence order (HAProxy takes the first rule that matches), each a
//! conjunction of ACLs on path (plain `path`/`path_beg` where they suffice, `path_reg` for
//! templates), host (the `Host` header without its port, lowercased), method and headers; one
//! backend per upstream, round-robin over its replicas with idle connections reused
//! (`http-reuse always`). HAProxy streams bodies both ways by default; a route's body limit is a
//! `Content-Length` check (a chunked upload past it is not refused, unlike ringgate).
//!
//! Features: `jwt_verify` selected by the token's `kid` plus an `exp` check (auth), a stick
//! table of request rates per source address (limit), `retries`/`retry-on` with `redispatch`
//! and `observe layer7` health (resilience), an HTTP log line per request to stdout and the
//! Prometheus exporter (observe), and `bind ... ssl crt` on a PEM holding the certificate and
//! its key (tls; [`write`] concatenates the two files the rung is given).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::super::topology::{replicas_of, PathMatch, Route, Topology};
use super::super::Features;
use super::{path_regex, ranked, regex_escape, PeerSetup};

/// The ACL lines of route `i` and the names its rule joins (path first: the most selective).
fn route_acls(i: usize, r: &Route) -> (String, Vec<String>) {
    let mut o = String::new();
    let mut names = vec![format!("r{i}_path")];
    match &r.path {
        PathMatch::Exact(p) => {
            let _ = writeln!(o, "  acl r{i}_path path {p}");
        }
        PathMatch::Prefix(p) if p.ends_with('/') => {
            let _ = writeln!(o, "  acl r{i}_path path_beg {p}");
        }
        PathMatch::Prefix(p) => {
            // Two lines of one ACL are alternatives: the prefix itself, or it and a `/`.
            let _ = writeln!(o, "  acl r{i}_path path {p}\n  acl r{i}_path path_beg {p}/");
        }
        PathMatch::Template(_) => {
            let _ = writeln!(o, "  acl r{i}_path path_reg ^{}$", path_regex(&r.path));
        }
    }
    if !r.hosts.is_empty() {
        let wild = r.hosts.iter().any(|h| h.starts_with("*."));
        let list: Vec<String> = r
            .hosts
            .iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix("*.") {
                    Some(s) => format!("^[^.]+(\\.[^.]+)*\\.{}$", regex_escape(s)),
                    None if wild => format!("^{}$", regex_escape(&h)),
                    None => h,
                }
            })
            .collect();
        let how = if wild { "reg" } else { "str" };
        let _ = writeln!(
            o,
            "  acl r{i}_host var(txn.host) -m {how} {}",
            list.join(" ")
        );
        names.push(format!("r{i}_host"));
    }
    if !r.methods.is_empty() {
        let _ = writeln!(o, "  acl r{i}_method method {}", r.methods.join(" "));
        names.push(format!("r{i}_method"));
    }
    for (j, (n, v)) in r.headers.iter().enumerate() {
        let _ = writeln!(o, "  acl r{i}_h{j} req.fhdr({n}) -m str {v}");
        names.push(format!("r{i}_h{j}"));
    }
    (o, names)
}

/// JWT checks: every request not on an anonymous route needs a bearer token whose `kid` names a
/// configured key, whose signature verifies with it, whose `exp` is in the future, and whose
/// `iss` and `aud` are the configured ones when given. (The key
/// path goes in unquoted: HAProxy 2.6 keeps quotes in converter arguments as part of the path.)
///
/// Whether a route is anonymous goes by the route the request is routed to (`txn.route`, set by
/// [`routing`] in ringgate's precedence), never by every route whose conditions it meets: a
/// public catch-all must not open the authenticated routes that outrank it.
fn auth(s: &PeerSetup, ids: &[String]) -> String {
    let mut o = String::new();
    let anon: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| s.jwt.anonymous_routes.contains(id))
        .map(|(i, _)| i.to_string())
        .collect();
    if !anon.is_empty() {
        let _ = writeln!(
            o,
            "  http-request set-var(txn.anon) bool(true) if {{ var(txn.route) -m int {} }}",
            anon.join(" ")
        );
    }
    let authed = "!{ var(txn.anon) -m bool }";
    let _ = writeln!(
        o,
        "  http-request set-var(txn.kid) http_auth_bearer,jwt_header_query('$.kid') if {authed}"
    );
    for k in &s.jwt.keys {
        let _ = writeln!(
            o,
            "  http-request set-var(txn.jwt) http_auth_bearer,jwt_verify({},{}) if {authed} {{ var(txn.kid) -m str {} }}",
            k.alg, k.key, k.kid
        );
    }
    let _ = writeln!(
        o,
        "  http-request set-var(txn.exp) http_auth_bearer,jwt_payload_query('$.exp','int') if {authed}\n\
         \x20 http-request set-var(txn.now) date\n\
         \x20 http-request set-var(txn.left) var(txn.exp),sub(txn.now) if {authed}\n\
         \x20 http-request deny deny_status 401 if {authed} !{{ var(txn.jwt) -m int 1 }}\n\
         \x20 http-request deny deny_status 401 if {authed} !{{ var(txn.left) -m int gt 0 }}"
    );
    for (claim, want) in [("iss", &s.jwt.issuer), ("aud", &s.jwt.audience)] {
        if let Some(v) = want {
            let _ = writeln!(
                o,
                "  http-request deny deny_status 401 if {authed} !{{ http_auth_bearer,jwt_payload_query('$.{claim}') -m str {v} }}"
            );
        }
    }
    o
}

/// The frontend's routing: the host variable, ACLs, body limits and `use_backend` rules.
fn routing(t: &Topology, f: Features, s: &PeerSetup) -> String {
    let ranked = ranked(t);
    let mut o = String::new();
    if t.routes.iter().any(|r| !r.hosts.is_empty()) {
        o.push_str("  http-request set-var(txn.host) req.fhdr(host),field(1,:),lower\n");
    }
    let mut conds = Vec::new();
    for (i, r) in ranked.iter().enumerate() {
        let (acls, names) = route_acls(i, r);
        o.push_str(&acls);
        conds.push(names);
    }
    // The route a request takes: the first in precedence order whose conditions it meets,
    // decided once; limits, auth and the backend all go by it.
    for (i, names) in conds.iter().enumerate() {
        let _ = writeln!(
            o,
            "  http-request set-var(txn.route) int({i}) if !{{ var(txn.route) -m found }} {}",
            names.join(" ")
        );
    }
    if f.auth {
        let ids: Vec<String> = ranked.iter().map(|r| r.id.clone()).collect();
        o.push_str(&auth(s, &ids));
    }
    for (i, r) in ranked.iter().enumerate() {
        if let Some(max) = r.max_body_bytes {
            let _ = writeln!(
                o,
                "  http-request deny deny_status 413 if {{ var(txn.route) -m int {i} }} {{ req.hdr_val(content-length) gt {max} }}"
            );
        }
    }
    for (i, r) in ranked.iter().enumerate() {
        let _ = writeln!(
            o,
            "  use_backend {} if {{ var(txn.route) -m int {i} }}",
            t.upstreams[r.upstream]
        );
    }
    o.push_str("  default_backend not_found\n");
    o
}

fn backends(t: &Topology, endpoints: &[SocketAddr], f: Features) -> String {
    let mut o = String::from("backend not_found\n  http-request return status 404\n");
    for (u, name) in t.upstreams.iter().enumerate() {
        let _ = writeln!(o, "backend {name}\n  balance roundrobin");
        let server_opts = if f.resilience {
            o.push_str(
                "  retries 2\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout 502 503 504\n\
                 \x20 option httpchk GET /healthz\n",
            );
            " check inter 2s observe layer7 error-limit 10 on-error mark-down"
        } else {
            o.push_str("  retries 0\n");
            ""
        };
        for (j, a) in replicas_of(t, endpoints, u).iter().enumerate() {
            let _ = writeln!(o, "  server r{j} {a}{server_opts}");
        }
    }
    o
}

/// The PEM HAProxy binds with (certificate then key) for a TLS rung, in `s.dir`.
pub fn tls_pem(s: &PeerSetup) -> PathBuf {
    s.dir.join("haproxy-tls.pem")
}

/// The haproxy.cfg of `t` at a rung with features `f` (see [`super::nginx::conf`] for the
/// addresses).
pub fn conf(
    t: &Topology,
    listen: SocketAddr,
    endpoints: &[SocketAddr],
    f: Features,
    s: &PeerSetup,
) -> String {
    let mut o = format!(
        "# HAProxy for the tax ladder (seed {}, features {f:?}); generated by ringbench tax.\n\
         global\n  nbthread 1\n  maxconn 8000\n",
        t.seed
    );
    if f.observe {
        o.push_str("  log stdout format raw local0\n");
    }
    o.push_str(
        "defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n  timeout connect 5s\n\
         \x20 timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 60s\n",
    );
    if f.observe {
        o.push_str("  log global\n  option httplog\n");
    }
    o.push_str("frontend fe\n");
    if f.tls {
        let _ = writeln!(o, "  bind {listen} ssl crt {}", tls_pem(s).display());
    } else {
        let _ = writeln!(o, "  bind {listen}");
    }
    if f.observe {
        o.push_str("  http-request use-service prometheus-exporter if { path /haproxy-metrics }\n");
    }
    if f.limit {
        let _ = writeln!(
            o,
            "  stick-table type ip size 100k expire 10s store http_req_rate(1s)\n\
             \x20 http-request track-sc0 src\n\
             \x20 http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {} }}",
            s.limit_rps
        );
    }
    o.push_str(&routing(t, f, s));
    o.push_str(&backends(t, endpoints, f));
    o
}

/// Writes `haproxy.cfg` (and for TLS the combined PEM) into `s.dir`; returns the config's path.
pub fn write(
    t: &Topology,
    listen: SocketAddr,
    endpoints: &[SocketAddr],
    f: Features,
    s: &PeerSetup,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(&s.dir)?;
    if f.tls {
        let mut pem = std::fs::read_to_string(&s.tls_cert)?;
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(&std::fs::read_to_string(&s.tls_key)?);
        std::fs::write(tls_pem(s), pem)?;
    }
    let file = s.dir.join("haproxy.cfg");
    std::fs::write(&file, conf(t, listen, endpoints, f, s))?;
    Ok(file)
}

/// The arguments that run `conf` in the foreground.
pub fn args(conf: &Path) -> Vec<String> {
    vec!["-f".into(), conf.display().to_string(), "-db".into()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tax::topology;

    #[test]
    fn rules_follow_precedence_and_prefixes_keep_segment_boundaries() {
        let t = topology::generate(topology::DEFAULT_SEED, 2, 1);
        let s = PeerSetup::default();
        let c = conf(
            &t,
            "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
            &topology::fixed_endpoints(&t, 2000),
            Features::default(),
            &s,
        );
        let first = c.find("set-var(txn.route)").unwrap_or(0);
        // The tenant routes (priority 20) come first; their header is part of the rule; the
        // first route that matches is the one taken.
        assert!(
            c[first..].starts_with(
                "set-var(txn.route) int(0) if !{ var(txn.route) -m found } r0_path r0_h0"
            ),
            "{c}"
        );
        assert!(c.contains("use_backend svc00 if { var(txn.route) -m int 0 }"));
        assert!(c.contains("acl r0_path path /svc00\n  acl r0_path path_beg /svc00/\n"));
        assert!(c.contains("path_reg ^/svc00/items/[^/]+$"));
        assert!(c.contains("retries 0"));
        assert!(!c.contains("jwt_verify"));
    }
}
