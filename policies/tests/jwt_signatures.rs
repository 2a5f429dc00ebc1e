//! Signature checks per algorithm, cross-checked with another implementation: every algorithm the
//! gateway accepts (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA) verifies tokens signed by
//! PyJWT (with `cryptography`, i.e. OpenSSL) against JWKs that PyJWT wrote, and tokens this crate
//! mints; and refuses tampered signatures, a signature for the wrong key type, malformed base64
//! and oversized tokens, each for the reason the module documents.
//!
//! Keys are made per run with the `openssl` command line; PyJWT runs as `python3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ringgate_policies::auth::{
    mint, verify, verify_admitted, Algorithm, AuthFailure, Jwks, JwtPolicy, JwtPolicySpec,
    MAX_TOKEN_LEN,
};
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;

const ALL: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn run(program: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs `{program}`: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A PKCS#8 private key PEM.
fn private_key(genpkey: &[&str]) -> String {
    run("openssl", &[&["genpkey"], genpkey].concat(), b"")
}

/// PyJWT signs `claims` with `pem` under `alg` and `kid`, and writes the public key as a JWK
/// (its own JWK code, not ours). Returns (token, jwk).
fn pyjwt(pem: &str, alg: &str, kid: &str, claims: &Value) -> (String, Value) {
    const SCRIPT: &str = r#"
import json, sys, jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
req = json.load(sys.stdin)
key = load_pem_private_key(req["pem"].encode(), None)
alg = req["alg"]
token = jwt.encode(req["claims"], key, algorithm=alg, headers={"kid": req["kid"]})
impl = jwt.get_algorithm_by_name(alg)
jwk = json.loads(impl.to_jwk(key.public_key()))
jwk["kid"] = req["kid"]
jwk["alg"] = alg
print(json.dumps({"token": token, "jwk": jwk}))
"#;
    let req = json!({"pem": pem, "alg": alg, "kid": kid, "claims": claims});
    let out = run(
        "python3",
        &["-c", SCRIPT],
        serde_json::to_string(&req).unwrap().as_bytes(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    (v["token"].as_str().unwrap().to_owned(), v["jwk"].clone())
}

fn claims() -> Value {
    json!({
        "iss": "https://idp.example", "aud": "api", "sub": "user-1", "scope": "read",
        "exp": NOW + 600, "iat": NOW - 5
    })
}

fn policy() -> JwtPolicy {
    JwtPolicy::new(JwtPolicySpec {
        algorithms: ALL.to_vec(),
        issuers: vec!["https://idp.example".into()],
        audiences: vec!["api".into()],
        ..JwtPolicySpec::default()
    })
    .unwrap()
}

struct Case {
    alg: Algorithm,
    name: &'static str,
    pem: String,
}

fn cases() -> Vec<Case> {
    let rsa = private_key(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let p256 = private_key(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let p384 = private_key(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]);
    let ed = private_key(&["-algorithm", "ed25519"]);
    ALL.iter()
        .map(|&alg| {
            let (name, pem) = match alg {
                Algorithm::RS256 => ("RS256", &rsa),
                Algorithm::RS384 => ("RS384", &rsa),
                Algorithm::RS512 => ("RS512", &rsa),
                Algorithm::PS256 => ("PS256", &rsa),
                Algorithm::PS384 => ("PS384", &rsa),
                Algorithm::PS512 => ("PS512", &rsa),
                Algorithm::ES256 => ("ES256", &p256),
                Algorithm::ES384 => ("ES384", &p384),
                _ => ("EdDSA", &ed),
            };
            Case {
                alg,
                name,
                pem: pem.clone(),
            }
        })
        .collect()
}

fn with_signature(token: &str, sig: &str) -> String {
    let (msg, _) = token.rsplit_once('.').unwrap();
    format!("{msg}.{sig}")
}

#[test]
fn every_algorithm_verifies_pyjwt_and_own_tokens_and_refuses_tampering() {
    let policy = policy();
    let cases = cases();
    let mut jwks_doc = Vec::new();
    let mut tokens = Vec::new();
    for c in &cases {
        let kid = format!("k-{}", c.name);
        let (py_token, jwk) = pyjwt(&c.pem, c.name, &kid, &claims());
        jwks_doc.push(jwk);
        let own = mint(c.pem.as_bytes(), c.alg, Some(&kid), &claims()).unwrap();
        tokens.push((c.name, py_token, own));
    }
    let jwks = Jwks::parse(&serde_json::to_vec(&json!({ "keys": jwks_doc })).unwrap()).unwrap();
    assert_eq!(jwks.len(), ALL.len(), "{:?}", jwks.skipped());
    for (name, py_token, own) in &tokens {
        for t in [py_token, own] {
            let v = verify(&jwks, &policy, t.as_bytes(), NOW)
                .unwrap_or_else(|e| panic!("{name}: {e} for {t}"));
            assert_eq!(v.identity.subject.as_deref(), Some("user-1"), "{name}");
            assert_eq!(v.exp, Some(NOW + 600));
        }
        // Every bit position class of the signature matters: first, middle, last byte.
        let sig = URL_SAFE_NO_PAD
            .decode(py_token.rsplit_once('.').unwrap().1)
            .unwrap();
        for at in [0, sig.len() / 2, sig.len() - 1] {
            let mut bad = sig.clone();
            bad[at] ^= 0x01;
            let t = with_signature(py_token, &URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(
                verify(&jwks, &policy, t.as_bytes(), NOW),
                Err(AuthFailure::BadSignature),
                "{name}: flipped byte {at}"
            );
        }
        // Truncated, extended, empty-ish and non-base64url signatures.
        let short = URL_SAFE_NO_PAD.encode(&sig[..sig.len() - 1]);
        let mut longer = sig.clone();
        longer.push(0);
        let long = URL_SAFE_NO_PAD.encode(&longer);
        let padded = format!("{}=", URL_SAFE_NO_PAD.encode(&sig));
        let std_alphabet = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(&sig)
            .replace('-', "+");
        for s in [
            short.as_str(),
            long.as_str(),
            "AA",
            "!!!!",
            padded.as_str(),
            "A",
        ] {
            let t = with_signature(py_token, s);
            assert_eq!(
                verify(&jwks, &policy, t.as_bytes(), NOW),
                Err(AuthFailure::BadSignature),
                "{name}: signature {s:?}"
            );
        }
        if std_alphabet.contains(['+', '/']) {
            let t = with_signature(py_token, &std_alphabet);
            assert_eq!(
                verify(&jwks, &policy, t.as_bytes(), NOW),
                Err(AuthFailure::BadSignature),
                "{name}: standard alphabet"
            );
        }
        // The payload changed under the same signature.
        let (head, rest) = py_token.split_once('.').unwrap();
        let sig_part = rest.rsplit_once('.').unwrap().1;
        let mut more = claims();
        more["scope"] = "read admin".into();
        let forged = format!(
            "{head}.{}.{sig_part}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&more).unwrap())
        );
        assert_eq!(
            verify(&jwks, &policy, forged.as_bytes(), NOW),
            Err(AuthFailure::BadSignature),
            "{name}: payload swapped"
        );
    }
}

#[test]
fn wrong_key_type_for_alg_is_refused_before_any_signature_check() {
    let policy = policy();
    let cases = cases();
    let mut doc = Vec::new();
    let mut own = Vec::new();
    for c in &cases {
        let kid = format!("k-{}", c.name);
        doc.push(pyjwt(&c.pem, c.name, &kid, &claims()).1);
        own.push((
            c,
            mint(c.pem.as_bytes(), c.alg, Some(&kid), &claims()).unwrap(),
        ));
    }
    let jwks = Jwks::parse(&serde_json::to_vec(&json!({ "keys": doc })).unwrap()).unwrap();
    // Every token re-pointed at every other key (its header's kid rewritten): the key's own
    // algorithm differs, so the token is refused without a signature check.
    for (c, token) in &own {
        for other in &cases {
            if other.alg == c.alg {
                continue;
            }
            let (_, rest) = token.split_once('.').unwrap();
            let header = json!({"alg": c.name, "typ": "JWT", "kid": format!("k-{}", other.name)});
            let t = format!(
                "{}.{rest}",
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap())
            );
            let mut asked = false;
            let r = verify_admitted(&jwks, &policy, t.as_bytes(), NOW, &mut || {
                asked = true;
                true
            });
            assert_eq!(
                r.map(|_| ()),
                Err(AuthFailure::AlgorithmNotAllowed),
                "{} token on the {} key",
                c.name,
                other.name
            );
            assert!(!asked, "no signature check was even considered");
        }
    }
    // A key stated for an algorithm that does not fit its type is skipped when the set is read.
    let mut ec_as_rsa = doc[6].clone();
    ec_as_rsa["alg"] = "RS256".into();
    let mut rsa_as_es = doc[0].clone();
    rsa_as_es["alg"] = "ES256".into();
    let mut ed_as_es = doc[8].clone();
    ed_as_es["alg"] = "ES256".into();
    let mut p256_as_es384 = doc[6].clone();
    p256_as_es384["alg"] = "ES384".into();
    let set = json!({"keys": [ec_as_rsa, rsa_as_es, ed_as_es, p256_as_es384, doc[8].clone()]});
    let jwks = Jwks::parse(&serde_json::to_vec(&set).unwrap()).unwrap();
    assert_eq!(jwks.len(), 1);
    assert_eq!(jwks.skipped().len(), 4, "{:?}", jwks.skipped());
}

#[test]
fn malformed_and_oversized_tokens_are_refused_without_a_signature_check() {
    let policy = policy();
    let pem = private_key(&["-algorithm", "ed25519"]);
    let (token, jwk) = pyjwt(&pem, "EdDSA", "ed", &claims());
    let jwks = Jwks::parse(&serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap()).unwrap();
    let (head, rest) = token.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    // Claims padded to just over the limit with an otherwise valid shape.
    let mut big_claims = claims();
    big_claims["pad"] = "x".repeat(MAX_TOKEN_LEN).into();
    let big_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&big_claims).unwrap());
    let oversized = format!("{head}.{big_payload}.{sig}");
    let huge_sig = format!("{head}.{payload}.{}", "A".repeat(MAX_TOKEN_LEN / 2));
    let cases: Vec<(String, AuthFailure)> = vec![
        (oversized, AuthFailure::Malformed),
        // A signature part longer than any accepted key's signature.
        (huge_sig, AuthFailure::BadSignature),
        (format!("{head}!.{payload}.{sig}"), AuthFailure::Malformed),
        (format!("{head}.{payload}*.{sig}"), AuthFailure::Malformed),
        (
            format!("{head}.{payload}.{sig}.{sig}"),
            AuthFailure::Malformed,
        ),
        (format!("{head}.{payload}"), AuthFailure::Malformed),
        (format!("{head}..{sig}"), AuthFailure::Malformed),
        (format!("{head}.{payload}."), AuthFailure::Malformed),
        (format!("=.{payload}.{sig}"), AuthFailure::Malformed),
    ];
    for (t, want) in &cases {
        assert_eq!(
            verify(&jwks, &policy, t.as_bytes(), NOW).map(|_| ()),
            Err(want.clone()),
            "{}",
            &t[..t.len().min(80)]
        );
    }
    // Header and payload must be base64url without padding, as JWS compact form requires.
    let padded_head = format!("{head}==.{payload}.{sig}");
    assert_eq!(
        verify(&jwks, &policy, padded_head.as_bytes(), NOW).map(|_| ()),
        Err(AuthFailure::Malformed)
    );
    assert!(verify(&jwks, &policy, token.as_bytes(), NOW).is_ok());
    // The admission hook is asked once per full check and its refusal is its own reason.
    let mut asked = 0;
    let r = verify_admitted(&jwks, &policy, token.as_bytes(), NOW, &mut || {
        asked += 1;
        false
    });
    assert_eq!(r.map(|_| ()), Err(AuthFailure::VerificationRateLimited));
    assert_eq!(asked, 1);
}
