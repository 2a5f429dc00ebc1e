//! A throwaway PKI for TLS tests: a server CA, a client CA, and certificates they sign, written
//! as PEM files into a temporary directory (removed on drop).

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use std::path::{Path, PathBuf};

/// Two CAs (servers, clients) and a directory to write certificates into.
pub struct Pki {
    dir: PathBuf,
    server_ca: CertifiedIssuer<'static, KeyPair>,
    client_ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM certificate (the leaf only).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The certificate in DER (to compare with what a client was served).
    pub der: Vec<u8>,
}

impl CertFiles {
    /// The certificate path as text (for configs and command lines).
    pub fn cert_arg(&self) -> &str {
        self.cert.to_str().expect("temp paths are UTF-8")
    }

    /// The key path as text.
    pub fn key_arg(&self) -> &str {
        self.key.to_str().expect("temp paths are UTF-8")
    }

    /// This certificate as an entry of a listener's `certificates` list.
    pub fn entry(&self) -> String {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            self.cert_arg(),
            self.key_arg()
        )
    }

    /// A listener's `[listeners.tls]` table serving this certificate alone.
    pub fn listener_tls(&self) -> String {
        format!("[listeners.tls]\ncertificates = [{}]", self.entry())
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "ringgate tests");
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("ca key")).expect("ca cert")
}

impl Pki {
    /// A fresh PKI and the certificate of a server `api` for `api.example`, the pair most TLS
    /// tests start from.
    pub fn with_api() -> (Self, CertFiles) {
        let pki = Pki::new();
        let api = pki.server("api", &["api.example"]);
        (pki, api)
    }

    /// `[listeners.tls]` keys asking clients for a certificate (`mode`: `"required"` or
    /// `"optional"`) signed by this PKI's client CA.
    pub fn client_auth(&self, mode: &str) -> String {
        format!(
            "client_auth = \"{mode}\"\nclient_ca = \"{}\"",
            self.client_ca_path().display()
        )
    }

    /// Makes both CAs and writes their certificates (`server-ca.pem`, `client-ca.pem`).
    pub fn new() -> Self {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ringgate-pki-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let pki = Pki {
            server_ca: ca("ringgate test server CA"),
            client_ca: ca("ringgate test client CA"),
            dir,
        };
        std::fs::write(pki.server_ca_path(), pki.server_ca.pem()).expect("write ca");
        std::fs::write(pki.client_ca_path(), pki.client_ca.pem()).expect("write ca");
        pki
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server CA's certificate (what clients trust).
    pub fn server_ca_path(&self) -> PathBuf {
        self.dir.join("server-ca.pem")
    }

    /// The client CA's certificate (what an mTLS listener trusts).
    pub fn client_ca_path(&self) -> PathBuf {
        self.dir.join("client-ca.pem")
    }

    /// A server certificate for `names`, signed by the server CA, written as `stem.pem` and
    /// `stem.key` (rewriting them if they exist: a renewal).
    pub fn server(&self, stem: &str, names: &[&str]) -> CertFiles {
        let mut p =
            CertificateParams::new(names.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())
                .expect("server params");
        p.distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        self.write(stem, p, &self.server_ca)
    }

    /// A client certificate with common name `cn` (and a URI SAN when given), signed by the
    /// client CA (`trusted`) or by a CA nobody trusts.
    pub fn client(&self, stem: &str, cn: &str, uri: Option<&str>, trusted: bool) -> CertFiles {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("client params");
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(u) = uri {
            p.subject_alt_names
                .push(SanType::URI(u.try_into().expect("uri")));
        }
        if trusted {
            self.write(stem, p, &self.client_ca)
        } else {
            let rogue = ca("rogue CA");
            self.write(stem, p, &rogue)
        }
    }

    fn write(
        &self,
        stem: &str,
        p: CertificateParams,
        issuer: &CertifiedIssuer<'static, KeyPair>,
    ) -> CertFiles {
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, issuer).expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        // Written to a side file and renamed, so a reload never reads half a file.
        let tmp = self.dir.join(format!("{stem}.tmp"));
        std::fs::write(&tmp, key.serialize_pem()).expect("write key");
        std::fs::rename(&tmp, &files.key).expect("rename key");
        std::fs::write(&tmp, cert.pem()).expect("write cert");
        std::fs::rename(&tmp, &files.cert).expect("rename cert");
        files
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
