//! Path spelling cannot get past route authorization, over HTTP/1.1 and HTTP/2.
//!
//! `/admin` needs an API key, `/` is public, and the upstream records every path it receives.
//! A corpus of hostile spellings of `/admin` (percent-escapes, dot segments, doubled slashes,
//! escaped separators, backslashes, `;` parameters, and their combinations) is sent without a
//! key. Whatever the gateway answers itself (401 from the admin route, 400 for a refused
//! spelling) is fine; what it forwards must not name `/admin` to an origin that decodes
//! leniently (every escape decoded, `\` read as `/`, `;params` stripped, dots resolved, slashes
//! merged). Forwarded paths are the normalized ones, and a route may opt into the client's
//! spelling. Header names with underscores are dropped, refused or allowed per listener, and
//! an allowed one never spoofs a managed identity header.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::client::{Client, Response};
use ringgate_testkit::config;
use ringgate_testkit::gateway::{gateway, TestGateway};
use ringgate_testkit::run::create_key;
use ringgate_testkit::scripted::{recorder, Received};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A key made with `ringgate keys create`, and the keys file naming it (its directory is
/// removed on drop).
struct Key {
    secret: String,
    file: PathBuf,
}

impl Drop for Key {
    fn drop(&mut self) {
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn make_key(tag: &str) -> Key {
    let bin = env!("CARGO_BIN_EXE_ringgate");
    let (secret, entry) = create_key(bin, &["--client-id", "ops", "--scopes", "admin"]);
    let dir = std::env::temp_dir().join(format!(
        "ringgate-paths-{tag}-{}-{}",
        std::process::id(),
        ringgate_testkit::gateway::free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.toml");
    std::fs::write(&file, entry).unwrap();
    Key { secret, file }
}

struct Setup {
    gw: TestGateway,
    seen: Arc<Mutex<Vec<Received>>>,
    key: Key,
    _up: ringgate_testkit::scripted::Scripted,
}

fn start(listener_extra: &str, tag: &str) -> Setup {
    let key = make_key(tag);
    let (up, seen) = recorder();
    let routes = [
        config::route(
            "admin",
            "/admin",
            "up",
            r#"auth = { mode = "required", methods = ["api_key"] }"#,
        ),
        config::route("raw", "/raw", "up", "forward_path = \"as_received\""),
        config::route("public", "/", "up", ""),
    ];
    let auth = format!("[auth]\napi_keys_file = \"{}\"\n", key.file.display());
    let text = config::with_listener("paths", listener_extra, up.addr, &auth, &routes);
    Setup {
        gw: gateway(&text),
        seen,
        key,
        _up: up,
    }
}

/// How a lenient origin reads a path: every escape decoded once, `\` as `/`, `;params`
/// stripped from each segment, dot segments resolved, empty segments dropped.
fn lenient(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let mut bytes = Vec::new();
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&path[i + 1..i + 3], 16) {
                bytes.push(v);
                i += 3;
                continue;
            }
        }
        bytes.push(b[i]);
        i += 1;
    }
    let text = String::from_utf8_lossy(&bytes).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn names_admin(path: &str) -> bool {
    let p = lenient(path);
    p == "/admin" || p.starts_with("/admin/")
}

/// The hostile corpus: spellings of `/admin` (and of paths below it) that some origin reads as
/// `/admin`.
fn corpus() -> Vec<String> {
    let leads = [
        "/",
        "//",
        "///",
        "/./",
        "/.//",
        "/public/../",
        "/public/./../",
        "/a/b/../../",
        "/../",
        "/%2e/",
        "/%2E%2E/",
        "/x/%2e%2e/",
        "/x/.%2e/",
        "/x/%2e./",
        "/%2f",
        "/%2F/",
        "/x%2f..%2f",
        "/x/..%2f",
        "/x/..%5c",
        "/x\\..\\",
        "\\",
        "/x/..;/",
        "/x/.;/../",
        "/;x/",
        "/%3b/",
        "/x/%2e%2e;/",
    ];
    let names = [
        "admin",
        "%61dmin",
        "%61%64%6d%69%6e",
        "adm%69n",
        "%41dmin",
        "admi%6E",
    ];
    let tails = [
        "",
        "/",
        "//",
        "/.",
        "/./",
        "/x",
        "/x/..",
        "%2f",
        "%2F",
        "%2fx",
        "%5c",
        "%00",
        ";x",
        ";/x",
        "/..;/",
        "\\",
        "?q=1",
        "%3f",
        "#frag",
        "/%2e",
        "/%2e%2e/admin",
    ];
    let mut out = Vec::new();
    for l in leads {
        for n in names {
            for t in tails {
                out.push(format!("{l}{n}{t}"));
            }
        }
    }
    // A few shapes of their own.
    for p in [
        "/public/%2e%2e/admin",
        "/public/%2e%2e%2fadmin",
        "/public%2f..%2fadmin",
        "/public/..%00/admin",
        "/%2561dmin",
        "/admin%20",
        "/admin%09",
        "/.admin",
        "/admin..",
        "/raw/../admin",
        "/raw/%2e%2e/admin",
        "/raw//../admin",
    ] {
        out.push(p.to_string());
    }
    out
}

fn last_seen(seen: &Arc<Mutex<Vec<Received>>>) -> Option<String> {
    let s = seen.lock().unwrap();
    s.last()
        .map(|r| r.request_line().split(' ').nth(1).unwrap_or("").to_string())
}

/// Sends `path` raw over HTTP/1.1 (a fresh connection each: refusals may close it).
fn send_h1(addr: SocketAddr, path: &str, key: Option<&str>) -> Response {
    let mut c = Client::connect(addr);
    let auth = key.map_or(String::new(), |k| format!("X-API-Key: {k}\r\n"));
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: api.test\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    c.response_to("GET")
}

#[test]
fn no_spelling_of_a_protected_path_passes_over_http1() {
    let s = start("", "h1");
    // The key opens the admin route, and the admin route is reached through spellings.
    assert_eq!(
        send_h1(s.gw.addr, "/admin", Some(&s.key.secret)).status,
        200
    );
    assert_eq!(last_seen(&s.seen).as_deref(), Some("/admin"));
    let mut refused = 0;
    let mut unauthorized = 0;
    let mut forwarded = 0;
    for path in corpus() {
        let before = s.seen.lock().unwrap().len();
        let r = send_h1(s.gw.addr, &path, None);
        let after = s.seen.lock().unwrap().len();
        match r.status {
            401 => unauthorized += 1,
            400 => refused += 1,
            _ => {}
        }
        if after > before {
            forwarded += 1;
            let got = last_seen(&s.seen).unwrap();
            assert!(
                !names_admin(&got),
                "bypass: {path:?} reached the upstream as {got:?} (status {})",
                r.status
            );
        } else {
            assert!(
                matches!(r.status, 400 | 401),
                "{path:?}: not forwarded, yet {}",
                r.status
            );
        }
    }
    // The corpus exercises every branch: the admin route recognised spellings, some were
    // refused, and harmless ones went through (to the public route).
    assert!(unauthorized > 100, "{unauthorized} routed to admin");
    assert!(refused > 100, "{refused} refused");
    assert!(forwarded > 10, "{forwarded} forwarded");
    // Spellings that the normalization resolves reach the admin route with the key, as /admin.
    for p in [
        "/%61dmin",
        "/./admin",
        "/public/../admin",
        "//admin",
        "/x/%2e%2e/admin/",
    ] {
        let r = send_h1(s.gw.addr, p, Some(&s.key.secret));
        assert_eq!(r.status, 200, "{p}");
        let got = last_seen(&s.seen).unwrap();
        assert!(
            got == "/admin" || got == "/admin/",
            "{p} forwarded as {got}"
        );
    }
}

#[test]
fn escaped_separators_can_be_kept_opaque_and_still_never_bypass() {
    let s = start("escaped_separators = \"keep\"", "keep");
    for path in corpus() {
        let before = s.seen.lock().unwrap().len();
        let r = send_h1(s.gw.addr, &path, None);
        if s.seen.lock().unwrap().len() > before {
            let got = last_seen(&s.seen).unwrap();
            // Kept escapes stay escaped: an origin that decodes `%2F` into a separator is the
            // operator's choice of this mode; the path the gateway forwards never has a raw
            // separator the route table did not see.
            assert!(!got.contains('\\'), "{path:?} forwarded as {got:?}");
            let decoded_once_keeping_separators = lenient(
                &got.replace("%2F", "_")
                    .replace("%5C", "_")
                    .replace("%3B", "_"),
            );
            assert!(
                !(decoded_once_keeping_separators == "/admin"
                    || decoded_once_keeping_separators.starts_with("/admin/")),
                "bypass: {path:?} reached the upstream as {got:?} (status {})",
                r.status
            );
        }
    }
    // `%2F` is opaque: `/admin%2Fx` is not below `/admin` here, it is the segment `admin%2Fx`.
    forwarded_as(&s, "/x%2f..%2fadmin", "/x%2F..%2Fadmin");
    forwarded_as(&s, "/a\\b", "/a%5Cb");
}

/// `GET path` (HTTP/1.1) is answered 200 and reached the upstream spelled `want`.
fn forwarded_as(s: &Setup, path: &str, want: &str) {
    let r = send_h1(s.gw.addr, path, None);
    assert_eq!(r.status, 200, "{path}");
    assert_eq!(last_seen(&s.seen).as_deref(), Some(want), "{path}");
}

#[test]
fn refused_spellings_get_400_with_a_reason_and_routes_can_forward_as_received() {
    let s = start("merge_slashes = false", "raw");
    for (p, code) in [
        ("/admin%2f", "encoded_separator_in_path"),
        ("/a%zz", "bad_path_escape"),
        ("/a\\b", "backslash_in_path"),
        ("/x/..;/admin", "dot_segment_parameters"),
    ] {
        let r = send_h1(s.gw.addr, p, None);
        assert_eq!(r.status, 400, "{p}");
        assert!(r.text().contains(code), "{p}: {}", r.text());
    }
    // Without merging, `//admin` is its own path: not the admin route, and sent as it is.
    forwarded_as(&s, "//admin", "//admin");
    // The raw route matches on the normalized path and forwards the client's spelling.
    forwarded_as(&s, "/raw/./%61?x=1", "/raw/./%61?x=1");
    forwarded_as(&s, "/public/./%61?x=1", "/public/a?x=1");
}

#[test]
fn no_spelling_of_a_protected_path_passes_over_http2() {
    let s = start("", "h2");
    let addr = s.gw.addr;
    let paths: Vec<String> = corpus()
        .into_iter()
        .filter(|p| p.parse::<http::uri::PathAndQuery>().is_ok())
        .collect();
    assert!(
        paths.len() > 1000,
        "{} paths an HTTP/2 client can send",
        paths.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen = s.seen.clone();
    let secret = s.key.secret.clone();
    let (unauthorized, refused) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        let driver = tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let mut counts = (0, 0);
        let keyed = http::Request::get(format!("http://{addr}/%61dmin"))
            .header("x-api-key", secret.as_str())
            .body(())
            .unwrap();
        let (f, _) = client.send_request(keyed, true).unwrap();
        assert_eq!(f.await.unwrap().status(), 200);
        assert_eq!(last_seen(&seen).as_deref(), Some("/admin"));
        for p in &paths {
            client = client.ready().await.unwrap();
            let before = seen.lock().unwrap().len();
            let req = http::Request::get(format!("http://{addr}{p}"))
                .body(())
                .unwrap();
            let (f, _) = client.send_request(req, true).unwrap();
            let status = f.await.unwrap().status().as_u16();
            match status {
                401 => counts.0 += 1,
                400 => counts.1 += 1,
                _ => {}
            }
            if seen.lock().unwrap().len() > before {
                let got = last_seen(&seen).unwrap();
                assert!(
                    !names_admin(&got),
                    "bypass over h2: {p:?} reached the upstream as {got:?}"
                );
            } else {
                assert!(
                    matches!(status, 400 | 401),
                    "{p:?}: not forwarded, yet {status}"
                );
            }
        }
        drop(client);
        let _ = driver.await;
        counts
    });
    assert!(
        unauthorized > 100 && refused > 100,
        "{unauthorized} / {refused}"
    );
}

/// Sends a request with `headers` and returns the upstream's view of it.
fn forwarded_head(s: &Setup, headers: &str) -> (u16, Option<String>) {
    let before = s.seen.lock().unwrap().len();
    let mut c = Client::connect(s.gw.addr);
    c.send(
        format!(
            "GET /admin HTTP/1.1\r\nHost: api.test\r\nX-API-Key: {}\r\n{headers}Connection: close\r\n\r\n",
            s.key.secret
        )
        .as_bytes(),
    );
    let r = c.response_to("GET");
    let seen = s.seen.lock().unwrap();
    let head = (seen.len() > before).then(|| seen.last().unwrap().head.clone());
    (r.status, head)
}

const SPOOF: &str = "X_Client_Id: spoof-client\r\nx_user_id: spoof-user\r\nX-User_Id: spoof-eve\r\nX_Forwarded_For: 6.6.6.6\r\nX_Client_Cert_Id: cn=spoof-cert\r\nX_Scopes: spoof-scope\r\nAccept_Language: fr\r\n";

#[test]
fn underscore_header_names_cannot_spoof_identity() {
    // Default: dropped, whatever they say.
    let s = start("", "us-drop");
    let (status, head) = forwarded_head(&s, SPOOF);
    assert_eq!(status, 200);
    let head = head.unwrap();
    assert!(!head.contains('_'), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-client-id: ops"),
        "{head}"
    );
    for bad in ["spoof-", "6.6.6.6"] {
        assert!(!head.contains(bad), "{bad} reached the upstream: {head}");
    }
    // Reject: 400 before anything else.
    let s = start("underscores_in_headers = \"reject\"", "us-reject");
    let (status, head) = forwarded_head(&s, "Accept_Language: fr\r\n");
    assert_eq!((status, head), (400, None));
    // Allow: ordinary ones pass, managed names in any spelling do not.
    let s = start("underscores_in_headers = \"allow\"", "us-allow");
    let (status, head) = forwarded_head(&s, SPOOF);
    assert_eq!(status, 200);
    let head = head.unwrap();
    assert!(head.contains("Accept_Language: fr"), "{head}");
    for bad in ["spoof-", "6.6.6.6"] {
        assert!(!head.contains(bad), "{bad} reached the upstream: {head}");
    }
}

#[test]
fn the_lenient_reader_of_this_test_sees_through_spellings() {
    // The oracle itself must recognise what it is there to catch.
    for p in [
        "/%61dmin",
        "/x/..;/admin",
        "//admin/",
        "/a\\..\\admin",
        "/admin;x",
        "/%2e%2e/admin",
    ] {
        assert!(names_admin(p), "{p}");
    }
    for p in ["/administrator", "/x/admin", "/%2561dmin"] {
        assert!(!names_admin(p), "{p}");
    }
}
