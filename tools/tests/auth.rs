//! Authentication at the edge (issue 4, first part): API keys and JWTs checked on the request
//! path, scopes, challenges, identity forwarding and anti-spoofing.
//!
//! Keys are generated per run by a Python script with the `cryptography` package, which also
//! writes the JWKS and tokens signed by an independent implementation (PyJWT); ringgate's own
//! `mint` signs the rest with the same keys. `scripts/test.sh` installs both packages.

use ringgate::config::RawConfig;
use ringgate::control::{ConfigSource, Control};
use ringgate::server::{start, RunningGateway};
use ringgate::snapshot::{text_hash, Snapshot};
use ringgate_policies::auth::{generate_key, mint, Algorithm};
use ringgate_testkit::client::{send, Response};
use ringgate_testkit::config;
use ringgate_testkit::gateway::test_profile;
use ringgate_testkit::run::create_key;
use ringgate_testkit::run::succeed;
use ringgate_testkit::scripted::{recorder, Received};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const KEYGEN: &str = r#"
import sys, json, time, hmac, hashlib, base64, jwt
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm, ECAlgorithm, OKPAlgorithm
d = sys.argv[1]
keys = {"rsa": rsa.generate_private_key(65537, 2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
        "rogue": rsa.generate_private_key(65537, 2048)}
algs = {"rsa": ("RS256", RSAAlgorithm), "ec": ("ES256", ECAlgorithm), "ed": ("EdDSA", OKPAlgorithm),
        "rogue": ("RS256", RSAAlgorithm)}
jwks = []
now = int(time.time())
for name, k in keys.items():
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    open(f"{d}/{name}.pem", "wb").write(pem)
    alg, algo = algs[name]
    if name != "rogue":
        jwk = json.loads(algo.to_jwk(k.public_key()))
        jwk.update({"kid": name, "alg": alg, "use": "sig"})
        jwks.append(jwk)
        tok = jwt.encode({"sub": f"py-{name}", "iss": "https://idp.test", "aud": "api",
                          "exp": now + 600, "scope": "read write", "client_id": "pyclient",
                          "tenant": "t1"}, pem, algorithm=alg, headers={"kid": name})
        open(f"{d}/py-{name}.jwt", "w").write(tok)
open(f"{d}/jwks.json", "w").write(json.dumps({"keys": jwks}))
# Algorithm confusion: an HS256 token whose HMAC secret is the RSA public key's PEM.
pub = keys["rsa"].public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "kid": "rsa", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "mallory", "iss": "https://idp.test", "aud": "api",
                       "exp": now + 600, "scope": "read"}).encode())
sig = b64(hmac.new(pub, head + b"." + body, hashlib.sha256).digest())
open(f"{d}/confused.jwt", "wb").write(head + b"." + body + b"." + sig)
none = b64(json.dumps({"alg": "none", "kid": "rsa"}).encode())
open(f"{d}/none.jwt", "wb").write(none + b"." + body + b".")
"#;

struct Keys {
    dir: PathBuf,
}

impl Keys {
    /// [`Keys::make`] and an empty API key file beside them (for tests about tokens only).
    fn with_empty_key_file(name: &str) -> (Self, PathBuf) {
        let keys = Keys::make(name);
        let kf = keys.path("keys.toml");
        std::fs::write(&kf, "").expect("keys");
        (keys, kf)
    }

    fn make(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ringgate-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        succeed(
            std::process::Command::new("python3").args(["-c", KEYGEN, &dir.to_string_lossy()]),
            "keygen (python3 with pyjwt and cryptography, which scripts/test.sh installs)",
        );
        Keys { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn read(&self, f: &str) -> String {
        std::fs::read_to_string(self.path(f)).expect("read")
    }

    fn mint(&self, key: &str, alg: Algorithm, kid: &str, claims: serde_json::Value) -> String {
        let pem = std::fs::read(self.path(&format!("{key}.pem"))).expect("pem");
        mint(&pem, alg, Some(kid), &claims).expect("mint")
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"sub": "alice", "iss": "https://idp.test", "aud": "api",
        "exp": now() + 600, "scope": "read", "client_id": "web", "tenant": "acme"});
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c
}

struct Gw {
    gw: Option<RunningGateway>,
    control: Arc<Control>,
    file: PathBuf,
    seen: Arc<Mutex<Vec<Received>>>,
    _up: ringgate_testkit::scripted::Scripted,
}

impl Gw {
    fn start(keys: &Keys, key_file: &Path) -> Self {
        let jwks = format!("jwks_file = \"{}\"", keys.path("jwks.json").display());
        Self::start_with(keys, key_file, &jwks)
    }

    fn start_with(keys: &Keys, key_file: &Path, key_source: &str) -> Self {
        let (up, seen) = recorder();
        let auth = format!(
            "[auth]\napi_keys_file = \"{}\"\n{key_source}\n[auth.jwt]\n\
             issuers = [\"https://idp.test\"]\naudiences = [\"api\"]\nleeway = \"5s\"\ntenant_claim = \"tenant\"\n",
            key_file.display()
        );
        let mut routes = vec![
            config::route(
                "api",
                "/api",
                "up",
                r#"auth = { mode = "required", scopes_any = ["read"] }"#,
            ),
            config::route(
                "admin",
                "/admin",
                "up",
                r#"auth = { mode = "required", scopes_all = ["admin"] }"#,
            ),
            config::route(
                "keys-only",
                "/keys-only",
                "up",
                r#"auth = { methods = ["api_key"], keep_credential = true }"#,
            ),
            config::route("open", "/open", "up", ""),
        ];
        if key_source.contains("[auth.introspection]") {
            let opaque = r#"auth = { methods = ["introspection"], scopes_any = ["read"] }"#;
            routes.push(config::route("opaque", "/opaque", "up", opaque));
        }
        let text = config::one_upstream("auth", up.addr, &auth, &routes);
        let file = keys.path("ringgate.toml");
        std::fs::write(&file, &text).expect("config");
        let raw = RawConfig::parse(&text).expect("parse");
        let snap = Snapshot::build(&raw, text_hash(&text)).unwrap_or_else(|e| panic!("{e}"));
        let gw = start(snap, &test_profile()).expect("start");
        let control = Control::new(ConfigSource::File(file.clone()), raw, &gw);
        Gw {
            gw: Some(gw),
            control,
            file,
            seen,
            _up: up,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.as_ref().expect("running").addrs[0]
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: h\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        send(self.addr(), req.as_bytes())
    }

    fn bearer(&self, path: &str, token: &str) -> Response {
        self.get(
            path,
            &[("Authorization", &format!("Bearer {}", token.trim()))],
        )
    }

    fn last(&self) -> Received {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request reached the upstream")
    }

    fn upstream_count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(g) = self.gw.take() {
            g.stop();
        }
    }
}

fn assert_unauthorized(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(r.text(), r#"{"error":"unauthorized"}"#, "{what}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.contains("realm=")),
        "{what}: challenge"
    );
}

#[test]
fn jwts_from_both_implementations_are_accepted_and_identity_is_forwarded() {
    let (keys, kf) = Keys::with_empty_key_file("ok");
    let gw = Gw::start(&keys, &kf);
    for (key, alg) in [
        ("rsa", Algorithm::RS256),
        ("ec", Algorithm::ES256),
        ("ed", Algorithm::EdDSA),
    ] {
        let t = keys.mint(key, alg, key, claims(json!({})));
        let r = gw.bearer("/api/x", &t);
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        let up = gw.last();
        assert_eq!(up.header("x-user-id").as_deref(), Some("alice"));
        assert_eq!(up.header("x-client-id").as_deref(), Some("web"));
        assert_eq!(up.header("x-tenant-id").as_deref(), Some("acme"));
        assert_eq!(up.header("x-scopes").as_deref(), Some("read"));
        assert_eq!(
            up.header("authorization"),
            None,
            "the credential is stripped"
        );
        // Warm: the same token again (cache hit) still passes.
        assert_eq!(gw.bearer("/api/x", &t).status, 200);
        let py = keys.read(&format!("py-{key}.jwt"));
        let r = gw.bearer("/api/y", &py);
        assert_eq!(r.status, 200, "PyJWT {key}: {}", r.text());
        assert_eq!(
            gw.last().header("x-user-id").as_deref(),
            Some(format!("py-{key}").as_str())
        );
    }
}

#[test]
fn bad_tokens_are_refused_with_401_and_missing_scopes_with_403() {
    let (keys, kf) = Keys::with_empty_key_file("bad");
    let gw = Gw::start(&keys, &kf);
    let before = gw.upstream_count();
    let t = |extra| keys.mint("rsa", Algorithm::RS256, "rsa", claims(extra));
    let cases = [
        ("expired", t(json!({"exp": now() - 60}))),
        ("not yet valid", t(json!({"nbf": now() + 600}))),
        ("wrong audience", t(json!({"aud": "other"}))),
        ("wrong issuer", t(json!({"iss": "https://evil.test"}))),
        (
            "wrong key",
            keys.mint("rogue", Algorithm::RS256, "rsa", claims(json!({}))),
        ),
        (
            "unknown kid",
            keys.mint("rsa", Algorithm::RS256, "nope", claims(json!({}))),
        ),
        ("alg none", keys.read("none.jwt")),
        ("alg confusion", keys.read("confused.jwt")),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, token) in &cases {
        assert_unauthorized(&gw.bearer("/api/x", token), what);
    }
    // A tampered payload: swap in another subject, keep the signature.
    let good = t(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = b64url(&serde_json::to_vec(&claims(json!({"sub": "root"}))).expect("json"));
    assert_unauthorized(
        &gw.bearer("/api/x", &format!("{}.{forged}.{}", parts[0], parts[2])),
        "tampered",
    );
    assert_unauthorized(&gw.get("/api/x", &[]), "missing");
    assert_eq!(
        gw.upstream_count(),
        before,
        "no refused request reached the upstream"
    );
    let r = gw.bearer("/admin/x", &good);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.text(), r#"{"error":"forbidden"}"#);
    let m = ringgate::admin::metrics_text(&gw.control);
    assert!(m.contains("reason=\"expired\",status=\"401\"} 1"), "{m}");
    assert!(
        m.contains("reason=\"insufficient_scope\",status=\"403\"} 1"),
        "{m}"
    );
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn api_keys_are_created_used_and_revoked() {
    let keys = Keys::make("apikey");
    let (secret, entry) =
        generate_key("billing", Some("acme"), &["read"], Some("gold"), None).expect("key");
    let kf = keys.path("keys.toml");
    std::fs::write(&kf, entry.to_toml()).expect("keys");
    assert!(
        !std::fs::read_to_string(&kf)
            .expect("read")
            .contains(&secret[secret.len() - 10..]),
        "the file holds no secret"
    );
    let gw = Gw::start(&keys, &kf);
    let r = gw.get("/api/a", &[("X-API-Key", &secret)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let up = gw.last();
    assert_eq!(up.header("x-client-id").as_deref(), Some("billing"));
    assert_eq!(up.header("x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(up.header("x-api-key"), None);
    let r = gw.get("/api/b", &[("Authorization", &format!("ApiKey {secret}"))]);
    assert_eq!(r.status, 200);
    // A route that keeps the credential, and one that takes only keys.
    assert_eq!(
        gw.get("/keys-only/c", &[("X-API-Key", &secret)]).status,
        200
    );
    assert_eq!(
        gw.last().header("x-api-key").as_deref(),
        Some(secret.as_str())
    );
    let jwt = keys.mint("rsa", Algorithm::RS256, "rsa", claims(json!({})));
    assert_unauthorized(&gw.bearer("/keys-only/c", &jwt), "jwt on a keys-only route");
    let mut wrong = secret.clone();
    wrong.pop();
    wrong.push(if secret.ends_with('A') { 'B' } else { 'A' });
    assert_unauthorized(&gw.get("/api/a", &[("X-API-Key", &wrong)]), "wrong secret");
    // Revoke: edit the key file, reload; the key stops working.
    let revoked = entry.to_toml().replace("revoked = false", "revoked = true");
    let revoked = if revoked.contains("revoked = true") {
        revoked
    } else {
        format!("{revoked}revoked = true\n")
    };
    std::fs::write(&kf, revoked).expect("revoke");
    std::fs::write(
        &gw.file,
        std::fs::read_to_string(&gw.file)
            .expect("cfg")
            .replace("version = \"auth\"", "version = \"auth2\""),
    )
    .expect("cfg");
    gw.control.reload("test").expect("reload");
    assert_unauthorized(&gw.get("/api/a", &[("X-API-Key", &secret)]), "revoked");
}

#[test]
fn identity_headers_sent_by_clients_never_reach_the_upstream() {
    let (keys, kf) = Keys::with_empty_key_file("spoof");
    let gw = Gw::start(&keys, &kf);
    let spoof = [
        ("X-User-Id", "root"),
        ("X-Client-Id", "admin"),
        ("X-Tenant-Id", "other"),
        ("X-Scopes", "admin"),
    ];
    assert_eq!(gw.get("/open/x", &spoof).status, 200);
    let up = gw.last();
    for (h, _) in spoof {
        assert_eq!(up.header(h), None, "{h} passed through an open route");
    }
    let t = keys.mint("ec", Algorithm::ES256, "ec", claims(json!({})));
    let mut hs = spoof.to_vec();
    let auth = format!("Bearer {t}");
    hs.push(("Authorization", &auth));
    assert_eq!(gw.get("/api/x", &hs).status, 200);
    let up = gw.last();
    assert_eq!(up.header("x-user-id").as_deref(), Some("alice"));
    assert_eq!(up.header("x-scopes").as_deref(), Some("read"));
    assert_eq!(up.header("x-tenant-id").as_deref(), Some("acme"));
}

#[test]
fn the_cli_creates_keys_and_mints_tokens_the_gateway_accepts() {
    let bin = env!("CARGO_BIN_EXE_ringgate");
    let keys = Keys::make("cli");
    let args = ["--client-id", "cli-app", "--scopes", "read,write"];
    let (secret, entry) = create_key(bin, &[&args[..], &["--tenant", "acme"]].concat());
    assert!(
        entry.contains("[[keys]]") && !entry.contains(&secret),
        "{entry}"
    );
    let kf = keys.path("keys.toml");
    std::fs::write(&kf, &entry).expect("keys");
    let gw = Gw::start(&keys, &kf);
    assert_eq!(gw.get("/api/a", &[("X-API-Key", &secret)]).status, 200);
    assert_eq!(gw.last().header("x-scopes").as_deref(), Some("read write"));
    let out = succeed(
        std::process::Command::new(bin).args([
            "token",
            "--key",
            &keys.path("ed.pem").to_string_lossy(),
            "--alg",
            "EdDSA",
            "--kid",
            "ed",
            "--claims",
            r#"{"sub":"cli-user","iss":"https://idp.test","aud":"api","scope":"read"}"#,
        ]),
        "ringgate token",
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(gw.bearer("/api/t", &token).status, 200);
    assert_eq!(gw.last().header("x-user-id").as_deref(), Some("cli-user"));
}

/// A tiny HTTP server answering every request with `respond(path, body)` (or holding the
/// connection without an answer on `None`), counting requests.
struct TinyServer {
    addr: SocketAddr,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    _server: ringgate_testkit::scripted::Scripted,
}

impl TinyServer {
    fn spawn<F>(respond: F) -> Self
    where
        F: Fn(&str, &[u8]) -> Option<(u16, String)> + Send + Sync + 'static,
    {
        use std::io::Write;
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h2 = hits.clone();
        let server = ringgate_testkit::scripted::Scripted::spawn(move |mut s, _| {
            let mut carry = Vec::new();
            let Some(req) = ringgate_testkit::scripted::read_request(&mut s, &mut carry) else {
                return;
            };
            h2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = req
                .request_line()
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .to_string();
            match respond(&path, &req.raw_body) {
                Some((status, body)) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                // Stall: hold the connection without answering.
                None => std::thread::sleep(std::time::Duration::from_secs(5)),
            }
        });
        TinyServer {
            addr: server.addr,
            hits,
            _server: server,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn jwks_subset(keys: &Keys, kids: &[&str]) -> String {
    let all: serde_json::Value = serde_json::from_str(&keys.read("jwks.json")).expect("jwks");
    let list: Vec<serde_json::Value> = all["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap_or("")))
        .cloned()
        .collect();
    json!({ "keys": list }).to_string()
}

#[test]
fn a_rotated_key_is_fetched_once_for_a_burst_of_unknown_kids() {
    let (keys, kf) = Keys::with_empty_key_file("rotate");
    let served = Arc::new(Mutex::new(jwks_subset(&keys, &["rsa"])));
    let s2 = served.clone();
    let idp = TinyServer::spawn(move |_, _| Some((200, s2.lock().expect("lock").clone())));
    let source = format!(
        "jwks_url = \"http://{}/.well-known/jwks.json\"\njwks_min_refresh = \"500ms\"\nfetch_timeout = \"2s\"",
        idp.addr
    );
    let gw = Gw::start_with(&keys, &kf, &source);
    assert_eq!(idp.hits(), 1, "one fetch at start");
    let rsa = keys.mint("rsa", Algorithm::RS256, "rsa", claims(json!({})));
    assert_eq!(gw.bearer("/api/x", &rsa).status, 200);
    // The provider rotates in a new key; tokens signed by it arrive, 200 at once.
    *served.lock().expect("lock") = jwks_subset(&keys, &["rsa", "ec"]);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let ec = keys.mint("ec", Algorithm::ES256, "ec", claims(json!({})));
    let addr = gw.addr();
    let statuses: Vec<u16> = (0..200)
        .map(|_| {
            let t = ec.clone();
            std::thread::spawn(move || {
                send(
                    addr,
                    format!("GET /api/r HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {t}\r\n\r\n")
                        .as_bytes(),
                )
                .status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(
        idp.hits(),
        2,
        "200 requests with an unknown kid caused exactly one fetch"
    );
    // A kid the provider does not have either: one more (rate-limited) look, then a clean 401.
    let nope = keys.mint("ed", Algorithm::EdDSA, "ed", claims(json!({})));
    assert_unauthorized(&gw.bearer("/api/x", &nope), "kid unknown after refresh");
    assert!(idp.hits() <= 3);
}

#[test]
fn opaque_tokens_are_introspected_cached_and_fail_closed_when_the_provider_is_down() {
    let (keys, kf) = Keys::with_empty_key_file("intro");
    let exp = now() + 600;
    let idp = TinyServer::spawn(move |_, body| {
        let body = String::from_utf8_lossy(body).to_string();
        if body.contains("token=good-token") {
            Some((
                200,
                format!(
                    r#"{{"active":true,"sub":"intro-user","client_id":"c1","scope":"read","exp":{exp}}}"#
                ),
            ))
        } else {
            Some((200, r#"{"active":false}"#.to_string()))
        }
    });
    let source = format!(
        "jwks_file = \"{}\"\n[auth.introspection]\nurl = \"http://{}/introspect\"\nclient_id = \"gw\"\nclient_secret = \"s3cret\"\ntimeout = \"300ms\"",
        keys.path("jwks.json").display(),
        idp.addr
    );
    let gw = Gw::start_with(&keys, &kf, &source);
    let r = gw.bearer("/opaque/a", "good-token");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.last().header("x-user-id").as_deref(), Some("intro-user"));
    assert_eq!(gw.bearer("/opaque/a", "good-token").status, 200);
    assert_eq!(idp.hits(), 1, "the second use came from the cache");
    assert_unauthorized(&gw.bearer("/opaque/a", "revoked-token"), "inactive");
    // Over HTTP/2 too: the plan made again after the introspection wait finds the stream's
    // typed head again (a new token: not cached, so the request waits for the provider).
    let url = format!("http://{}/opaque/a", gw.addr());
    let (ok, code, err) = ringgate_testkit::curl::curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Authorization: Bearer good-token-h2",
        &url,
    ]);
    assert!(ok, "curl: {err}");
    assert_eq!(code, "200", "HTTP/2 after an introspection wait");
    assert_eq!(idp.hits(), 3, "the new token was introspected once");
    drop(gw);
    // A provider that never answers: 503 within the timeout, not a hang.
    let stalled = TinyServer::spawn(|_, _| None);
    let source = format!(
        "jwks_file = \"{}\"\n[auth.introspection]\nurl = \"http://{}/introspect\"\ntimeout = \"300ms\"",
        keys.path("jwks.json").display(),
        stalled.addr
    );
    let gw = Gw::start_with(&keys, &kf, &source);
    let t0 = std::time::Instant::now();
    let r = gw.bearer("/opaque/a", "good-token");
    let took = t0.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), r#"{"error":"auth_unavailable"}"#);
    assert!(
        took < std::time::Duration::from_secs(3),
        "answered after {took:?}"
    );
}

#[test]
fn splits_and_consistent_hashing_can_key_on_the_identity() {
    use ringgate_testkit::stub::stub;
    let (keys, _kf) = Keys::with_empty_key_file("ident");
    let (a, b, c3) = (stub("A"), stub("B"), stub("C"));
    let text = format!(
        r#"version = "ident"
[[listeners]]
address = "127.0.0.1:0"
[auth]
jwks_file = "{jwks}"
[[upstreams]]
name = "pool"
endpoints = ["{a}", "{b}", "{c}"]
balance = "consistent_hash"
hash_on = {{ identity = true }}
[[upstreams]]
name = "canary"
endpoints = ["{c}"]
[[routes]]
id = "sticky"
path = {{ prefix = "/sticky" }}
upstream = "pool"
auth = {{ methods = ["jwt"] }}
[[routes]]
id = "split"
path = {{ prefix = "/split" }}
split = [{{ upstream = "pool", weight = 50 }}, {{ upstream = "canary", weight = 50 }}]
split_on = {{ identity = true }}
auth = {{ methods = ["jwt"] }}
"#,
        jwks = keys.path("jwks.json").display(),
        a = a.addr(),
        b = b.addr(),
        c = c3.addr(),
    );
    let raw = RawConfig::parse(&text).expect("parse");
    let snap = Snapshot::build(&raw, text_hash(&text)).unwrap_or_else(|e| panic!("{e}"));
    let gw = start(snap, &test_profile()).expect("start");
    let addr = gw.addrs[0];
    let mut seen = std::collections::HashSet::new();
    for user in 0..40 {
        let t = keys.mint(
            "rsa",
            Algorithm::RS256,
            "rsa",
            json!({"sub": format!("u{user}"), "exp": now() + 600}),
        );
        let mut first = None;
        for path in ["/sticky/1", "/sticky/2", "/sticky/3"] {
            let r = send(
                addr,
                format!("GET {path} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {t}\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(r.status, 200);
            let who = r.header("x-upstream").unwrap_or("").to_string();
            assert_eq!(
                first.get_or_insert_with(|| who.clone()),
                &who,
                "user {user} moved"
            );
        }
        seen.insert(first.unwrap_or_default());
        let side = |_: u8| {
            send(
                addr,
                format!("GET /split HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {t}\r\n\r\n")
                    .as_bytes(),
            )
            .header("x-upstream")
            .unwrap_or("")
            .to_string()
        };
        let s1 = side(0);
        // Sticky on the split too: the canary side (C) stays the canary side.
        assert_eq!(s1 == "C", side(1) == "C", "user {user} changed split side");
    }
    assert_eq!(
        seen.len(),
        3,
        "identities spread over the endpoints: {seen:?}"
    );
    gw.stop();
}

#[test]
fn jwks_and_introspection_are_fetched_over_https_verified_against_the_ca() {
    use ringgate_testkit::pki::Pki;
    use ringgate_testkit::tlsupstream::{tls_server, Seen};
    let (keys, kf) = Keys::with_empty_key_file("https-idp");
    let pki = Pki::new();
    let cert = pki.server("idp", &["127.0.0.1"]);
    let jwks = jwks_subset(&keys, &["rsa"]);
    let exp = now() + 600;
    let idp = tls_server(
        &cert,
        None,
        Arc::new(move |s: &Seen<'_>| {
            if s.head.starts_with("GET /.well-known/jwks.json ") {
                (200, jwks.clone())
            } else if s.head.starts_with("POST /introspect ")
                && String::from_utf8_lossy(s.body).contains("token=good-token")
            {
                (
                    200,
                    format!(r#"{{"active":true,"sub":"tls-user","scope":"read","exp":{exp}}}"#),
                )
            } else {
                (404, String::new())
            }
        }),
    );
    let ca = pki.server_ca_path().display().to_string();
    let source = |ca_line: &str| {
        format!(
            "jwks_url = \"https://{0}/.well-known/jwks.json\"\n{ca_line}\n[auth.introspection]\nurl = \"https://{0}/introspect\"\ntimeout = \"2s\"",
            idp.addr
        )
    };
    let gw = Gw::start_with(&keys, &kf, &source(&format!("ca = \"{ca}\"")));
    let rsa = keys.mint("rsa", Algorithm::RS256, "rsa", claims(json!({})));
    assert_eq!(gw.bearer("/api/x", &rsa).status, 200, "JWKS over https");
    let r = gw.bearer("/opaque/a", "good-token");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.last().header("x-user-id").as_deref(), Some("tls-user"));
    assert!(idp.handshakes() >= 2);
    drop(gw);
    // Without the CA, the host's roots do not trust the test CA: no keys, no introspection.
    let before = idp.handshakes();
    let gw = Gw::start_with(&keys, &kf, &source(""));
    assert_unauthorized(&gw.bearer("/api/x", &rsa), "no key set fetched");
    assert_eq!(gw.bearer("/opaque/a", "good-token").status, 503);
    assert_eq!(
        idp.handshakes(),
        before,
        "an unverified server never completes a handshake"
    );
}
