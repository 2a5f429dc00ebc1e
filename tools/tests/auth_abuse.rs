//! Authentication under abuse (issue 14, items 3 and 4): forged tokens cannot buy a core
//! (full signature checks are rationed per client address), and junk opaque tokens cannot deny
//! introspection to other clients.
//!
//! Clients at different addresses are real: the loopback network is 127.0.0.0/8, so a test
//! client binds 127.0.0.N before connecting. Nothing here sleeps for a fixed time or asserts a
//! duration; the assertions are counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ringgate_policies::auth::{mint, signature_checks, Algorithm};
use ringgate_testkit::client::{Client, Response};
use ringgate_testkit::config;
use ringgate_testkit::gateway::{gateway, TestGateway};
use ringgate_testkit::run::succeed;
use ringgate_testkit::scripted::recorder;
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEYGEN: &str = r#"
import sys, json
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm
d = sys.argv[1]
k = rsa.generate_private_key(65537, 2048)
open(f"{d}/rsa.pem", "wb").write(k.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
jwk = json.loads(RSAAlgorithm.to_jwk(k.public_key()))
jwk.update({"kid": "rsa", "alg": "RS256", "use": "sig"})
open(f"{d}/jwks.json", "w").write(json.dumps({"keys": [jwk]}))
"#;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("ringgate-abuse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A connection from the loopback address 127.0.0.`host`.
fn client_from(host: u8, to: SocketAddr) -> Client {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0);
    s.bind(&from.into()).unwrap();
    s.connect(&to.into()).unwrap();
    let stream: TcpStream = s.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    Client::over(stream)
}

fn bearer(c: &mut Client, path: &str, token: &str) -> Response {
    c.get_with(path, &[("Authorization", &format!("Bearer {token}"))])
}

fn refusals(gw: &TestGateway, reason: &str) -> f64 {
    let v = gw.metric(&format!(
        "ringgate_gateway_responses_total{{reason=\"{reason}\",status=\"401\"}}"
    ));
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

#[test]
fn forged_tokens_beyond_a_clients_budget_are_refused_without_verifying() {
    let dir = Dir::new("verify");
    succeed(
        std::process::Command::new("python3").args(["-c", KEYGEN, &dir.0.to_string_lossy()]),
        "keygen (python3 with pyjwt and cryptography)",
    );
    let (up, _seen) = recorder();
    // 1 check per second per client, a burst of 3: the flood below takes well under the
    // seconds it would need to earn its 60 checks back.
    let auth = format!(
        "[auth]\njwks_file = \"{}\"\nmax_verifications_per_client = 1\nverification_burst = 3\n\
         [auth.jwt]\nissuers = [\"https://idp.test\"]\naudiences = [\"api\"]\n",
        dir.0.join("jwks.json").display()
    );
    let route = config::route("api", "/api", "up", "auth = { mode = \"required\" }");
    let config = config::one_upstream("abuse", up.addr, &auth, &[route]);
    let gw = gateway(&config);
    let pem = std::fs::read(dir.0.join("rsa.pem")).unwrap();
    let token = |sub: &str| {
        let claims = json!({"sub": sub, "iss": "https://idp.test", "aud": "api",
            "exp": now() + 600, "scope": "read"});
        mint(&pem, Algorithm::RS256, Some("rsa"), &claims).unwrap()
    };
    let mut attacker = client_from(1, gw.addr);
    // A valid token, verified once (one check of the burst) and cached from then on.
    let cached = token("alice");
    assert_eq!(bearer(&mut attacker, "/api/a", &cached).status, 200);

    // 60 distinct forged RS256 tokens: right shape, right key, right claims, random signature.
    let forgeries: Vec<String> = (0..60u32)
        .map(|i| {
            let t = token(&format!("mallory-{i}"));
            let (msg, _) = t.rsplit_once('.').unwrap();
            let sig: Vec<u8> = (0..256u32).map(|j| (i * 31 + j * 7) as u8).collect();
            format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
        })
        .collect();
    let started = Instant::now();
    let checks_before = signature_checks();
    let mut statuses = Vec::new();
    for (i, forged) in forgeries.iter().enumerate() {
        let r = bearer(&mut attacker, "/api/f", forged);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer realm=")),
            "a challenge with every 401"
        );
        statuses.push(r.status);
        // The cached token passes throughout: hits are never charged.
        if i % 10 == 9 {
            assert_eq!(
                bearer(&mut attacker, "/api/a", &cached).status,
                200,
                "at {i}"
            );
        }
    }
    let checks = signature_checks() - checks_before;
    let elapsed_s = started.elapsed().as_secs();
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    // The burst left after alice (2), plus one per second that passed.
    assert!(
        checks <= 2 + elapsed_s + 1,
        "{checks} signature checks for 60 forgeries in {elapsed_s}s"
    );
    let limited = refusals(&gw, "verification_rate_limited");
    let bad = refusals(&gw, "bad_signature");
    assert_eq!(limited + bad, 60.0, "limited {limited}, bad {bad}");
    assert!(
        limited >= 60.0 - (3 + elapsed_s) as f64,
        "limited {limited}"
    );
    // Another address has its own budget: its new token is verified.
    let mut other = client_from(2, gw.addr);
    assert_eq!(bearer(&mut other, "/api/a", &token("carol")).status, 200);
}

/// A slow introspection provider: answers each call after `delay`, `active` for tokens that
/// start with `good-`, counting calls per token.
struct SlowProvider {
    addr: SocketAddr,
    calls: Arc<Mutex<HashMap<String, usize>>>,
    _server: ringgate_testkit::scripted::Scripted,
}

impl SlowProvider {
    fn spawn(delay: Duration) -> Self {
        use std::io::Write;
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let c2 = calls.clone();
        let server = ringgate_testkit::scripted::Scripted::spawn(move |mut s, _| {
            let mut carry = Vec::new();
            let Some(req) = ringgate_testkit::scripted::read_request(&mut s, &mut carry) else {
                return;
            };
            let body = String::from_utf8_lossy(&req.raw_body).to_string();
            let token = body
                .strip_prefix("token=")
                .and_then(|b| b.split('&').next())
                .unwrap_or("")
                .to_string();
            *c2.lock().unwrap().entry(token.clone()).or_insert(0) += 1;
            // The provider's own latency (what makes slots scarce), not a wait in the test.
            std::thread::sleep(delay);
            let answer = if token.starts_with("good-") {
                format!(r#"{{"active":true,"sub":"{token}","scope":"read"}}"#)
            } else {
                r#"{"active":false}"#.to_string()
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        });
        SlowProvider {
            addr: server.addr,
            calls,
            _server: server,
        }
    }

    fn calls_for(&self, token: &str) -> usize {
        self.calls.lock().unwrap().get(token).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }
}

/// Waits for `cond` with a deadline (no fixed sleep: polls).
fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn junk_opaque_tokens_from_one_client_do_not_starve_other_clients() {
    let provider = SlowProvider::spawn(Duration::from_millis(200));
    let (up, _seen) = recorder();
    // Eight call slots for the whole process; the flooding client may hold two of them.
    let introspection = format!(
        "[auth.introspection]\nurl = \"http://{}/introspect\"\ntimeout = \"3s\"\n\
         negative_cache_ttl = \"60s\"\nmax_inflight = 8\nmax_inflight_per_client = 2\nqueue = 64\n",
        provider.addr
    );
    let route = config::route(
        "opaque",
        "/opaque",
        "up",
        r#"auth = { methods = ["introspection"] }"#,
    );
    let config = config::one_upstream("abuse-introspection", up.addr, &introspection, &[route]);
    let gw = gateway(&config);
    let addr = gw.addr;

    // One junk token, asked about once: remembered as inactive.
    let mut first = client_from(1, addr);
    assert_eq!(bearer(&mut first, "/opaque/x", "junk-repeat").status, 401);
    assert_eq!(provider.calls_for("junk-repeat"), 1);

    // The flood: 12 connections from 127.0.0.1, each sending distinct junk tokens (and the
    // repeated one) as fast as answers come back, more calls than there are slots.
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..12)
        .map(|n| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = client_from(1, addr);
                let mut statuses = HashMap::<u16, usize>::new();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let token = if i.is_multiple_of(4) {
                        "junk-repeat".to_string()
                    } else {
                        format!("junk-{n}-{i}")
                    };
                    let r = bearer(&mut c, "/opaque/x", &token);
                    *statuses.entry(r.status).or_insert(0) += 1;
                    if r.header("connection").is_some_and(|v| v == "close") {
                        c = client_from(1, addr);
                    }
                    i += 1;
                }
                statuses
            })
        })
        .collect();
    // The flood is under way: junk calls are reaching the provider.
    wait_for(
        "the junk flood to reach the provider",
        Duration::from_secs(30),
        || provider.total() >= 12,
    );

    // Twenty other clients, each from its own address, each with a new valid token at once.
    let valid: Vec<_> = (0..20u8)
        .map(|n| {
            std::thread::spawn(move || {
                let mut c = client_from(10 + n, addr);
                let r = bearer(&mut c, "/opaque/v", &format!("good-{n}"));
                (n, r.status, r.text())
            })
        })
        .collect();
    let valid: Vec<(u8, u16, String)> = valid.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    let mut junk = HashMap::<u16, usize>::new();
    for h in flood {
        for (s, n) in h.join().unwrap() {
            *junk.entry(s).or_insert(0) += n;
        }
    }
    for (n, status, text) in &valid {
        assert_eq!(
            *status, 200,
            "valid client {n}: {text} (junk answers: {junk:?})"
        );
        assert_eq!(provider.calls_for(&format!("good-{n}")), 1);
    }
    // The flood's junk got 401 (inactive) or 503 (its share of calls used), never a 200; it
    // asked for more than its share.
    assert!(junk.keys().all(|s| [401, 503].contains(s)), "{junk:?}");
    assert!(junk.get(&503).is_some_and(|&n| n > 0), "{junk:?}");
    // The repeated junk token never reached the provider again within the negative TTL.
    assert_eq!(provider.calls_for("junk-repeat"), 1, "{junk:?}");
}
