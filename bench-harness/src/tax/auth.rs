//! The auth rungs' keys and tokens: signing keys made fresh per run, the JWKS file ringgate
//! reads, the token pools the scenario draws from, and the key rotation made during each run.
//!
//! Four keys (ECDSA P-256 and P-384, Ed25519): the JWKS starts with the first three; the rotation adds the
//! fourth and drops the first (the oldest), then asks ringgate to reload. The scenario's kinds
//! carry tokens from pools written as `tokens/NAME.txt` beside it:
//! - [`VALID`]: the warm set, a bounded number of users' tokens signed by the keys the rotation
//!   keeps, reused all run long (so ringgate's verified-token cache is warm);
//! - `jwt_expired` (expired an hour ago), `jwt_forged` (signed by a key not in the set, under a
//!   known key id) and a kind with no token at all: refused with 401;
//! - `jwt_next`: tokens of the key the rotation adds, 401 before it and 200 after;
//! - `jwt_retiring`: tokens of the key the rotation drops, 200 before it and 401 after;
//! - `jwt_noisy`: the noisy consumer, on the free tier the limit rungs hold to a small rate.
//!
//! Tokens expire (that is the point of some of them), so they are never part of the seeded
//! scenario text: the scenario names the files, and each run writes them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::features::{Expect, AUDIENCE, ISSUER, NOISY_TIER};
use super::topology::{between, kind, Topology, API_HOST};
use crate::rng::Rng;

/// The pool of valid tokens that most authenticated kinds carry.
pub const VALID: &str = "jwt";
const EXPIRED: &str = "jwt_expired";
const FORGED: &str = "jwt_forged";
const NEXT: &str = "jwt_next";
const RETIRING: &str = "jwt_retiring";
const NOISY: &str = "jwt_noisy";
/// The algorithms the gateway accepts (those of the keys).
pub const ALGORITHMS: [&str; 3] = ["ES256", "ES384", "EdDSA"];
/// Users of the warm set of valid tokens.
const USERS: usize = 8;

/// The request kinds of the auth mix, each on one service's authenticated item route.
pub fn token_kinds(t: &mut Topology, rng: &mut Rng) {
    let specs: [(&str, Option<&str>, Expect, f64, f64); 6] = [
        ("expired token", Some(EXPIRED), Expect::Refused, 0.6, 1.2),
        ("forged token", Some(FORGED), Expect::Refused, 0.4, 0.8),
        ("no token", None, Expect::Refused, 0.4, 0.8),
        ("next key", Some(NEXT), Expect::RotatedIn, 2.0, 3.0),
        ("retiring key", Some(RETIRING), Expect::RotatedOut, 2.0, 3.0),
        ("noisy consumer", Some(NOISY), Expect::Noisy, 1.5, 2.5),
    ];
    for (name, pool, expect, lo, hi) in specs {
        let svc = t.upstreams[rng.below(t.upstreams.len() as u64) as usize].clone();
        let mut k = kind(
            format!("{svc} get item, {name}"),
            between(rng, lo, hi),
            "GET",
            API_HOST,
            format!("/{svc}/items/${{ids}}"),
        );
        if let Some(p) = pool {
            k.headers
                .push(("authorization".into(), format!("Bearer ${{{p}}}")));
        }
        k.expect = expect;
        t.requests.push(k);
    }
    for p in [VALID, EXPIRED, FORGED, NEXT, RETIRING, NOISY] {
        t.file_pools.push(p.to_string());
    }
}

/// One signing key.
struct Key {
    kid: String,
    alg: Algorithm,
    signer: EncodingKey,
    jwk: Value,
    /// The public key as SubjectPublicKeyInfo PEM (what HAProxy's `jwt_verify` reads).
    public_pem: String,
}

fn generate(kid: &str, alg: Algorithm) -> Result<Key, String> {
    use base64::Engine as _;
    let err = |e: &dyn std::fmt::Display| format!("key {kid}: {e}");
    let curve = match alg {
        Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Algorithm::EdDSA => &rcgen::PKCS_ED25519,
        _ => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let pair = rcgen::KeyPair::generate_for(curve).map_err(|e| err(&e))?;
    let pem = pair.serialize_pem();
    let public_pem = pair.public_key_pem();
    let (signer, mut jwk) = if alg == Algorithm::EdDSA {
        // The key's PKCS#8 carries its public half, which jsonwebtoken's JWK export does not
        // take: the JWK is written from the raw public key instead.
        let signer = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| err(&e))?;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw());
        let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": x });
        (signer, jwk)
    } else {
        let signer = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| err(&e))?;
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&signer, alg).map_err(|e| err(&e))?;
        (signer, serde_json::to_value(jwk).map_err(|e| err(&e))?)
    };
    jwk["kid"] = kid.into();
    jwk["use"] = "sig".into();
    Ok(Key {
        kid: kid.to_string(),
        alg,
        signer,
        jwk,
        public_pem,
    })
}

/// The run's keys: the three the JWKS starts with (oldest first), the one the rotation adds,
/// and a rogue one that signs the forged tokens.
pub struct Keyring {
    keys: Vec<Key>,
    rogue: Key,
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Keyring {
    /// Fresh keys.
    pub fn generate() -> Result<Self, String> {
        Ok(Self {
            keys: vec![
                generate("k1-es256", Algorithm::ES256)?,
                // ECDSA only (two curves): the keys a peer (HAProxy 2.6, no EdDSA) can verify
                // too; the forged tokens' rogue key stays EdDSA.
                generate("k2-es384", Algorithm::ES384)?,
                generate("k3-es256", Algorithm::ES256)?,
                generate("k4-es384", Algorithm::ES384)?,
            ],
            rogue: generate("rogue", Algorithm::EdDSA)?,
        })
    }

    fn jwks(&self, keys: &[Key]) -> String {
        let doc = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        format!("{doc}\n")
    }

    /// What a peer needs to check the same tokens: the public key of each key in the JWKS
    /// before the rotation (peers read their keys once and do not rotate), written as PEM files
    /// into `dir`, the issuer and audience, and the routes that take anonymous requests.
    pub fn peer_jwt(
        &self,
        dir: &Path,
        anonymous_routes: Vec<String>,
    ) -> Result<crate::tax::peers::JwtSetup, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut keys = Vec::new();
        for k in &self.keys[..3] {
            let file = dir.join(format!("{}.pem", k.kid));
            std::fs::write(&file, &k.public_pem).map_err(|e| format!("{}: {e}", file.display()))?;
            keys.push(crate::tax::peers::JwtKey {
                kid: k.kid.clone(),
                alg: format!("{:?}", k.alg),
                key: file.display().to_string(),
            });
        }
        Ok(crate::tax::peers::JwtSetup {
            keys,
            anonymous_routes,
            issuer: Some(ISSUER.to_string()),
            audience: Some(AUDIENCE.to_string()),
        })
    }

    /// The JWKS before the rotation: the first three keys.
    pub fn jwks_before(&self) -> String {
        self.jwks(&self.keys[..3])
    }

    /// The JWKS after it: the oldest key dropped, the fourth added.
    pub fn jwks_after(&self) -> String {
        self.jwks(&self.keys[1..])
    }

    fn sign(key: &Key, kid: &str, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(key.alg);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &key.signer).map_err(|e| format!("sign: {e}"))
    }

    /// A token of key `i` (0-3) for `sub`, expiring at `exp`.
    pub fn token(
        &self,
        i: usize,
        sub: &str,
        exp: u64,
        tier: Option<&str>,
    ) -> Result<String, String> {
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": exp,
            "iat": unix_now(), "scope": "read write",
        });
        if let Some(t) = tier {
            claims["tier"] = t.into();
        }
        let key = &self.keys[i.min(self.keys.len() - 1)];
        Self::sign(key, &key.kid, &claims)
    }

    /// Writes every token pool into `dir/tokens/`, the valid ones expiring `ttl` from now.
    pub fn write_tokens(&self, dir: &Path, ttl: Duration) -> Result<(), String> {
        let now = unix_now();
        let exp = now + ttl.as_secs().max(60);
        let mut pools: Vec<(&str, Vec<String>)> = Vec::new();
        let mut valid = Vec::new();
        for u in 0..USERS {
            // The keys the rotation keeps.
            valid.push(self.token(1, &format!("user-{u}"), exp, None)?);
            valid.push(self.token(2, &format!("user-{u}"), exp, None)?);
        }
        pools.push((VALID, valid));
        let mut expired = Vec::new();
        let mut forged = Vec::new();
        let mut next = Vec::new();
        let mut retiring = Vec::new();
        for u in 0..4 {
            let sub = format!("user-{u}");
            expired.push(self.token(1 + u % 2, &sub, now - 3600, None)?);
            let claims = json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": exp, "scope": "read",
            });
            forged.push(Self::sign(&self.rogue, &self.keys[1].kid, &claims)?);
            next.push(self.token(3, &sub, exp, None)?);
            retiring.push(self.token(0, &sub, exp, None)?);
        }
        pools.push((EXPIRED, expired));
        pools.push((FORGED, forged));
        pools.push((NEXT, next));
        pools.push((RETIRING, retiring));
        let noisy = vec![self.token(2, "noisy-1", exp, Some(NOISY_TIER))?];
        pools.push((NOISY, noisy));
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        for (name, values) in pools {
            let file = tokens.join(format!("{name}.txt"));
            std::fs::write(&file, values.join("\n") + "\n")
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
        Ok(())
    }
}

/// Replaces `path` with `text` in one step (a rename), so the gateway never reads half a file.
pub fn replace_file(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `POST /config/reload` on the admin API; returns the status and body.
pub fn reload(admin: SocketAddr) -> Result<(u16, String), String> {
    admin_request(admin, "POST", "/config/reload")
}

/// One request to ringgate's admin API; returns the status and body.
pub fn admin_request(admin: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(2))
        .map_err(|e| format!("admin {admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {admin}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("admin {admin}: {e}"))?;
    let mut data = Vec::new();
    s.read_to_end(&mut data)
        .map_err(|e| format!("admin {admin}: {e}"))?;
    let text = String::from_utf8_lossy(&data);
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("admin {admin}: no status in {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.trim().to_string()))
}

/// The rotation: the new key set written over `jwks`, then a reload through `admin`.
pub fn rotate(keys: &Keyring, jwks: &Path, admin: SocketAddr) -> Result<String, String> {
    replace_file(jwks, &keys.jwks_after())?;
    match reload(admin)? {
        (200, body) => Ok(body),
        (status, body) => Err(format!("reload answered {status}: {body}")),
    }
}
