//! A JSON Web Key Set compiled once into ready verification keys, looked up by `kid`.
//!
//! Exists so that no request parses a key: the control thread fetches the JWKS, calls
//! [`Jwks::parse`], and publishes the result (`Arc<Jwks>`) to every core; a request only does
//! a hash-map lookup by `kid`. Everything that could make a key unusable (bad base64, wrong
//! point length, a point off the curve, a too-small RSA modulus) is caught here, on the
//! control thread, rather than at the first request that needs it.
//!
//! # What is accepted
//!
//! | `kty` | curve / size | algorithm (from `alg`, else implied) |
//! |-------|--------------|---------------------------------------|
//! | `RSA` | 2048 to 4096-bit modulus | `RS256` implied; `RS384`, `RS512`, `PS256`, `PS384`, `PS512` if stated |
//! | `EC`  | `P-256` | `ES256` |
//! | `EC`  | `P-384` | `ES384` |
//! | `OKP` | `Ed25519` | `EdDSA` |
//!
//! A key whose `alg` does not fit its type is unusable, and each key answers to exactly one
//! algorithm: a token must name that algorithm in its header (no RSA/HMAC or RSA/ECDSA
//! confusion, whatever the policy allows).
//!
//! Keys that are not for us are *skipped*, with the reason kept in [`Jwks::skipped`] for the
//! logs: symmetric (`oct`) keys, encryption keys (`use` other than `sig`, `key_ops` without
//! `verify`), other types and curves, and malformed keys. One bad key in a provider's set
//! should not take the others down. The set as a whole is refused ([`JwksError`]) when it is
//! not JSON with a `keys` array, when two usable keys share a `kid`, when a usable key without
//! `kid` is not the only usable key, or when no usable key remains.
//!
//! A set whose single usable key has no `kid` serves every token, whatever `kid` the token
//! names.
//!
//! # Verification keys
//!
//! RSA and ECDSA signatures are checked with `ring` (the library rustls already builds here):
//! each key is decoded from its JWK members once, here, into what `ring` verifies with (RSA `n`
//! and `e` without leading zeros, the uncompressed EC point `0x04 || x || y`), paired with the
//! `ring` algorithm its `alg` names. EC points are checked to lie on their curve here (an ECDH
//! agreement with a throw-away key refuses any other point); RSA keys get the checks `ring`
//! applies (size, odd modulus, odd exponent in range). Ed25519 keys are decompressed once, here,
//! into an `ed25519-dalek` verifying key (a key that is not a curve point is refused here), and
//! signatures are checked as RFC 8032 says (canonical `S`; the cofactorless equation, as
//! jsonwebtoken did before): `ring` decompresses the key on every check and measured slower.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

use super::identity::AuthFailure;

/// base64url, with or without padding (some providers pad JWK members).
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Process-wide counter: each compiled set gets a fresh generation, so per-core caches can
/// tell verdicts reached with an older set. Touched only when a set is built (control
/// thread), never per request.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Longest `kid` kept (longer ones are refused in keys and in tokens).
pub const MAX_KID_LEN: usize = 256;

/// One usable key: ready `ring` key material and the only algorithm it verifies.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    check: Check,
    pub(crate) alg: Algorithm,
}

/// What a signature is checked with.
#[derive(Clone)]
enum Check {
    /// RSA (PKCS#1 v1.5 or PSS): `ring` takes the components directly.
    Rsa(
        &'static sig::RsaParameters,
        RsaPublicKeyComponents<Box<[u8]>>,
    ),
    /// ECDSA (fixed-length `r || s`, as JWS signs): the public point.
    Point(UnparsedPublicKey<Box<[u8]>>),
    /// Ed25519: the decompressed public key.
    Ed(Box<ed25519_dalek::VerifyingKey>),
}

impl VerifyKey {
    /// Whether `signature` (already base64url-decoded) signs `message` under this key.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.check {
            Check::Rsa(params, key) => key.verify(params, message, signature).is_ok(),
            Check::Point(key) => key.verify(message, signature).is_ok(),
            Check::Ed(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| ed25519_dalek::Verifier::verify(&**key, message, &sig).is_ok()),
        }
    }
}

/// The `ring` RSA parameters for an RSA algorithm (moduli of 2048 to 8192 bits; this module
/// accepts up to 4096).
fn rsa_params(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// A compiled key set. Immutable; share with `Arc`, replace whole on refresh.
#[derive(Clone)]
pub struct Jwks {
    by_kid: HashMap<Box<str>, VerifyKey>,
    kidless: Option<VerifyKey>,
    skipped: Vec<String>,
    generation: u64,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<_> = self
            .by_kid
            .iter()
            .map(|(kid, k)| format!("{kid}:{:?}", k.alg))
            .collect();
        kids.sort();
        f.debug_struct("Jwks")
            .field("kids", &kids)
            .field("kidless", &self.kidless.as_ref().map(|k| k.alg))
            .field("skipped", &self.skipped)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Why a key set was refused as a whole.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS (a JSON object with a `keys` array): {0}")]
    NotJwks(String),
    /// Two usable keys have the same `kid`.
    #[error("two keys have kid {0:?}")]
    DuplicateKid(String),
    /// A usable key has no `kid` but is not the only usable key.
    #[error("a key without kid is allowed only when it is the only usable key")]
    KidlessAmongMany,
    /// No key survived; the reasons each was skipped.
    #[error("no usable signing key ({})", .skipped.join("; "))]
    NoUsableKey {
        /// Why each key was skipped.
        skipped: Vec<String>,
    },
    /// A PEM public key could not be read or does not fit the algorithm.
    #[error("public key PEM: {0}")]
    Pem(String),
}

/// The JWK members we read; everything else is ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl Jwks {
    /// Compiles a JWKS document (see the module doc for what is accepted and skipped).
    pub fn parse(json: &[u8]) -> Result<Jwks, JwksError> {
        let set: RawSet =
            serde_json::from_slice(json).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let mut usable: Vec<(Option<String>, VerifyKey)> = Vec::with_capacity(set.keys.len());
        let mut skipped = Vec::new();
        for (index, value) in set.keys.into_iter().enumerate() {
            let kid_label = value
                .get("kid")
                .and_then(serde_json::Value::as_str)
                .map(|k| format!(" (kid {:?})", truncate(k)))
                .unwrap_or_default();
            let compiled = serde_json::from_value::<RawJwk>(value)
                .map_err(|e| e.to_string())
                .and_then(|raw| compile_jwk(&raw).map(|key| (raw.kid, key)));
            match compiled {
                Ok(pair) => usable.push(pair),
                Err(reason) => skipped.push(format!("keys[{index}]{kid_label}: {reason}")),
            }
        }
        Jwks::assemble(usable, skipped)
    }

    /// A one-key set from a PEM public key (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`)
    /// for deployments that configure a key instead of a JWKS URL. `alg` must fit the key.
    pub fn from_public_pem(
        pem: &[u8],
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Jwks, JwksError> {
        use AlgorithmFamily as F;
        let pem_err = |e: jsonwebtoken::errors::Error| JwksError::Pem(e.to_string());
        let key = match alg.family() {
            F::Rsa => DecodingKey::from_rsa_pem(pem).map_err(pem_err)?,
            F::Ec => DecodingKey::from_ec_pem(pem).map_err(pem_err)?,
            F::Ed => DecodingKey::from_ed_pem(pem).map_err(pem_err)?,
            _ => {
                return Err(JwksError::Pem(format!(
                    "{alg:?} is not a public-key algorithm"
                )))
            }
        };
        // Go through the JWK form so PEM keys get exactly the checks JWKS keys get.
        let jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(alg)).map_err(pem_err)?;
        let mut value = serde_json::to_value(&jwk).map_err(|e| JwksError::Pem(e.to_string()))?;
        if let (Some(kid), Some(obj)) = (kid, value.as_object_mut()) {
            obj.insert("kid".into(), kid.into());
        }
        let raw: RawJwk =
            serde_json::from_value(value).map_err(|e| JwksError::Pem(e.to_string()))?;
        let compiled = compile_jwk(&raw).map_err(JwksError::Pem)?;
        Jwks::assemble(vec![(raw.kid, compiled)], Vec::new())
    }

    fn assemble(
        usable: Vec<(Option<String>, VerifyKey)>,
        skipped: Vec<String>,
    ) -> Result<Jwks, JwksError> {
        if usable.is_empty() {
            return Err(JwksError::NoUsableKey { skipped });
        }
        let count = usable.len();
        let mut by_kid = HashMap::with_capacity(count);
        let mut kidless = None;
        for (kid, key) in usable {
            match kid {
                None if count == 1 => kidless = Some(key),
                None => return Err(JwksError::KidlessAmongMany),
                Some(kid) => {
                    if by_kid.contains_key(kid.as_str()) {
                        return Err(JwksError::DuplicateKid(kid));
                    }
                    by_kid.insert(kid.into_boxed_str(), key);
                }
            }
        }
        Ok(Jwks {
            by_kid,
            kidless,
            skipped,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The key for a token's `kid`: `UnknownKid` when the set has no such key (the caller
    /// may refresh the set once), `MissingKid` when the token names none and the set has
    /// several keys.
    pub(crate) fn lookup(&self, kid: Option<&str>) -> Result<&VerifyKey, AuthFailure> {
        if let Some(key) = &self.kidless {
            return Ok(key);
        }
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .ok_or_else(|| AuthFailure::UnknownKid(kid.to_owned())),
            None if self.by_kid.len() == 1 => {
                self.by_kid.values().next().ok_or(AuthFailure::MissingKid)
            }
            None => Err(AuthFailure::MissingKid),
        }
    }

    /// The algorithm of the key a token with this `kid` would be checked with.
    pub fn algorithm_for(&self, kid: Option<&str>) -> Option<Algorithm> {
        self.lookup(kid).ok().map(|k| k.alg)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.kidless.is_some())
    }

    /// Always false for a set that was built (at least one key is required); for symmetry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why keys of the document were skipped (for the logs when a set is loaded).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// A process-unique number for this set: verdicts cached with another set do not count.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Checks one JWK and builds its verification key, or says why it is not usable.
fn compile_jwk(raw: &RawJwk) -> Result<VerifyKey, String> {
    if let Some(kid) = &raw.kid {
        if kid.is_empty() || kid.len() > MAX_KID_LEN {
            return Err(format!("kid must be 1 to {MAX_KID_LEN} bytes"));
        }
    }
    if let Some(u) = &raw.key_use {
        if u != "sig" {
            return Err(format!("use {u:?} is not \"sig\""));
        }
    }
    if let Some(ops) = &raw.key_ops {
        if !ops.iter().any(|o| o == "verify") {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    let stated = match raw.alg.as_deref() {
        None => None,
        Some(name) => Some(
            name.parse::<Algorithm>()
                .map_err(|_| format!("unsupported alg {name:?}"))?,
        ),
    };
    let (key, implied) = match raw.kty.as_str() {
        "RSA" => (rsa_key(raw)?, Algorithm::RS256),
        "EC" => ec_key(raw)?,
        "OKP" => (ed_key(raw)?, Algorithm::EdDSA),
        "oct" => return Err("symmetric (oct) keys are not supported".into()),
        other => return Err(format!("unsupported kty {other:?}")),
    };
    let alg = stated.unwrap_or(implied);
    let check = match (key, alg) {
        (Material::Rsa { n, e }, alg) => match rsa_params(alg) {
            Some(params) => Check::Rsa(params, RsaPublicKeyComponents { n, e }),
            None => return Err(format!("alg {alg:?} does not fit a {} key", raw.kty)),
        },
        (Material::Ec(point), alg) if alg == implied => {
            let (agree, verify): (_, &'static dyn sig::VerificationAlgorithm) = match alg {
                Algorithm::ES256 => (&ring::agreement::ECDH_P256, &sig::ECDSA_P256_SHA256_FIXED),
                _ => (&ring::agreement::ECDH_P384, &sig::ECDSA_P384_SHA384_FIXED),
            };
            if !on_curve(agree, &point) {
                return Err("the crypto backend rejects this key (not a curve point)".into());
            }
            Check::Point(UnparsedPublicKey::new(verify, point))
        }
        (Material::Ed(key), Algorithm::EdDSA) => Check::Ed(key),
        (_, alg) => return Err(format!("alg {alg:?} does not fit a {} key", raw.kty)),
    };
    Ok(VerifyKey { check, alg })
}

/// Key bytes decoded from a JWK, before they meet an algorithm.
enum Material {
    Rsa { n: Box<[u8]>, e: Box<[u8]> },
    Ec(Box<[u8]>),
    Ed(Box<ed25519_dalek::VerifyingKey>),
}

/// Whether an uncompressed point lies on the curve: `ring` validates a peer's point fully
/// before an ECDH agreement, and refuses the agreement otherwise.
fn on_curve(curve: &'static ring::agreement::Algorithm, point: &[u8]) -> bool {
    let rng = ring::rand::SystemRandom::new();
    let Ok(mine) = ring::agreement::EphemeralPrivateKey::generate(curve, &rng) else {
        return false;
    };
    let peer = ring::agreement::UnparsedPublicKey::new(curve, point);
    ring::agreement::agree_ephemeral(mine, &peer, |_| ()).is_ok()
}

fn member<'a>(raw: &'a RawJwk, name: &str, value: &'a Option<String>) -> Result<Vec<u8>, String> {
    let text = value
        .as_deref()
        .ok_or_else(|| format!("{} key without {name:?}", raw.kty))?;
    JWK_B64
        .decode(text)
        .map_err(|_| format!("{name:?} is not base64url"))
}

fn rsa_key(raw: &RawJwk) -> Result<Material, String> {
    let n = member(raw, "n", &raw.n)?;
    let e = member(raw, "e", &raw.e)?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if !(2048..=4096).contains(&bits) {
        return Err(format!(
            "RSA modulus of {bits} bits (2048 to 4096 accepted)"
        ));
    }
    if n.last().is_some_and(|b| b % 2 == 0) {
        return Err("the crypto backend rejects this key (even RSA modulus)".into());
    }
    // `ring` takes 3 <= e < 2^33 (real keys use 65537). Even e is never valid.
    let e_value = e.iter().fold(0u64, |acc, &b| {
        acc.saturating_mul(256).saturating_add(u64::from(b))
    });
    if e.len() > 5 || !(3..1 << 33).contains(&e_value) || e_value % 2 == 0 {
        return Err("RSA exponent out of range".into());
    }
    Ok(Material::Rsa {
        n: n.into(),
        e: e.into(),
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

fn ec_key(raw: &RawJwk) -> Result<(Material, Algorithm), String> {
    let (len, alg) = match raw.crv.as_deref() {
        Some("P-256") => (32, Algorithm::ES256),
        Some("P-384") => (48, Algorithm::ES384),
        other => return Err(format!("unsupported EC curve {other:?}")),
    };
    let x = member(raw, "x", &raw.x)?;
    let y = member(raw, "y", &raw.y)?;
    if x.len() != len || y.len() != len {
        return Err(format!("EC coordinates must be {len} bytes"));
    }
    // Uncompressed SEC1 point, the form `ring` verifies with.
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok((Material::Ec(point.into()), alg))
}

fn ed_key(raw: &RawJwk) -> Result<Material, String> {
    match raw.crv.as_deref() {
        Some("Ed25519") => {}
        other => return Err(format!("unsupported OKP curve {other:?}")),
    }
    let x = member(raw, "x", &raw.x)?;
    let x: [u8; 32] = x
        .try_into()
        .map_err(|_| "Ed25519 public key must be 32 bytes".to_string())?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
        .map_err(|_| "the crypto backend rejects this key (not a curve point)".to_string())?;
    Ok(Material::Ed(Box::new(key)))
}

#[cfg(test)]
mod tests {
    use super::super::testkeys::{keys, TestKey};
    use super::*;
    use serde_json::json;

    fn set(keys: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn parses_rsa_ec_okp() {
        let k = keys();
        let doc = set(&[k.rsa.jwk("r1"), k.ec.jwk("e1"), k.ed.jwk("d1")]);
        let jwks = Jwks::parse(&doc).unwrap();
        assert_eq!(jwks.len(), 3);
        assert!(jwks.skipped().is_empty());
        assert_eq!(jwks.algorithm_for(Some("r1")), Some(Algorithm::RS256));
        assert_eq!(jwks.algorithm_for(Some("e1")), Some(Algorithm::ES256));
        assert_eq!(jwks.algorithm_for(Some("d1")), Some(Algorithm::EdDSA));
        assert_eq!(
            jwks.lookup(Some("zz")).err(),
            Some(AuthFailure::UnknownKid("zz".into()))
        );
        assert_eq!(jwks.lookup(None).err(), Some(AuthFailure::MissingKid));
        let again = Jwks::parse(&doc).unwrap();
        assert_ne!(jwks.generation(), again.generation());
    }

    #[test]
    fn implied_algorithms_without_alg() {
        let k = keys();
        let mut rsa = k.rsa.jwk("r");
        let mut ec = k.ec.jwk("e");
        let mut ed = k.ed.jwk("d");
        for j in [&mut rsa, &mut ec, &mut ed] {
            j.as_object_mut().unwrap().remove("alg");
        }
        let jwks = Jwks::parse(&set(&[rsa.clone(), ec, ed])).unwrap();
        assert_eq!(jwks.algorithm_for(Some("r")), Some(Algorithm::RS256));
        assert_eq!(jwks.algorithm_for(Some("e")), Some(Algorithm::ES256));
        assert_eq!(jwks.algorithm_for(Some("d")), Some(Algorithm::EdDSA));
        // Stated PS256 on an RSA key is kept.
        rsa["alg"] = "PS256".into();
        let jwks = Jwks::parse(&set(&[rsa])).unwrap();
        assert_eq!(jwks.algorithm_for(Some("r")), Some(Algorithm::PS256));
    }

    #[test]
    fn skips_unusable_keys_with_reasons() {
        let k = keys();
        let good = k.ed.jwk("good");
        let mut enc = k.rsa.jwk("enc");
        enc["use"] = "enc".into();
        let mut wrong_alg = k.rsa.jwk("wa");
        wrong_alg["alg"] = "ES256".into();
        let mut short_ed = k.ed.jwk("short");
        short_ed["x"] = "AAAA".into();
        // y = 2 has no x on edwards25519.
        let mut off_curve_ed = k.ed.jwk("off-ed");
        off_curve_ed["x"] = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
        let mut off_curve = k.ec.jwk("off");
        off_curve["y"] = k.ec.jwk("x")["x"].clone();
        let mut small_rsa = k.rsa.jwk("small");
        small_rsa["n"] = "AQAB".into();
        let mut no_verify = k.ec.jwk("ops");
        no_verify["key_ops"] = json!(["sign"]);
        let doc = set(&[
            good,
            enc,
            wrong_alg,
            short_ed,
            off_curve,
            off_curve_ed,
            small_rsa,
            no_verify,
            json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}),
            json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}),
            json!({"kty": "RSA", "kid": "hs", "alg": "HS256", "n": "AA", "e": "AQAB"}),
            json!({"kty": "weird"}),
            json!({"no": "kty"}),
        ]);
        let jwks = Jwks::parse(&doc).unwrap();
        assert_eq!(jwks.len(), 1, "{jwks:?}");
        assert_eq!(jwks.skipped().len(), 12, "{:#?}", jwks.skipped());
        let all = jwks.skipped().join("\n");
        for want in [
            "kid \"enc\"",
            "does not fit",
            "32 bytes",
            "rejects this key",
            "kid \"off-ed\"): the crypto backend rejects this key",
            "2048 to 4096",
            "key_ops",
            "oct",
            "P-521",
            "weird",
        ] {
            assert!(all.contains(want), "{want:?} not in\n{all}");
        }
    }

    #[test]
    fn refuses_bad_sets() {
        let k = keys();
        assert!(matches!(Jwks::parse(b"{}"), Err(JwksError::NotJwks(_))));
        assert!(matches!(Jwks::parse(b"[1]"), Err(JwksError::NotJwks(_))));
        assert!(matches!(
            Jwks::parse(&set(&[])),
            Err(JwksError::NoUsableKey { .. })
        ));
        let doc = set(&[k.rsa.jwk("same"), k.ec.jwk("same")]);
        assert_eq!(
            Jwks::parse(&doc).unwrap_err(),
            JwksError::DuplicateKid("same".into())
        );
        let mut kidless = k.rsa.jwk("x");
        kidless.as_object_mut().unwrap().remove("kid");
        let doc = set(&[kidless.clone(), k.ec.jwk("e")]);
        assert_eq!(Jwks::parse(&doc).unwrap_err(), JwksError::KidlessAmongMany);
        // Alone, a kid-less key serves every token.
        let jwks = Jwks::parse(&set(&[kidless])).unwrap();
        assert_eq!(jwks.algorithm_for(None), Some(Algorithm::RS256));
        assert_eq!(jwks.algorithm_for(Some("anything")), Some(Algorithm::RS256));
    }

    #[test]
    fn from_public_pem() {
        let k = keys();
        for (key, alg) in [
            (&k.rsa, Algorithm::RS256),
            (&k.ec, Algorithm::ES256),
            (&k.ed, Algorithm::EdDSA),
        ] {
            let TestKey { public_pem, .. } = key;
            let jwks = Jwks::from_public_pem(public_pem.as_bytes(), alg, Some("p")).unwrap();
            assert_eq!(jwks.algorithm_for(Some("p")), Some(alg));
            assert_eq!(jwks.len(), 1);
        }
        assert!(Jwks::from_public_pem(k.ec.public_pem.as_bytes(), Algorithm::RS256, None).is_err());
        assert!(Jwks::from_public_pem(b"junk", Algorithm::ES256, None).is_err());
        assert!(
            Jwks::from_public_pem(k.rsa.public_pem.as_bytes(), Algorithm::HS256, None).is_err()
        );
    }
}
