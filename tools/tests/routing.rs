//! Routing through the running gateway: hosts, paths, templates, methods, headers, priority,
//! rewrites and the 404, observed at a recording upstream.

use ringgate_testkit::client::{get, send};
use ringgate_testkit::gateway::{config, gateway};
use ringgate_testkit::scripted::recorder;

const ROUTES: &str = r#"
[[routes]]
id = "exact-host"
hosts = ["api.example.com"]
path = { prefix = "/" }
upstream = "a"

[[routes]]
id = "wild-host"
hosts = ["*.example.com"]
path = { prefix = "/" }
upstream = "b"

[[routes]]
id = "user-orders"
path = { template = "/users/{id}/orders" }
methods = ["GET"]
rewrite = "/v2/orders/{id}"
upstream = "a"

[[routes]]
id = "users-post"
path = { template = "/users/{id}/orders" }
methods = ["POST"]
upstream = "b"

[[routes]]
id = "strip"
path = { prefix = "/svc" }
strip_prefix = true
upstream = "a"

[[routes]]
id = "replace"
path = { prefix = "/old" }
rewrite_prefix = "/new"
upstream = "a"

[[routes]]
id = "exact"
path = { exact = "/exact" }
upstream = "a"

[[routes]]
id = "hdr-present"
path = { prefix = "/h" }
headers = [{ name = "x-canary", present = true }]
upstream = "b"

[[routes]]
id = "hdr-prefix"
path = { prefix = "/h" }
headers = [{ name = "accept", prefix = "application/vnd.v2" }]
upstream = "b"

[[routes]]
id = "hdr-default"
path = { prefix = "/h" }
upstream = "a"

[[routes]]
id = "low"
path = { exact = "/p/x" }
upstream = "a"

[[routes]]
id = "high"
path = { prefix = "/p" }
priority = 5
upstream = "b"
"#;

struct Two {
    gw: ringgate_testkit::gateway::TestGateway,
    a: std::sync::Arc<std::sync::Mutex<Vec<ringgate_testkit::scripted::Received>>>,
    b: std::sync::Arc<std::sync::Mutex<Vec<ringgate_testkit::scripted::Received>>>,
    _ua: ringgate_testkit::scripted::Scripted,
    _ub: ringgate_testkit::scripted::Scripted,
}

fn setup() -> Two {
    let (ua, a) = recorder();
    let (ub, b) = recorder();
    let gw = gateway(&config(&[("a", &[ua.addr]), ("b", &[ub.addr])], ROUTES));
    Two {
        gw,
        a,
        b,
        _ua: ua,
        _ub: ub,
    }
}

/// Sends the request and returns ("a" or "b", request line seen upstream).
fn via(t: &Two, raw: &str) -> (String, String) {
    let before_a = t.a.lock().expect("a").len();
    let before_b = t.b.lock().expect("b").len();
    let r = send(t.gw.addr, raw.as_bytes());
    assert_eq!(
        r.status,
        200,
        "request {raw:?} got {} {}",
        r.status,
        r.text()
    );
    let a = t.a.lock().expect("a");
    let b = t.b.lock().expect("b");
    if a.len() > before_a {
        ("a".into(), a[a.len() - 1].request_line().to_string())
    } else {
        assert!(b.len() > before_b, "no upstream saw {raw:?}");
        ("b".into(), b[b.len() - 1].request_line().to_string())
    }
}

#[test]
fn exact_host_beats_wildcard_and_wildcard_needs_a_label() {
    let t = setup();
    assert_eq!(
        via(&t, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n").0,
        "a"
    );
    assert_eq!(
        via(&t, "GET /x HTTP/1.1\r\nHost: API.Example.com:8080\r\n\r\n").0,
        "a"
    );
    assert_eq!(
        via(&t, "GET /x HTTP/1.1\r\nHost: shop.example.com\r\n\r\n").0,
        "b"
    );
    assert_eq!(
        via(&t, "GET /x HTTP/1.1\r\nHost: a.b.example.com\r\n\r\n").0,
        "b"
    );
    let r = get(t.gw.addr, "example.com", "/x");
    assert_eq!(r.status, 404);
}

#[test]
fn templates_capture_and_rewrite_with_methods() {
    let t = setup();
    let (up, line) = via(
        &t,
        "GET /users/42/orders?limit=5 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert_eq!(up, "a");
    assert!(line.starts_with("GET /v2/orders/42?limit=5 "), "{line}");
    assert!(line.contains("limit=5"), "query kept: {line}");
    let (up, line) = via(
        &t,
        "POST /users/7/orders HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(up, "b");
    assert_eq!(line, "POST /users/7/orders HTTP/1.1");
    assert_eq!(
        send(
            t.gw.addr,
            b"DELETE /users/7/orders HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        .status,
        404
    );
    assert_eq!(
        get(t.gw.addr, "h", "/users//orders").status,
        404,
        "a param is one non-empty segment"
    );
}

#[test]
fn prefix_rewrites_and_segment_boundaries() {
    let t = setup();
    assert_eq!(
        via(&t, "GET /svc/items?q=1 HTTP/1.1\r\nHost: h\r\n\r\n").1,
        "GET /items?q=1 HTTP/1.1"
    );
    assert_eq!(
        via(&t, "GET /svc HTTP/1.1\r\nHost: h\r\n\r\n").1,
        "GET / HTTP/1.1"
    );
    assert_eq!(
        via(&t, "GET /old/thing HTTP/1.1\r\nHost: h\r\n\r\n").1,
        "GET /new/thing HTTP/1.1"
    );
    assert_eq!(
        get(t.gw.addr, "h", "/svcx").status,
        404,
        "prefix matches at segment boundaries"
    );
    assert_eq!(
        via(&t, "GET /exact HTTP/1.1\r\nHost: h\r\n\r\n").1,
        "GET /exact HTTP/1.1"
    );
    assert_eq!(get(t.gw.addr, "h", "/exact/more").status, 404);
}

#[test]
fn header_matchers_pick_the_route() {
    let t = setup();
    assert_eq!(
        via(&t, "GET /h HTTP/1.1\r\nHost: h\r\nX-Canary: yes\r\n\r\n").0,
        "b"
    );
    assert_eq!(
        via(
            &t,
            "GET /h HTTP/1.1\r\nHost: h\r\nAccept: application/vnd.v2+json\r\n\r\n"
        )
        .0,
        "b"
    );
    assert_eq!(
        via(
            &t,
            "GET /h HTTP/1.1\r\nHost: h\r\nAccept: application/json\r\n\r\n"
        )
        .0,
        "a"
    );
}

#[test]
fn priority_beats_specificity() {
    let t = setup();
    assert_eq!(via(&t, "GET /p/x HTTP/1.1\r\nHost: h\r\n\r\n").0, "b");
}

#[test]
fn unmatched_requests_get_a_json_404_and_the_connection_stays_usable() {
    let t = setup();
    let mut c = ringgate_testkit::client::Client::connect(t.gw.addr);
    c.send(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"error":"no_route"}"#);
    c.send(b"GET /exact HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        c.response().status,
        200,
        "keep-alive survives a 404 on a bodiless request"
    );
}
