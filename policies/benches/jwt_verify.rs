//! Credential verification cost: a JWT per algorithm (RS256 with RSA 2048, ES256, EdDSA),
//! cold (full verify: header, key lookup, signature, claims, identity) against warm (a
//! `TokenCache` hit: SHA-256 of the token and a probe), and `precheck` (everything a cold verify
//! does except the public-key operation: the admission hook refuses it), so cold minus precheck
//! is the signature check itself; plus an API key check and credential extraction for scale.
//!
//! Keys are generated per run with the `openssl` command line; tokens carry a typical claim
//! set (iss, aud, sub, azp, scope, exp, iat, jti), about 600-800 bytes for RS256.
//!
//! Run:
//! `cargo bench -p ringgate-policies --bench jwt_verify -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use ringgate_policies::auth::{
    extract, generate_key, mint, verify, verify_admitted, Algorithm, Jwks, JwtPolicy,
    JwtPolicySpec, KeyStore, TokenCache,
};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn openssl(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("this bench needs the `openssl` command line tool");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// (private PEM, public PEM)
fn key_pair(genpkey_args: &[&str]) -> (String, String) {
    let private = openssl(&[&["genpkey"], genpkey_args].concat(), b"");
    let public = openssl(&["pkey", "-pubout"], private.as_bytes());
    (private, public)
}

fn bench_jwt(c: &mut Criterion) {
    let policy = JwtPolicy::new(JwtPolicySpec {
        issuers: vec!["https://idp.example.com/".into()],
        audiences: vec!["orders-api".into()],
        ..JwtPolicySpec::default()
    })
    .unwrap();
    let claims = json!({
        "iss": "https://idp.example.com/", "aud": ["orders-api", "billing-api"],
        "sub": "user-0123456789", "azp": "web-frontend",
        "scope": "orders:read orders:write profile email",
        "exp": NOW + 3600, "iat": NOW - 60, "jti": "3f1b6c2e-9a7d-4e55-8d1a-0c2b7e6f9a11"
    });
    let cases = [
        (
            "RS256",
            Algorithm::RS256,
            vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
        (
            "ES256",
            Algorithm::ES256,
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        ("EdDSA", Algorithm::EdDSA, vec!["-algorithm", "ed25519"]),
    ];
    let mut group = c.benchmark_group("jwt_verify");
    for (name, alg, args) in cases {
        let (private, public) = key_pair(&args);
        let jwks = Jwks::from_public_pem(public.as_bytes(), alg, Some("k1")).unwrap();
        let token = mint(private.as_bytes(), alg, Some("k1"), &claims).unwrap();
        verify(&jwks, &policy, token.as_bytes(), NOW).unwrap();
        eprintln!("{name}: token of {} bytes", token.len());

        group.bench_function(BenchmarkId::new("cold", name), |b| {
            b.iter(|| verify(&jwks, &policy, black_box(token.as_bytes()), NOW).unwrap())
        });
        group.bench_function(BenchmarkId::new("precheck", name), |b| {
            b.iter(|| {
                verify_admitted(
                    &jwks,
                    &policy,
                    black_box(token.as_bytes()),
                    NOW,
                    &mut || false,
                )
                .unwrap_err()
            })
        });
        let mut cache = TokenCache::new(1024, Duration::from_secs(3600));
        cache.verify(&jwks, &policy, token.as_bytes(), NOW).unwrap();
        group.bench_function(BenchmarkId::new("warm", name), |b| {
            b.iter(|| {
                let v = cache
                    .verify(&jwks, &policy, black_box(token.as_bytes()), NOW)
                    .unwrap();
                black_box(v.exp)
            })
        });
    }
    group.finish();
}

fn bench_api_key(c: &mut Criterion) {
    let (secret, entry) =
        generate_key("billing", Some("acme"), &["orders:read"], None, None).unwrap();
    let store = KeyStore::parse(&entry.to_toml()).unwrap();
    let headers = [
        httparse::Header {
            name: "Host",
            value: b"api.example.com",
        },
        httparse::Header {
            name: "User-Agent",
            value: b"bench/1.0",
        },
        httparse::Header {
            name: "Accept",
            value: b"*/*",
        },
        httparse::Header {
            name: "X-API-Key",
            value: secret.as_bytes(),
        },
    ];
    let mut group = c.benchmark_group("api_key");
    group.bench_function("extract", |b| {
        b.iter(|| extract(black_box(&headers)).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            store
                .verify(black_box(secret.as_bytes()), NOW)
                .unwrap()
                .tier
                .is_none()
        })
    });
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, minus the undocumented `pub fn`
// that `missing_docs` rejects.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_jwt(&mut c);
    bench_api_key(&mut c);
    c.final_summary();
}
