//! nginx's config for a tax rung: the topology's routes as nginx locations, one per distinct path
//! match (exact `=`, a prefix as `= /p` plus `/p/` for ringgate's segment boundary, a template
//! as an anchored regex). A location whose requests can only go one way proxies straight to its
//! upstream; otherwise a `map` on `host|method|uri|headers` walks the routes that can match
//! there, in ringgate's precedence order, and names the upstream (none: 404). Keep-alive pools
//! to the upstreams, the client's `Host`, bodies streamed both ways (`proxy_buffering` and
//! `proxy_request_buffering` off), a route's body limit on its location (where several routes
//! share a location, the most permissive of theirs; unlimited when one has none, as ringgate).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::super::topology::{replicas_of, PathMatch, Route, Topology};
use super::super::Features;
use super::{
    matched_headers, may_overlap, path_regex, ranked, regex_escape, unconditional_within, PeerSetup,
};

/// The routes that can take a request at location `l`, best first, cut after the first that
/// takes every request there.
fn candidates<'a>(ranked: &[&'a Route], l: &PathMatch) -> Vec<&'a Route> {
    let mut out = Vec::new();
    for r in ranked.iter().filter(|r| may_overlap(&r.path, l)) {
        out.push(*r);
        if unconditional_within(r, l) {
            break;
        }
    }
    out
}

/// The `map` key regex of route `r` at location `l`.
fn map_pattern(r: &Route, l: &PathMatch, headers: &[String]) -> String {
    let any = "[^|]*".to_string();
    let alt = |items: Vec<String>| format!("({})", items.join("|"));
    let host = if r.hosts.is_empty() {
        any.clone()
    } else {
        alt(r
            .hosts
            .iter()
            .map(|h| match h.strip_prefix("*.") {
                Some(s) => format!("[^|]+\\.{}", regex_escape(&s.to_ascii_lowercase())),
                None => regex_escape(&h.to_ascii_lowercase()),
            })
            .collect())
    };
    let method = if r.methods.is_empty() {
        any.clone()
    } else {
        alt(r.methods.iter().map(|m| m.to_string()).collect())
    };
    let path = if super::contains(&r.path, l) {
        any.clone()
    } else {
        path_regex(&r.path)
    };
    let mut p = format!("~^{host}\\|{method}\\|{path}");
    for h in headers {
        let v = r
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(h))
            .map_or(any.clone(), |(_, v)| regex_escape(v));
        let _ = write!(p, "\\|{v}");
    }
    p.push('$');
    p
}

/// nginx's selectors for path match `m`.
fn selectors(m: &PathMatch) -> Vec<String> {
    match m {
        PathMatch::Exact(p) => vec![format!("= {p}")],
        PathMatch::Prefix(p) if p.ends_with('/') => vec![p.clone()],
        PathMatch::Prefix(p) => vec![format!("= {p}"), format!("{p}/")],
        PathMatch::Template(_) => vec![format!("~ \"^{}$\"", path_regex(m))],
    }
}

/// The maps and locations of the route table.
fn routing(t: &Topology) -> (String, String) {
    let ranked = ranked(t);
    let headers = matched_headers(t);
    let mut key = String::from("$host|$request_method|$uri");
    for h in &headers {
        let _ = write!(key, "|$http_{}", h.replace('-', "_"));
    }
    let (mut maps, mut locations) = (String::new(), String::new());
    let mut seen: Vec<String> = Vec::new();
    for (i, l) in ranked.iter().map(|r| &r.path).enumerate() {
        let sels: Vec<String> = selectors(l)
            .into_iter()
            .filter(|s| !seen.contains(s))
            .collect();
        if sels.is_empty() {
            continue;
        }
        seen.extend(sels.iter().cloned());
        let cands = candidates(&ranked, l);
        let mut body = String::new();
        let limits: Option<Vec<u64>> = cands.iter().map(|r| r.max_body_bytes).collect();
        if let Some(max) = limits.and_then(|v| v.into_iter().max()) {
            let _ = writeln!(body, "      client_max_body_size {max};");
        }
        match cands.as_slice() {
            [only] if unconditional_within(only, l) => {
                let _ = writeln!(
                    body,
                    "      proxy_pass http://{};",
                    t.upstreams[only.upstream]
                );
            }
            _ => {
                let _ = writeln!(maps, "  map \"{key}\" $rg_up{i} {{\n    default \"\";");
                for r in &cands {
                    let pattern = map_pattern(r, l, &headers);
                    let _ = writeln!(maps, "    \"{pattern}\" {};", t.upstreams[r.upstream]);
                }
                maps.push_str("  }\n");
                let _ = writeln!(
                    body,
                    "      if ($rg_up{i} = \"\") {{ return 404; }}\n      proxy_pass http://$rg_up{i};"
                );
            }
        }
        for s in sels {
            let _ = writeln!(locations, "    location {s} {{\n{body}    }}");
        }
    }
    if !seen.iter().any(|s| s == "/") {
        locations.push_str("    location / { return 404; }\n");
    }
    (maps, locations)
}

/// The upstream blocks: keep-alive pools; passive health only with resilience (nginx's own
/// default, one failure marks a server down, is turned off otherwise).
fn upstreams(t: &Topology, endpoints: &[SocketAddr], f: Features) -> String {
    let health = if f.resilience {
        "max_fails=3 fail_timeout=10s"
    } else {
        "max_fails=0"
    };
    let mut o = String::new();
    for (u, name) in t.upstreams.iter().enumerate() {
        let _ = writeln!(o, "  upstream {name} {{");
        for a in replicas_of(t, endpoints, u) {
            let _ = writeln!(o, "    server {a} {health};");
        }
        o.push_str("    keepalive 64;\n    keepalive_requests 1000000;\n  }\n");
    }
    o
}

/// The nginx.conf of `t` at a rung with features `f`: listening on `listen`, upstream `u`'s
/// replicas at `endpoints[u * replicas ..]`, files under `s.dir`.
pub fn conf(
    t: &Topology,
    listen: SocketAddr,
    endpoints: &[SocketAddr],
    f: Features,
    s: &PeerSetup,
) -> String {
    let d = s.dir.display();
    let mut o = format!(
        "# nginx for the tax ladder (seed {}, features {f:?}); generated by ringbench tax.\n\
         worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         \x20 keepalive_requests 1000000;\n  client_max_body_size 0;\n  proxy_http_version 1.1;\n\
         \x20 proxy_set_header Connection \"\";\n  proxy_set_header Host $http_host;\n\
         \x20 proxy_buffering off;\n  proxy_request_buffering off;\n  proxy_read_timeout 60s;\n",
        t.seed
    );
    if f.observe {
        let _ = writeln!(
            o,
            "  log_format tax '$remote_addr [$time_iso8601] \"$request\" $status $body_bytes_sent \
             $request_time $upstream_addr';\n  access_log {} tax buffer=64k flush=1s;",
            s.access_log.display()
        );
    } else {
        o.push_str("  access_log off;\n");
    }
    if f.resilience {
        o.push_str(
            "  proxy_next_upstream error timeout http_502 http_503 http_504;\n  proxy_next_upstream_tries 2;\n",
        );
    } else {
        o.push_str("  proxy_next_upstream off;\n");
    }
    if f.limit {
        let _ = writeln!(
            o,
            "  limit_req_zone $binary_remote_addr zone=tax:10m rate={}r/s;\n  limit_req_status 429;",
            s.limit_rps
        );
    }
    o.push_str(&upstreams(t, endpoints, f));
    let (maps, locations) = routing(t);
    o.push_str(&maps);
    o.push_str("  server {\n");
    if f.tls {
        let _ = writeln!(
            o,
            "    listen {listen} ssl backlog=4096;\n    ssl_certificate {};\n    ssl_certificate_key {};\n\
             \x20   ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:tax:10m;",
            s.tls_cert.display(),
            s.tls_key.display()
        );
    } else {
        let _ = writeln!(o, "    listen {listen} backlog=4096;");
    }
    if f.limit {
        // A second's worth of burst, taken at once: the limit refuses only past the rate.
        let _ = writeln!(o, "    limit_req zone=tax burst={} nodelay;", s.limit_rps);
    }
    if f.observe {
        o.push_str("    location = /nginx_status { stub_status; access_log off; }\n");
    }
    o.push_str(&locations);
    o.push_str("  }\n}\n");
    o
}

/// Writes `nginx.conf` into `s.dir` (with the temp folders nginx wants) and returns its path.
pub fn write(
    t: &Topology,
    listen: SocketAddr,
    endpoints: &[SocketAddr],
    f: Features,
    s: &PeerSetup,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(&s.dir)?;
    let file = s.dir.join("nginx.conf");
    std::fs::write(&file, conf(t, listen, endpoints, f, s))?;
    Ok(file)
}

/// The arguments that run `conf` in the foreground with its prefix in `dir`.
pub fn args(dir: &Path, conf: &Path) -> Vec<String> {
    vec![
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        dir.join("nginx-error.log").display().to_string(),
        "-c".into(),
        conf.display().to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tax::topology;

    #[test]
    fn a_location_with_several_routes_maps_them_in_precedence_order() {
        let t = topology::generate(topology::DEFAULT_SEED, 2, 1);
        let (maps, locations) = routing(&t);
        // The item template: the tenant route (priority 20, header) first, then reads, then
        // writes, then the catch-all prefix route of the service.
        let item = "location ~ \"^/svc00/items/[^/]+$\"";
        assert!(locations.contains(item), "{locations}");
        let tenant = maps
            .find("[^|]*\\|[^|]*\\|[^|]*\\|tenant-")
            .unwrap_or(usize::MAX);
        let get = maps
            .find("[^|]*\\|(GET|HEAD)\\|[^|]*\\|[^|]*$")
            .unwrap_or(0);
        assert!(tenant < get, "{maps}");
        // Prefixes keep ringgate's segment boundary: `= /svc00` and `/svc00/`, not `/svc00`.
        assert!(locations.contains("location = /svc00 {"));
        assert!(locations.contains("location /svc00/ {"));
        assert!(!locations.contains("location /svc00 {"));
        assert!(locations.contains("location / { return 404; }"));
    }
}
