//! The cache as an attacker and a careless origin would try it: overflowing ages and freshness
//! demands, one consumer's authenticated response served to another, a client's validators
//! turning a stale body into a "fresh" one, a 304 that carries hop-by-hop fields, a variant
//! picked by a repeated field, two routes or schemes sharing a key, and config that would let
//! objects leak (identity headers in the key, a cached split).

use ringgate_testkit::client::{Client, Response};
use ringgate_testkit::controlled::Controlled;
use ringgate_testkit::files::TempFile;
use ringgate_testkit::origin::{Origin, Reply};
use ringgate_testkit::run::create_key;
use std::net::SocketAddr;

fn gateway(origin: SocketAddr, auth: &str, routes: &str) -> Controlled {
    let text = format!(
        "version = \"cache-attacks\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n{auth}\
         [[cache_zones]]\nname = \"z\"\nmax_bytes = 10485760\n\
         [[upstreams]]\nname = \"o\"\nendpoints = [\"{origin}\"]\n{routes}"
    );
    Controlled::start("cache-attacks.toml", &text)
}

fn route(extra: &str) -> String {
    format!("[[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"o\"\ncache = {{ zone = \"z\"{extra} }}\n")
}

fn get(gw: &Controlled, path: &str, headers: &[(&str, &str)]) -> Response {
    Client::connect(gw.addr()).get_with(path, headers)
}

#[test]
fn huge_ages_and_freshness_demands_do_not_take_the_core_down() {
    let origin = Origin::start(|r, _| {
        if r.request_line().contains("/old") {
            Reply::ok(
                "x",
                &[
                    ("cache-control", "max-age=60"),
                    ("age", "18446744073709551615"),
                ],
            )
        } else {
            Reply::ok("x", &[("cache-control", "max-age=99999999999999999999999")])
        }
    });
    let gw = gateway(origin.addr, "", &route(""));
    get(&gw, "/a", &[]);
    let demands = [
        "min-fresh=99999999999999999999",
        "min-fresh=18446744073709551615, max-age=18446744073709551615",
        "max-age=0, min-fresh=1",
    ];
    for d in demands {
        assert_eq!(get(&gw, "/a", &[("cache-control", d)]).status, 200, "{d}");
    }
    for _ in 0..3 {
        assert_eq!(get(&gw, "/old", &[]).status, 200);
    }
    // The core still serves.
    assert_eq!(get(&gw, "/a", &[]).status, 200);
}

#[test]
fn one_consumer_s_authenticated_response_is_never_served_to_another() {
    let bin = env!("CARGO_BIN_EXE_ringgate");
    let (sa, ea) = create_key(bin, &["--client-id", "alice"]);
    let (sb, eb) = create_key(bin, &["--client-id", "bob"]);
    let keys = TempFile::new("cache-keys.toml", &format!("{ea}\n{eb}\n"));
    let origin = Origin::start(|r, _| {
        let who = r.header("x-client-id").unwrap_or_default();
        Reply::ok(
            &format!("data-of-{who}"),
            &[("cache-control", "public, max-age=60")],
        )
    });
    let auth = format!("[auth]\napi_keys_file = \"{}\"\n", keys.arg());
    let shared = route(", shared_authenticated = true");
    let by_identity = shared.replace(
        "shared_authenticated = true",
        "shared_authenticated = true, key_identity = true",
    );
    for (routes, separate) in [(route(""), false), (by_identity, true)] {
        let routes = routes.replace(
            "upstream = \"o\"\n",
            "upstream = \"o\"\nauth = { methods = [\"api_key\"] }\n",
        );
        let gw = gateway(origin.addr, &auth, &routes);
        let a = get(&gw, "/me", &[("x-api-key", &sa)]);
        let b = get(&gw, "/me", &[("x-api-key", &sb)]);
        assert_eq!(a.text(), "data-of-alice");
        assert_eq!(b.text(), "data-of-bob", "bob got alice's response");
        if separate {
            // key_identity: each consumer has its own object.
            assert!(get(&gw, "/me", &[("x-api-key", &sa)])
                .header("cache-status")
                .unwrap_or("")
                .contains("hit"));
            assert_eq!(get(&gw, "/me", &[("x-api-key", &sb)]).text(), "data-of-bob");
        }
    }
    // An identity header the gateway sets cannot be keyed on: config refuses it, and a cached
    // split too.
    let bad = route(", key_headers = [\"x-client-id\"]");
    let text = format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n{auth}[[cache_zones]]\nname = \"z\"\nmax_bytes = 1048576\n[[upstreams]]\nname = \"o\"\nendpoints = [\"{}\"]\n{bad}", origin.addr);
    let e = ringgate::config::RawConfig::parse(&text)
        .and_then(|r| r.validate())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("routes[0].cache.key_headers: \"x-client-id\" is an identity header"),
        "{e}"
    );
    let split = route("").replace(
        "upstream = \"o\"\n",
        "upstream = \"o\"\nsplit = [{ upstream = \"o\", weight = 1 }]\n",
    );
    let text = format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n[[cache_zones]]\nname = \"z\"\nmax_bytes = 1048576\n[[upstreams]]\nname = \"o\"\nendpoints = [\"{}\"]\n{split}", origin.addr);
    let e = ringgate::config::RawConfig::parse(&text)
        .and_then(|r| r.validate())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("routes[0].cache: a route with a traffic split cannot be cached"),
        "{e}"
    );
}

#[test]
fn a_client_s_validators_never_refresh_a_stored_body_and_a_304_is_not_relayed_bare() {
    // v1 is stored without validators; the origin answers any If-None-Match with a 304.
    let origin = Origin::start(|r, n| {
        if r.header("if-none-match").is_some() {
            return Reply::status(
                304,
                "",
                &[("etag", "\"v2\""), ("cache-control", "max-age=60")],
            );
        }
        if n == 0 {
            Reply::ok(
                "v1",
                &[
                    ("cache-control", "max-age=0"),
                    ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ],
            )
        } else {
            Reply::ok("v2", &[("cache-control", "max-age=60"), ("etag", "\"v2\"")])
        }
    });
    let gw = gateway(origin.addr, "", &route(""));
    assert_eq!(get(&gw, "/x", &[]).text(), "v1");
    let r = get(&gw, "/x", &[("if-none-match", "\"v2\"")]);
    assert!(r.status == 304 || r.text() == "v2", "{r:?}");
    let later = get(&gw, "/x", &[]);
    assert_eq!(later.text(), "v2", "the stale v1 body was stored as v2");
    // The origin never saw the client's own validator.
    assert!(origin
        .requests()
        .iter()
        .all(|q| q.header("if-none-match").as_deref() != Some("\"v2\"")
            || q.header("if-modified-since").is_some()));
    // A validation the refreshed response may not be stored from still answers with the body.
    let origin = Origin::start(|r, _| {
        if r.header("if-none-match").is_some() {
            return Reply::status(304, "", &[("etag", "\"e\""), ("cache-control", "private")]);
        }
        Reply::ok("body", &[("cache-control", "max-age=0"), ("etag", "\"e\"")])
    });
    let gw = gateway(origin.addr, "", &route(""));
    get(&gw, "/p", &[]);
    let r = get(&gw, "/p", &[("cache-control", "no-store")]);
    assert_eq!((r.status, r.text()), (200, "body".into()));
}

#[test]
fn a_304_s_hop_by_hop_fields_are_not_stored() {
    let origin = Origin::start(|r, _| {
        if r.header("if-none-match").is_some() {
            return Reply::status(
                304,
                "",
                &[
                    ("etag", "\"e\""),
                    ("cache-control", "max-age=60"),
                    ("connection", "x-hop"),
                    ("x-hop", "1"),
                    ("age", "30"),
                    ("keep-alive", "timeout=5"),
                    ("te", "trailers"),
                ],
            );
        }
        Reply::ok("body", &[("cache-control", "max-age=0"), ("etag", "\"e\"")])
    });
    let gw = gateway(origin.addr, "", &route(""));
    get(&gw, "/h", &[]);
    get(&gw, "/h", &[]);
    let hit = get(&gw, "/h", &[]);
    assert!(
        hit.header("cache-status").unwrap_or("").contains("hit"),
        "{hit:?}"
    );
    for f in ["x-hop", "keep-alive", "te"] {
        assert!(hit.header(f).is_none(), "{f} stored: {hit:?}");
    }
    assert_eq!(
        hit.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("age"))
            .count(),
        1
    );
}

#[test]
fn repeated_fields_routes_and_schemes_do_not_share_objects() {
    let origin = Origin::start(|r, n| {
        let enc = r.header("accept-encoding").unwrap_or_default();
        let v = r.header("x-version").unwrap_or_default();
        Reply::ok(
            &format!("{v}-{enc}-{n}"),
            &[("cache-control", "max-age=60"), ("vary", "accept-encoding")],
        )
    });
    let routes = format!(
        "{}{}",
        route("").replace("id = \"all\"", "id = \"v2\"").replace(
            "prefix = \"/\" }",
            "prefix = \"/\" }\nheaders = [{ name = \"x-version\", exact = \"2\" }]"
        ),
        route("")
    );
    let gw = gateway(origin.addr, "", &routes);
    // Two Accept-Encoding lines: not stored, and never matched to a stored variant.
    let mut c = Client::connect(gw.addr());
    c.send(
        b"GET /r HTTP/1.1\r\nHost: t\r\naccept-encoding: identity\r\naccept-encoding: gzip\r\n\r\n",
    );
    let r = c.response();
    assert!(
        r.header("cache-status")
            .unwrap_or("")
            .contains("detail=vary-repeated"),
        "{r:?}"
    );
    get(&gw, "/r", &[("accept-encoding", "identity")]);
    let mut c = Client::connect(gw.addr());
    c.send(
        b"GET /r HTTP/1.1\r\nHost: t\r\naccept-encoding: identity\r\naccept-encoding: gzip\r\n\r\n",
    );
    assert!(!c
        .response()
        .header("cache-status")
        .unwrap_or("")
        .contains("hit"));
    // One path, two routes (by a header match): each keeps its own object.
    let v2 = get(&gw, "/same", &[("x-version", "2")]);
    let v1 = get(&gw, "/same", &[]);
    assert_ne!(v1.text(), v2.text());
    assert_eq!(get(&gw, "/same", &[("x-version", "2")]).text(), v2.text());
}
