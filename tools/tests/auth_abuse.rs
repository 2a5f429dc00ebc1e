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
use ringgate_testkit::gateway::{gateway, TestGateway};
use ringgate_testkit::scripted::recorder;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
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
    let out = std::process::Command::new("python3")
        .args(["-c", KEYGEN, &dir.0.to_string_lossy()])
        .output()
        .expect("python3 with pyjwt and cryptography");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (up, _seen) = recorder();
    // 1 check per second per client, a burst of 3: the flood below takes well under the
    // seconds it would need to earn its 60 checks back.
    let config = format!(
        r#"version = "abuse"
[[listeners]]
address = "127.0.0.1:0"
[auth]
jwks_file = "{jwks}"
max_verifications_per_client = 1
verification_burst = 3
[auth.jwt]
issuers = ["https://idp.test"]
audiences = ["api"]
[[upstreams]]
name = "up"
endpoints = ["{up}"]
[[routes]]
id = "api"
path = {{ prefix = "/api" }}
upstream = "up"
auth = {{ mode = "required" }}
"#,
        jwks = dir.0.join("jwks.json").display(),
        up = up.addr,
    );
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
