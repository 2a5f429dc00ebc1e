//! Whole-config tests: good configs, old field names, and every problem of a bad one reported.

use super::*;
use std::time::Duration;

const GOOD: &str = r#"
    version = "t1"
    [[listeners]]
    address = "127.0.0.1:0"
    [[upstreams]]
    name = "users"
    endpoints = ["127.0.0.1:9001"]
    [[routes]]
    id = "users"
    path = { prefix = "/users" }
    upstream = "users"
    timeout = "2s"
"#;

#[test]
fn a_good_config_validates() {
    let c = RawConfig::parse(GOOD).expect("parse");
    c.validate().expect("valid");
    assert_eq!(c.routes[0].timeout, Some(Duration::from_secs(2)));
}

#[test]
fn per_core_counts_say_so_and_the_old_names_still_parse() {
    let body = |names: [&str; 6]| {
        format!(
            "{GOOD}\n[[upstreams]]\nname = \"b\"\nendpoints = [\"127.0.0.1:9002\"]\n{} = 7\n{} = 8\n\
             [upstreams.outlier]\n{} = 2\n{} = 3\n[upstreams.circuit_breaker]\n{} = 9\n\
             [[routes]]\nid = \"b\"\npath = {{ prefix = \"/b\" }}\nupstream = \"b\"\n\
             [routes.retry]\n{} = 4\n",
            names[0], names[1], names[2], names[3], names[4], names[5]
        )
    };
    let new = RawConfig::parse(&body([
        "max_requests_per_core",
        "max_connections_per_core",
        "consecutive_5xx_per_core",
        "consecutive_connect_failures_per_core",
        "min_requests_per_core",
        "budget_min_per_sec_per_core",
    ]))
    .expect("new names");
    let old = RawConfig::parse(&body([
        "max_requests",
        "max_connections",
        "consecutive_5xx",
        "consecutive_connect_failures",
        "min_requests",
        "budget_min_per_sec",
    ]))
    .expect("old names");
    for c in [&new, &old] {
        let u = &c.upstreams[1];
        assert_eq!((u.max_requests, u.max_connections), (Some(7), Some(8)));
        let o = u.outlier.as_ref().expect("outlier");
        assert_eq!((o.consecutive_5xx, o.consecutive_connect_failures), (2, 3));
        assert_eq!(u.circuit_breaker.as_ref().map(|b| b.min_requests), Some(9));
        let r = c.routes[1].retry.as_ref().expect("retry");
        assert_eq!(r.budget_min_per_sec, 4);
    }
}

#[test]
fn unknown_fields_are_named() {
    let e = RawConfig::parse(&GOOD.replace("timeout =", "timeuot ="))
        .unwrap_err()
        .to_string();
    assert!(e.contains("timeuot"), "{e}");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
        [[listeners]]
        address = "nowhere"
        [[upstreams]]
        name = "a"
        endpoints = ["127.0.0.1"]
        [[routes]]
        id = "r"
        path = { prefix = "/x", exact = "/y" }
        upstream = "payments"
        methods = ["get"]
        [[routes]]
        id = "r"
        path = { exact = "/z" }
        upstream = "a"
        strip_prefix = true
        headers = [{ name = "x" }]
    "#;
    let e = RawConfig::parse(text)
        .expect("parse")
        .validate()
        .unwrap_err()
        .to_string();
    for want in [
        "listeners[0].address",
        "upstreams[0].endpoints[0]: \"127.0.0.1\" has no port",
        "routes[0].upstream: no such upstream \"payments\"",
        "routes[0].path: give exactly one",
        "routes[0].methods[0]",
        "routes[1].id: \"r\" is used twice",
        "routes[1]: strip_prefix and rewrite_prefix need a prefix path",
        "routes[1].headers[0]: give exactly one",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}

#[test]
fn dynamic_upstreams_are_checked_by_their_source() {
    let text = r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [discovery.dns]
        servers = ["not-an-address"]
        min_ttl = "10m"
        max_ttl = "1m"
        [[upstreams]]
        name = "srv"
        discovery = "dns_srv"
        endpoints = ["_http._tcp.api.internal:80"]
        weights = [1]
        [[upstreams]]
        name = "kv"
        discovery = "etcd"
        endpoints = ["127.0.0.1:1"]
        [[upstreams]]
        name = "names"
        discovery = "dns"
        endpoints = ["api.internal"]
        etcd_prefix = "/x/"
        [[routes]]
        id = "r"
        path = { prefix = "/" }
        upstream = "srv"
    "#;
    let e = RawConfig::parse(text)
        .expect("parse")
        .validate()
        .unwrap_err()
        .to_string();
    for want in [
        "discovery.dns.servers[0]: \"not-an-address\" is not ip:port",
        "discovery.dns.min_ttl: is above max_ttl",
        "upstreams[0].endpoints[0]: \"_http._tcp.api.internal:80\" is not an SRV name",
        "upstreams[0].weights: weights come from the SRV records",
        "upstreams[1].endpoints: an etcd upstream's endpoints are the keys under etcd_prefix",
        "upstreams[1].etcd_prefix: discovery = \"etcd\" needs the key prefix",
        "upstreams[1].discovery: \"etcd\" needs a [discovery.etcd] section",
        "upstreams[2].endpoints[0]: \"api.internal\" has no port",
        "upstreams[2].etcd_prefix: only for discovery = \"etcd\"",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let good = r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [discovery.etcd]
        endpoints = ["http://127.0.0.1:2379"]
        [[upstreams]]
        name = "kv"
        discovery = "etcd"
        etcd_prefix = "/ringgate/upstreams/kv/"
        [[upstreams]]
        name = "srv"
        discovery = "dns_srv"
        endpoints = ["_http._tcp.api.internal"]
        [[routes]]
        id = "r"
        path = { prefix = "/" }
        upstream = "kv"
    "#;
    RawConfig::parse(good)
        .expect("parse")
        .validate()
        .expect("valid");
}
