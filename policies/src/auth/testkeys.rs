//! Test-only: real key pairs made once per test run with the `openssl` command line (RSA 2048,
//! EC P-256, Ed25519, and a second RSA key for "signed by the wrong key"), so the tests check
//! real signatures without keys committed to the repository.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, DecodingKey};

/// A private/public PEM pair and the algorithm the tests use it with.
pub(crate) struct TestKey {
    pub(crate) private_pem: String,
    pub(crate) public_pem: String,
    pub(crate) alg: Algorithm,
}

impl TestKey {
    /// The public key as a JWK with `kid` and `alg`.
    pub(crate) fn jwk(&self, kid: &str) -> serde_json::Value {
        let key = match self.alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(self.public_pem.as_bytes()),
            Algorithm::ES256 => DecodingKey::from_ec_pem(self.public_pem.as_bytes()),
            _ => DecodingKey::from_ed_pem(self.public_pem.as_bytes()),
        }
        .unwrap();
        let jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(self.alg)).unwrap();
        let mut value = serde_json::to_value(jwk).unwrap();
        value["kid"] = kid.into();
        value
    }
}

/// The keys of this test run.
pub(crate) struct TestKeys {
    pub(crate) rsa: TestKey,
    pub(crate) rsa_other: TestKey,
    pub(crate) ec: TestKey,
    pub(crate) ed: TestKey,
}

/// Generates the keys on first use (about a second: two RSA key generations).
pub(crate) fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        rsa: generate(
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::RS256,
        ),
        rsa_other: generate(
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::RS256,
        ),
        ec: generate(
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::ES256,
        ),
        ed: generate(&["-algorithm", "ed25519"], Algorithm::EdDSA),
    })
}

fn generate(args: &[&str], alg: Algorithm) -> TestKey {
    let private_pem = openssl(&[&["genpkey"], args].concat(), b"");
    let public_pem = openssl(&["pkey", "-pubout"], private_pem.as_bytes());
    TestKey {
        private_pem,
        public_pem,
        alg,
    }
}

fn openssl(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the auth tests need the `openssl` command line tool (apt-get install openssl)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
