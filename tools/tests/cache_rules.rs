//! The edge cache against a scripted origin that counts its requests: what RFC 9111 lets a shared
//! cache store and serve (freshness, `no-store`, `private`, cookies, `Authorization`, `Vary`,
//! statuses), revalidation with the stored validators, clients' conditional requests, `HEAD`,
//! bypasses, the key's query and header options, unsafe methods invalidating, and objects too
//! large to keep streaming through.

use ringgate_testkit::client::{Client, Response};
use ringgate_testkit::controlled::Controlled;
use ringgate_testkit::origin::{Origin, Reply};
use std::net::SocketAddr;

/// A gateway routing everything to `origin` through a cache zone, with `route_cache` inside the
/// route's `cache = { ... }`.
fn gateway(origin: SocketAddr, route_cache: &str) -> Controlled {
    let text = format!(
        "version = \"cache\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[cache_zones]]\nname = \"z\"\nmax_bytes = 10485760\nmax_object_bytes = 100000\n\
         [[upstreams]]\nname = \"o\"\nendpoints = [\"{origin}\"]\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"o\"\n\
         cache = {{ zone = \"z\"{route_cache} }}\n"
    );
    Controlled::start("cache-rules.toml", &text)
}

fn get(gw: &Controlled, path: &str, headers: &[(&str, &str)]) -> Response {
    Client::connect(gw.addr()).get_with(path, headers)
}

fn status_of(r: &Response) -> String {
    r.header("cache-status").unwrap_or("").to_string()
}

#[test]
fn a_fresh_response_is_served_from_the_cache_with_age_and_cache_status() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")]));
    let gw = gateway(origin.addr, "");
    let first = get(&gw, "/a", &[]);
    assert_eq!((first.status, first.text()), (200, "v0".into()));
    assert!(
        status_of(&first).starts_with("ringgate; fwd=miss; stored; ttl=60"),
        "{first:?}"
    );
    for _ in 0..5 {
        let r = get(&gw, "/a", &[]);
        assert_eq!(r.text(), "v0");
        assert!(status_of(&r).starts_with("ringgate; hit; ttl="), "{r:?}");
        assert!(r.header("age").is_some());
        assert_eq!(r.header("content-length"), Some("2"));
    }
    assert_eq!(origin.count("/a"), 1);
    let mut m = String::new();
    ringgate_testkit::wait::until_named("hits counted", std::time::Duration::from_secs(10), || {
        m = gw.metrics();
        m.contains("ringgate_cache_requests_total{zone=\"z\",outcome=\"hit\"} 5")
    });
    assert!(
        m.contains("ringgate_cache_requests_total{zone=\"z\",outcome=\"miss\"} 1"),
        "{m}"
    );
    assert!(m.contains("ringgate_cache_objects{zone=\"z\"} 1"), "{m}");
}

#[test]
fn what_a_shared_cache_must_not_store_goes_upstream_every_time() {
    let origin = Origin::start(|r, _| {
        let cc = match r.request_line().split(' ').nth(1).unwrap_or("") {
            "/no-store" => "no-store",
            "/private" => "private, max-age=60",
            _ => "max-age=60",
        };
        let mut h = vec![("cache-control", cc)];
        match r.request_line().split(' ').nth(1).unwrap_or("") {
            "/cookie" => h.push(("set-cookie", "s=1")),
            "/vary-star" => h.push(("vary", "*")),
            _ => {}
        }
        Reply::ok("x", &h)
    });
    let gw = gateway(origin.addr, ", default_ttl = \"60s\"");
    for (path, why) in [
        ("/no-store", "no-store"),
        ("/private", "private"),
        ("/cookie", "set-cookie"),
        ("/vary-star", "vary-star"),
    ] {
        for _ in 0..2 {
            let r = get(&gw, path, &[]);
            assert_eq!(
                status_of(&r),
                format!("ringgate; fwd=miss; detail={why}"),
                "{path}"
            );
        }
        assert_eq!(origin.count(path), 2, "{path}");
    }
    // A request's own no-store is honoured too.
    for _ in 0..2 {
        get(&gw, "/asked", &[("cache-control", "no-store")]);
    }
    assert_eq!(origin.count("/asked"), 2);
}

#[test]
fn authenticated_requests_are_shared_only_when_route_and_response_allow() {
    let origin = Origin::start(|r, _| {
        let cc = if r.request_line().contains("/public") {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        Reply::ok("secret", &[("cache-control", cc)])
    });
    let auth = [("authorization", "Bearer abc")];
    let strict = gateway(origin.addr, "");
    for _ in 0..2 {
        let r = get(&strict, "/public", &auth);
        assert_eq!(status_of(&r), "ringgate; fwd=miss; detail=authorization");
    }
    drop(strict);
    let shared = gateway(origin.addr, ", shared_authenticated = true");
    get(&shared, "/public", &auth);
    assert!(status_of(&get(&shared, "/public", &auth)).starts_with("ringgate; hit"));
    // Without public (or s-maxage, must-revalidate) the response is still not shared.
    get(&shared, "/plain", &auth);
    get(&shared, "/plain", &auth);
    assert_eq!(origin.count("/plain"), 2);
}

#[test]
fn vary_keeps_variants_apart_and_the_route_can_key_on_query_headers_and_cookies() {
    let origin = Origin::start(|r, n| {
        let enc = r.header("accept-encoding").unwrap_or_default();
        Reply::ok(
            &format!("{enc}-{n}"),
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
        )
    });
    let gw = gateway(
        origin.addr,
        ", key_query = \"sorted\", key_headers = [\"x-tenant\"], key_cookies = [\"cur\"]",
    );
    let gz = [("accept-encoding", "gzip")];
    assert_eq!(get(&gw, "/v", &gz).text(), "gzip-0");
    assert_eq!(get(&gw, "/v", &[]).text(), "-1");
    assert_eq!(get(&gw, "/v", &gz).text(), "gzip-0");
    assert_eq!(get(&gw, "/v", &[]).text(), "-1");
    assert_eq!(origin.count("/v"), 2);
    // Sorted query: one object for both orders.
    get(&gw, "/q?b=2&a=1", &[]);
    assert!(status_of(&get(&gw, "/q?a=1&b=2", &[])).starts_with("ringgate; hit"));
    // A key header and a cookie split the key.
    get(&gw, "/t", &[("x-tenant", "a")]);
    assert!(status_of(&get(&gw, "/t", &[("x-tenant", "b")])).contains("fwd=miss"));
    assert!(status_of(&get(&gw, "/t", &[("x-tenant", "a")])).contains("hit"));
    get(&gw, "/c", &[("cookie", "x=1; cur=eur")]);
    assert!(status_of(&get(&gw, "/c", &[("cookie", "cur=usd")])).contains("fwd=miss"));
    assert!(status_of(&get(&gw, "/c", &[("cookie", "cur=eur; y=2")])).contains("hit"));
}

#[test]
fn stale_responses_are_revalidated_with_their_validators_and_a_304_refreshes_them() {
    // max-age=0 with an ETag: stored, stale at once, validated on every use.
    let origin = Origin::start(|r, n| {
        if n > 0 && r.header("if-none-match").as_deref() == Some("\"e1\"") {
            return Reply::status(
                304,
                "",
                &[("etag", "\"e1\""), ("cache-control", "max-age=0")],
            );
        }
        Reply::ok(
            "body-1",
            &[("etag", "\"e1\""), ("cache-control", "max-age=0")],
        )
    });
    let gw = gateway(origin.addr, "");
    assert!(status_of(&get(&gw, "/r", &[])).contains("stored"));
    let r = get(&gw, "/r", &[]);
    assert_eq!((r.status, r.text()), (200, "body-1".into()));
    assert!(
        status_of(&r).starts_with("ringgate; fwd=stale; fwd-status=304"),
        "{r:?}"
    );
    let asked = origin.requests();
    assert_eq!(asked[1].header("if-none-match").as_deref(), Some("\"e1\""));
    // A client's own matching validator gets a 304 from the refreshed response.
    let r = get(&gw, "/r", &[("if-none-match", "\"e1\"")]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(origin.count("/r"), 3);
}

#[test]
fn clients_conditional_requests_and_heads_are_answered_from_the_cache() {
    let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    let origin = Origin::start(move |_, _| {
        Reply::ok(
            "hello",
            &[
                ("cache-control", "max-age=60"),
                ("etag", "W/\"t\""),
                ("last-modified", lm),
            ],
        )
    });
    let gw = gateway(origin.addr, "");
    get(&gw, "/c", &[]);
    let r = get(&gw, "/c", &[("if-none-match", "\"t\"")]);
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some("W/\"t\""));
    let r = get(&gw, "/c", &[("if-modified-since", lm)]);
    assert_eq!(r.status, 304);
    let r = get(&gw, "/c", &[("if-none-match", "\"other\"")]);
    assert_eq!((r.status, r.text()), (200, "hello".into()));
    let mut c = Client::connect(gw.addr());
    c.send(b"HEAD /c HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.response_to("HEAD");
    assert_eq!((h.status, h.header("content-length")), (200, Some("5")));
    assert!(h.body.is_empty());
    assert!(status_of(&h).contains("hit"));
    assert_eq!(origin.count("/c"), 1);
}

#[test]
fn statuses_cache_by_the_route_s_ttls_and_errors_are_not_stored() {
    let origin = Origin::start(
        |r, _| match r.request_line().split(' ').nth(1).unwrap_or("") {
            "/missing" => Reply::status(404, "nope", &[]),
            _ => Reply::status(500, "boom", &[("cache-control", "max-age=60")]),
        },
    );
    let gw = gateway(origin.addr, ", status_ttl = { 404 = \"30s\" }");
    get(&gw, "/missing", &[]);
    let r = get(&gw, "/missing", &[]);
    assert_eq!(r.status, 404);
    assert!(status_of(&r).contains("hit"));
    get(&gw, "/err", &[]);
    assert_eq!(get(&gw, "/err", &[]).status, 500);
    assert_eq!((origin.count("/missing"), origin.count("/err")), (1, 2));
}

#[test]
fn client_no_cache_revalidates_unless_the_route_ignores_it_and_bypasses_pass_through() {
    let origin = Origin::start(|r, n| {
        if r.header("if-none-match").is_some() {
            return Reply::status(
                304,
                "",
                &[("etag", "\"a\""), ("cache-control", "max-age=60")],
            );
        }
        Reply::ok(
            &format!("n{n}"),
            &[("etag", "\"a\""), ("cache-control", "max-age=60")],
        )
    });
    let gw = gateway(origin.addr, ", bypass_header = \"x-no-cache\"");
    get(&gw, "/n", &[]);
    let r = get(&gw, "/n", &[("cache-control", "no-cache")]);
    assert!(status_of(&r).contains("fwd-status=304"), "{r:?}");
    let r = get(&gw, "/n", &[("x-no-cache", "1")]);
    assert_eq!(status_of(&r), "ringgate; fwd=bypass");
    let r = get(&gw, "/n", &[("range", "bytes=0-1")]);
    assert_eq!(status_of(&r), "ringgate; fwd=bypass");
    assert_eq!(origin.count("/n"), 4);
    drop(gw);
    let ignoring = gateway(origin.addr, ", client_no_cache = \"ignore\"");
    get(&ignoring, "/i", &[]);
    let r = get(
        &ignoring,
        "/i",
        &[("cache-control", "no-cache"), ("pragma", "no-cache")],
    );
    assert!(status_of(&r).starts_with("ringgate; hit"));
    assert_eq!(origin.count("/i"), 1);
}

#[test]
fn an_unsafe_method_invalidates_and_large_or_chunked_bodies_behave() {
    let origin = Origin::start(|r, n| {
        let path = r.request_line().split(' ').nth(1).unwrap_or("").to_string();
        match path.as_str() {
            "/big" => Reply {
                body: vec![b'b'; 200_000],
                ..Reply::ok("", &[("cache-control", "max-age=60")])
            },
            "/chunked" => Reply {
                body: vec![b'c'; 5_500],
                chunked: true,
                ..Reply::ok("", &[("cache-control", "max-age=60")])
            },
            _ => Reply::ok(&format!("item-{n}"), &[("cache-control", "max-age=60")]),
        }
    });
    let gw = gateway(origin.addr, "");
    assert_eq!(get(&gw, "/item", &[]).text(), "item-0");
    assert_eq!(get(&gw, "/item", &[]).text(), "item-0");
    let mut c = Client::connect(gw.addr());
    c.send(b"POST /item HTTP/1.1\r\nHost: t\r\ncontent-length: 2\r\n\r\nhi");
    assert_eq!(c.response_to("POST").status, 200);
    assert_eq!(
        get(&gw, "/item", &[]).text(),
        "item-2",
        "the POST invalidated the stored GET"
    );
    // Larger than max_object_bytes: streamed whole, never stored.
    for _ in 0..2 {
        let r = get(&gw, "/big", &[]);
        assert_eq!(r.body.len(), 200_000);
        assert_eq!(status_of(&r), "ringgate; fwd=miss; detail=too-large");
    }
    assert_eq!(origin.count("/big"), 2);
    // A chunked response is kept as its payload and served with a length.
    assert_eq!(get(&gw, "/chunked", &[]).body.len(), 5_500);
    let r = get(&gw, "/chunked", &[]);
    assert_eq!(
        (r.body.len(), r.header("content-length")),
        (5_500, Some("5500"))
    );
    assert_eq!(origin.count("/chunked"), 1);
}

#[test]
fn http2_clients_get_hits_heads_and_304s_from_the_cache() {
    use ringgate_testkit::curl::curl;
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("h2-{n}"),
            &[("cache-control", "max-age=60"), ("etag", "\"h\"")],
        )
    });
    let gw = gateway(origin.addr, "");
    let url = format!("http://127.0.0.1:{}/h2", gw.addr().port());
    let h2 = |extra: &[&str]| {
        let mut args = vec![
            "--http2-prior-knowledge",
            "-i",
            "-w",
            "\nversion=%{http_version}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let (ok, out, err) = curl(&args);
        assert!(ok, "{err}");
        assert!(out.contains("version=2"), "{out}");
        out.to_ascii_lowercase()
    };
    assert!(h2(&[]).contains("h2-0"));
    let hit = h2(&[]);
    assert!(
        hit.contains("cache-status: ringgate; hit") && hit.contains("h2-0"),
        "{hit}"
    );
    let head = h2(&["-I"]);
    assert!(
        head.contains("cache-status: ringgate; hit") && head.contains("content-length: 4"),
        "{head}"
    );
    let not_modified = h2(&["-H", "if-none-match: \"h\""]);
    assert!(not_modified.starts_with("http/2 304"), "{not_modified}");
    assert_eq!(origin.count("/h2"), 1);
}
