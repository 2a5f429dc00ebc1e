//! The checks that span sections: what a route names (upstreams, `[auth]`, rate limits) must
//! exist, and route ids must be unique. Each section checks itself; only references live here.

use super::{Placement, Problems, RawConfig};
use std::collections::HashSet;

/// Every reference from one section to another, and the uniqueness of route ids.
pub(super) fn check(raw: &RawConfig, at: &Placement, p: &mut Problems) {
    let upstreams: HashSet<&str> = raw
        .upstreams
        .iter()
        .map(|u| u.name.as_str())
        .chain(at.unread_upstreams.iter().map(String::as_str))
        .collect();
    for (i, u) in raw.upstreams.iter().enumerate() {
        let etcd = raw.discovery.as_ref().and_then(|d| d.etcd.as_ref());
        if u.discovery == super::discovery::DiscoveryKind::Etcd && etcd.is_none() {
            p.at(
                format_args!("upstreams[{}].discovery", at.upstreams.of(i)),
                "\"etcd\" needs a [discovery.etcd] section naming the cluster",
            );
        }
    }
    let mut ids = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let route = format!("routes[{}]", at.routes.of(i));
        if !ids.insert(r.id.as_str()) {
            p.at(
                format_args!("{route}.id"),
                format_args!("{:?} is used twice", r.id),
            );
        }
        if r.split.is_empty() && !upstreams.contains(r.upstream.as_str()) {
            p.at(
                format_args!("{route}.upstream"),
                format_args!("no such upstream {:?}", r.upstream),
            );
        }
        for (j, sp) in r.split.iter().enumerate() {
            if !upstreams.contains(sp.upstream.as_str()) {
                p.at(
                    format_args!("{route}.split[{j}].upstream"),
                    format_args!("no such upstream {:?}", sp.upstream),
                );
            }
        }
        route_auth(raw, at, r, &route, p);
        if let Some(c) = &r.cache {
            cache_route(raw, r, c, &route, p);
            if !raw.cache_zones.iter().any(|z| z.name == c.zone) {
                p.at(
                    format_args!("{route}.cache.zone"),
                    format_args!(
                        "no such cache zone {:?} (define it in [[cache_zones]])",
                        c.zone
                    ),
                );
            }
        }
    }
    rate_limits(raw, at, p);
}

/// A route's `auth` needs `[auth]`, and `introspection` needs `[auth.introspection]`.
fn route_auth(
    raw: &RawConfig,
    at: &Placement,
    r: &super::RouteConfig,
    route: &str,
    p: &mut Problems,
) {
    let Some(a) = &r.auth else { return };
    if raw.auth.is_none() && !at.auth_unread {
        p.at(format_args!("{route}.auth"), "needs an [auth] section");
    }
    let no_introspection = raw.auth.as_ref().is_some_and(|a| a.introspection.is_none());
    for (j, m) in a.methods.iter().enumerate() {
        if m == "introspection" && no_introspection {
            p.at(
                format_args!("{route}.auth.methods[{j}]"),
                "introspection needs [auth.introspection]",
            );
        }
    }
}

/// `[rate_limit]`, `[[rate_limits]]` and the names routes and `global` give, compiled as the
/// snapshot will compile them (the result is dropped: only the problems count here).
fn rate_limits(raw: &RawConfig, at: &Placement, p: &mut Problems) {
    let mut by_file: Vec<(&[String], bool)> =
        vec![(&[], false); at.routes.in_file(raw.routes.len())];
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some(slot) = by_file.get_mut(at.routes.of(i)) {
            *slot = (r.rate_limits.as_slice(), r.rate_limit_headers);
        }
    }
    let mut lines = Vec::new();
    crate::ratelimit::config::compile(
        raw.rate_limit.as_ref(),
        &raw.rate_limits,
        |i| at.rate_limits.of(i),
        &by_file,
        &mut lines,
    );
    // A name whose limit did not deserialize was reported there; not again as missing.
    lines.retain(|l| {
        !at.unread_limits
            .iter()
            .any(|n| l.ends_with(&format!("no rate limit is named {n:?}")))
    });
    p.extend(lines);
}

/// A cached route: no traffic split (one key would hold either backend's answers), and no
/// identity header in the key (the gateway replaces those; key on `key_identity` instead).
fn cache_route(
    raw: &RawConfig,
    r: &super::RouteConfig,
    c: &super::cache::RouteCacheConfig,
    route: &str,
    p: &mut Problems,
) {
    if !r.split.is_empty() {
        p.at(
            format_args!("{route}.cache"),
            "a route with a traffic split cannot be cached (its backends would share objects)",
        );
    }
    if let Some(ids) = raw.auth.as_ref().map(|a| &a.headers) {
        let managed = [&ids.client_id, &ids.user_id, &ids.tenant_id, &ids.scopes];
        for h in &c.key_headers {
            if managed.iter().any(|m| m.eq_ignore_ascii_case(h)) {
                p.at(
                    format_args!("{route}.cache.key_headers"),
                    format_args!(
                        "{h:?} is an identity header the gateway sets: use key_identity = true"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> RawConfig {
        toml::from_str(text).expect("parse")
    }

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n\
                        [[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n";

    #[test]
    fn references_to_nothing_are_named() {
        let raw = config(&format!(
            "{BASE}[[routes]]\nid = \"a\"\npath = {{ prefix = \"/\" }}\nupstream = \"billing\"\n\
             rate_limits = [\"per-ip\"]\nauth = {{ mode = \"required\" }}\n\
             [[routes]]\nid = \"a\"\npath = {{ prefix = \"/b\" }}\nsplit = [{{ upstream = \"u\", weight = 1 }}, {{ upstream = \"v\", weight = 1 }}]\n"
        ));
        let mut p = Problems::default();
        check(&raw, &Placement::default(), &mut p);
        let all = p.into_vec().join("\n");
        for want in [
            "routes[0].upstream: no such upstream \"billing\"",
            "routes[0].auth: needs an [auth] section",
            "routes[0].rate_limits: no rate limit is named \"per-ip\"",
            "routes[1].id: \"a\" is used twice",
            "routes[1].split[1].upstream: no such upstream \"v\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn an_entry_that_did_not_deserialize_still_counts_as_named() {
        let raw = config(&format!(
            "{BASE}[[routes]]\nid = \"a\"\npath = {{ prefix = \"/\" }}\nupstream = \"billing\"\n"
        ));
        let at = Placement {
            unread_upstreams: vec!["billing".into()],
            ..Placement::default()
        };
        let mut p = Problems::default();
        check(&raw, &at, &mut p);
        assert!(p.is_empty(), "{p:?}");
    }
}
