//! A naive reference router: every route checked in turn, straight from the spec, strings
//! allocated freely. Written independently of the table (no shared code) to state the
//! matching and precedence rules as plainly as possible; `routing_props.rs` checks the
//! table against it and `benches/route_lookup.rs` uses it as the linear baseline. Both
//! include this file with `#[path]`; as its own test target it checks itself on a few
//! hand-worked cases.
#![allow(dead_code, clippy::unwrap_used)]

use std::ops::Range;

use ringgate_policies::routing::{HeaderMatch, HostMatch, PathMatch, Rewrite, RouteSpec};

/// The naive router's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaiveMatch {
    /// Position of the winning route.
    pub index: usize,
    /// Captures in template order: name and range into the path.
    pub captures: Captures,
}

/// Captures in template order: name and range into the path.
type Captures = Vec<(String, Range<usize>)>;

/// Path kind (3 exact, 2 template, 1 prefix) and its tie-breakers; larger wins.
type PathKey = (i64, i64, i64, i64);

/// Precedence key; larger wins. (priority, host score, path kind, path a, path b, path c, -index)
type Key = (i32, i64, i64, i64, i64, i64, i64);

/// Lower-cases, drops the port and one trailing dot; `None` if nothing is left or too long.
pub fn normalise_host(raw: &[u8]) -> Option<String> {
    let raw = String::from_utf8_lossy(raw).trim().to_string();
    let host = if raw.starts_with('[') {
        raw[..=raw.find(']')?].to_string()
    } else {
        raw.split(':').next().unwrap_or("").to_string()
    };
    let host = host.strip_suffix('.').unwrap_or(&host).to_lowercase();
    if host.is_empty() || host.len() > 255 {
        None
    } else {
        Some(host)
    }
}

/// Score of the best matching host of the route, `None` if none matches.
fn host_score(hosts: &[HostMatch], host: Option<&str>) -> Option<i64> {
    if hosts.is_empty() {
        return Some(0);
    }
    let config = |h: &str| h.strip_suffix('.').unwrap_or(h).to_lowercase();
    hosts
        .iter()
        .filter_map(|m| match m {
            HostMatch::Any => Some(0),
            HostMatch::Exact(h) => (host? == config(h)).then_some(100_000),
            HostMatch::Wildcard(w) => {
                let suffix = format!(".{}", config(w.strip_prefix("*.").unwrap()));
                let host = host?;
                (host.len() > suffix.len() && host.ends_with(&suffix))
                    .then(|| suffix.matches('.').count() as i64)
            }
        })
        .max()
}

/// Path kind and tie-breakers, plus captures, if the path matches.
fn path_score(spec: &PathMatch, path: &str) -> Option<(PathKey, Captures)> {
    match spec {
        PathMatch::Exact(p) => (path == p).then(|| ((3, 0, 0, 0), vec![])),
        PathMatch::Prefix(p) => {
            let hit = if p.ends_with('/') {
                path.starts_with(p.as_str())
            } else {
                path == p || path.starts_with(&format!("{p}/"))
            };
            hit.then(|| ((1, p.len() as i64, 0, 0), vec![]))
        }
        PathMatch::Template(t) => template_match(t, path),
    }
}

fn template_match(t: &str, path: &str) -> Option<(PathKey, Captures)> {
    let tsegs: Vec<&str> = t[1..].split('/').collect();
    let psegs: Vec<&str> = path[1..].split('/').collect();
    let catch_all = tsegs.last().unwrap().starts_with("{*");
    let fixed = if catch_all {
        tsegs.len() - 1
    } else {
        tsegs.len()
    };
    if psegs.len() < fixed || (!catch_all && psegs.len() != fixed) {
        return None;
    }
    let mut captures = Vec::new();
    let mut literals = 0;
    let mut offset = 1;
    for (tseg, pseg) in tsegs[..fixed].iter().zip(&psegs) {
        if let Some(name) = tseg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if pseg.is_empty() {
                return None;
            }
            captures.push((name.to_string(), offset..offset + pseg.len()));
        } else {
            if tseg != pseg {
                return None;
            }
            literals += 1;
        }
        offset += pseg.len() + 1;
    }
    if catch_all {
        if psegs.len() == fixed || offset >= path.len() {
            return None;
        }
        let name = tsegs[fixed].trim_start_matches("{*").trim_end_matches('}');
        captures.push((name.to_string(), offset..path.len()));
    }
    let key = (2, literals, -(captures.len() as i64), i64::from(!catch_all));
    Some((key, captures))
}

fn conditions_hold<T>(
    route: &RouteSpec<T>,
    method: &[u8],
    headers: &[httparse::Header<'_>],
) -> bool {
    let method_ok = route.methods.is_empty()
        || route
            .methods
            .iter()
            .any(|m| m.to_uppercase().as_bytes() == method);
    let header_ok = |m: &HeaderMatch| {
        headers.iter().any(|h| match m {
            HeaderMatch::Present(n) => h.name.eq_ignore_ascii_case(n),
            HeaderMatch::Exact(n, v) => h.name.eq_ignore_ascii_case(n) && h.value == v.as_bytes(),
            HeaderMatch::Prefix(n, v) => {
                h.name.eq_ignore_ascii_case(n) && h.value.starts_with(v.as_bytes())
            }
        })
    };
    method_ok && route.headers.iter().all(header_ok)
}

/// The best route for a request, by checking every route.
pub fn naive_lookup<T>(
    routes: &[RouteSpec<T>],
    host: &[u8],
    path: &[u8],
    method: &[u8],
    headers: &[httparse::Header<'_>],
) -> Option<NaiveMatch> {
    let path = String::from_utf8_lossy(path).to_string();
    let path = path.split('?').next().unwrap().to_string();
    if !path.starts_with('/') {
        return None;
    }
    let host = normalise_host(host);
    let mut best: Option<(Key, NaiveMatch)> = None;
    for (index, route) in routes.iter().enumerate() {
        let Some(hs) = host_score(&route.hosts, host.as_deref()) else {
            continue;
        };
        let Some(((k, a, b, c), captures)) = path_score(&route.path, &path) else {
            continue;
        };
        if !conditions_hold(route, method, headers) {
            continue;
        }
        let key = (route.priority, hs, k, a, b, c, -(index as i64));
        if best.as_ref().is_none_or(|(best_key, _)| key > *best_key) {
            best = Some((key, NaiveMatch { index, captures }));
        }
    }
    best.map(|(_, m)| m)
}

/// The upstream path for a naive match, per the route's rewrite, then `?query`.
pub fn naive_upstream<T>(
    route: &RouteSpec<T>,
    m: &NaiveMatch,
    path: &str,
    query: Option<&str>,
) -> String {
    let rest_after_prefix = || {
        let PathMatch::Prefix(p) = &route.path else {
            panic!("prefix rewrite on a non-prefix")
        };
        let p = p.strip_suffix('/').unwrap_or(p);
        path[p.len()..].to_string()
    };
    let or_root = |s: String| if s.is_empty() { "/".to_string() } else { s };
    let mut out = match &route.rewrite {
        Rewrite::None => path.to_string(),
        Rewrite::StripPrefix => or_root(rest_after_prefix()),
        Rewrite::ReplacePrefix(new) => or_root(format!(
            "{}{}",
            new.strip_suffix('/').unwrap_or(new),
            rest_after_prefix()
        )),
        Rewrite::Template(t) => {
            let mut out = t.clone();
            for (name, range) in &m.captures {
                let value = &path[range.clone()];
                out = out
                    .replace(&format!("{{{name}}}"), value)
                    .replace(&format!("{{*{name}}}"), value);
            }
            out
        }
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[test]
fn naive_reference_follows_the_documented_precedence() {
    let routes = vec![
        RouteSpec::new("prefix", PathMatch::Prefix("/a".into()), ()),
        RouteSpec::new("tmpl", PathMatch::Template("/a/{x}".into()), ()),
        RouteSpec::new("wild", PathMatch::Prefix("/a".into()), ())
            .host(HostMatch::Wildcard("*.h.com".into())),
        RouteSpec::new("exact-host", PathMatch::Prefix("/".into()), ())
            .host(HostMatch::Exact("x.h.com".into())),
        RouteSpec::new("prio", PathMatch::Prefix("/z".into()), ()).priority(1),
    ];
    let find = |host: &str, path: &str| {
        naive_lookup(&routes, host.as_bytes(), path.as_bytes(), b"GET", &[])
    };
    assert_eq!(find("", "/a/b").unwrap().index, 1);
    assert_eq!(
        find("", "/a/b").unwrap().captures,
        [("x".to_string(), 3..4)]
    );
    assert_eq!(find("Y.H.com:80", "/a/b").unwrap().index, 2);
    assert_eq!(find("x.h.com.", "/a/b").unwrap().index, 3);
    assert_eq!(find("x.h.com", "/z").unwrap().index, 4);
    assert_eq!(find("h.com", "/q"), None);
}
