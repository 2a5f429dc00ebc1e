//! Builds a listener's `rustls::ServerConfig` from what the operator wrote: certificates chosen
//! by SNI (exact names, then `*.` wildcards, then the first certificate unless SNI is strict),
//! TLS 1.2 and/or 1.3, ALPN, optional client-certificate verification, and stateless session
//! tickets.
//!
//! Everything here runs when a snapshot is built (start and reload), off the request path.
//! rustls' default session cache is one mutex shared by every core; resumption goes through
//! stateless tickets instead, encrypted with keys made once per process ([`new_ticketer`]) and
//! handed to every rebuilt config, so a ticket issued before a reload still resumes after it.

use super::TlsError;
use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::Arc;

/// One certificate of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCert {
    /// PEM file holding the leaf certificate, then its chain.
    pub cert_path: String,
    /// PEM file holding the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: String,
    /// The server names it answers for (`*.example.com` allowed); empty: the certificate's own
    /// DNS names (its subject alternative names, else its common name).
    pub names: Vec<String>,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates asked for.
    Off,
    /// Asked for; a client without one is let in anonymously, one with a bad one is refused.
    Optional {
        /// PEM bundle of the CAs client certificates must chain to.
        ca_path: String,
    },
    /// A verified client certificate is needed to finish the handshake.
    Required {
        /// PEM bundle of the CAs client certificates must chain to.
        ca_path: String,
    },
}

/// Which TLS versions a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersions {
    /// TLS 1.2.
    pub tls12: bool,
    /// TLS 1.3.
    pub tls13: bool,
}

/// A listener's TLS settings, as compiled from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Its certificates; the first is the default.
    pub certs: Vec<NamedCert>,
    /// Refuse handshakes whose SNI matches no certificate (instead of serving the first).
    pub strict_sni: bool,
    /// Client certificates.
    pub client_auth: ClientAuth,
    /// Versions.
    pub versions: TlsVersions,
    /// ALPN protocols offered, in preference order (e.g. `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
}

/// The crypto provider every config uses (ring: no C toolchain beyond `cc`, no aws-lc build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Session-ticket keys for the process: rotated every 6 hours by rustls, shared by every core
/// and every config built from now on. Encrypting or decrypting a ticket takes a read lock
/// inside rustls, once per handshake (never per request).
pub fn new_ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsError> {
    rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Settings(e.to_string()))
}

/// Builds the config of a listener. `tickets`: the process's ticket keys (none: no resumption).
pub fn build_server_config(
    spec: &ListenerTls,
    tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let resolver = SniResolver::load(&spec.certs, spec.strict_sni, &provider)?;
    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::with_capacity(2);
    if spec.versions.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if spec.versions.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if versions.is_empty() {
        return Err(TlsError::Settings("no TLS version enabled".into()));
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    let builder = match &spec.client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        ClientAuth::Optional { ca_path } | ClientAuth::Required { ca_path } => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = read_certs(ca_path)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::ClientCa {
                    path: ca_path.clone(),
                    why: "no usable CA certificate in the file".into(),
                });
            }
            let vb = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let vb = if matches!(spec.client_auth, ClientAuth::Optional { .. }) {
                vb.allow_unauthenticated()
            } else {
                vb
            };
            let verifier = vb.build().map_err(|e| TlsError::ClientCa {
                path: ca_path.clone(),
                why: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols.clone_from(&spec.alpn);
    // Stateless tickets only: the stateful cache would be one mutex for all cores.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    match tickets {
        Some(t) => config.ticketer = t,
        None => config.send_tls13_tickets = 0,
    }
    Ok(Arc::new(config))
}

/// Reads every certificate of a PEM file.
fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |why: String| TlsError::File {
        path: path.to_string(),
        why,
    };
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| file_err(e.to_string()))?;
    let certs: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Picks the certificate for a ClientHello's server name.
#[derive(Debug)]
struct SniResolver {
    /// Exact names (lower case).
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.suffix` names, by suffix (lower case, without the `*.`).
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// Served when nothing matches (none when SNI is strict).
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn load(
        certs: &[NamedCert],
        strict: bool,
        provider: &CryptoProvider,
    ) -> Result<Self, TlsError> {
        let mut r = SniResolver {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        };
        for c in certs {
            let chain = read_certs(&c.cert_path)?;
            let key = PrivateKeyDer::from_pem_file(&c.key_path).map_err(|e| TlsError::File {
                path: c.key_path.clone(),
                why: e.to_string(),
            })?;
            let bad = |why: String| TlsError::Certificate {
                path: c.cert_path.clone(),
                why,
            };
            let signer = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| bad(e.to_string()))?;
            let names = if c.names.is_empty() {
                super::identity::dns_names(&chain[0])
            } else {
                c.names.clone()
            };
            if names.is_empty() && r.default.is_some() {
                return Err(bad(
                    "the certificate has no DNS name: give it `names`, or list it first as the default".into(),
                ));
            }
            let ck = CertifiedKey::new(chain, signer);
            ck.keys_match()
                .map_err(|e| bad(format!("the key does not match the certificate: {e}")))?;
            let ck = Arc::new(ck);
            for n in names {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(suffix) => r
                        .wildcard
                        .entry(suffix.into())
                        .or_insert_with(|| ck.clone()),
                    None => r.exact.entry(n.into()).or_insert_with(|| ck.clone()),
                };
            }
            if r.default.is_none() {
                r.default = Some(ck);
            }
        }
        if r.default.is_none() {
            return Err(TlsError::Settings(
                "a TLS listener needs a certificate".into(),
            ));
        }
        if strict {
            r.default = None;
        }
        Ok(r)
    }

    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            if let Some(ck) = self.exact.get(name) {
                return Some(ck.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(ck) = self.wildcard.get(parent) {
                    return Some(ck.clone());
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &std::path::Path, stem: &str, names: &[&str]) -> NamedCert {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, ck.cert.pem()).expect("write cert");
        std::fs::write(&key_path, ck.signing_key.serialize_pem()).expect("write key");
        NamedCert {
            cert_path: cert_path.display().to_string(),
            key_path: key_path.display().to_string(),
            names: Vec::new(),
        }
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ringgate-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let d = tmpdir("sni");
        let certs = vec![
            write_cert(&d, "a", &["a.example"]),
            write_cert(&d, "b", &["b.example", "*.b.example"]),
            write_cert(&d, "c", &["c.example"]),
        ];
        let p = provider();
        let r = SniResolver::load(&certs, false, &p).expect("load");
        let a = r.pick(Some("a.example")).expect("a");
        let b = r.pick(Some("b.example")).expect("b");
        let c = r.pick(Some("C.Example")).expect("c");
        assert!(!Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&b, &c) && !Arc::ptr_eq(&a, &c));
        assert!(Arc::ptr_eq(&r.pick(Some("x.b.example")).expect("wild"), &b));
        // A wildcard covers one label only.
        assert!(Arc::ptr_eq(
            &r.pick(Some("y.x.b.example")).expect("deflt"),
            &a
        ));
        assert!(Arc::ptr_eq(&r.pick(None).expect("no sni"), &a));
        let strict = SniResolver::load(&certs, true, &p).expect("load");
        assert!(strict.pick(Some("nope.example")).is_none());
        assert!(strict.pick(Some("c.example")).is_some());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn mismatched_key_and_missing_files_are_errors() {
        let d = tmpdir("bad");
        let a = write_cert(&d, "a", &["a.example"]);
        let b = write_cert(&d, "b", &["b.example"]);
        let crossed = NamedCert {
            cert_path: a.cert_path.clone(),
            key_path: b.key_path.clone(),
            names: Vec::new(),
        };
        let spec = |c: NamedCert| ListenerTls {
            certs: vec![c],
            strict_sni: false,
            client_auth: ClientAuth::Off,
            versions: TlsVersions {
                tls12: true,
                tls13: true,
            },
            alpn: vec![b"http/1.1".to_vec()],
        };
        let e = build_server_config(&spec(crossed), None).expect_err("crossed");
        assert!(e.to_string().contains("does not match"), "{e}");
        let missing = NamedCert {
            cert_path: d.join("none.pem").display().to_string(),
            ..a.clone()
        };
        assert!(build_server_config(&spec(missing), None).is_err());
        let garbage = d.join("garbage.pem");
        std::fs::write(&garbage, "not pem").expect("write");
        let g = NamedCert {
            cert_path: garbage.display().to_string(),
            ..a.clone()
        };
        assert!(build_server_config(&spec(g), None).is_err());
        assert!(build_server_config(&spec(a), new_ticketer().ok()).is_ok());
        let _ = std::fs::remove_dir_all(d);
    }
}
