//! `[listeners.tls]`: what an operator writes to terminate TLS on a listener, and its compilation
//! into the `rustls::ServerConfig` the workers handshake with.
//!
//! Certificate and key files are read when a snapshot is built, so a reload (`SIGHUP`, the admin
//! API, or a changed config file) picks up renewed certificates for new connections, while
//! connections already open keep theirs. Session-ticket keys are made once per process and shared
//! by every config built, so a reload does not void the tickets clients hold.

use ringgate_http::tls::server::new_ticketer;
use ringgate_http::tls::{build_server_config, ClientAuth, ListenerTls, NamedCert, TlsVersions};
use rustls::server::ProducesTickets;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// `[listeners.tls]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificates, chosen by SNI; the first one is served when no name matches (unless
    /// `strict_sni`).
    pub certificates: Vec<CertConfig>,
    /// Refuse a handshake whose server name matches no certificate.
    #[serde(default)]
    pub strict_sni: bool,
    /// Client certificates: `off` (default), `optional` or `required`.
    #[serde(default)]
    pub client_auth: Option<String>,
    /// PEM bundle of the CAs client certificates must chain to (with `client_auth`).
    #[serde(default)]
    pub client_ca: Option<String>,
    /// TLS versions: any of `"1.2"`, `"1.3"` (default both).
    #[serde(default)]
    pub versions: Option<Vec<String>>,
    /// ALPN protocols offered, in preference order (default `["h2", "http/1.1"]`).
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
    /// Issue session tickets for resumption (default true).
    #[serde(default)]
    pub session_tickets: Option<bool>,
}

/// One certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// PEM file: the leaf certificate, then its chain.
    pub cert: String,
    /// PEM file: the private key.
    pub key: String,
    /// Server names it answers for (`*.example.com` allowed); default: the certificate's own
    /// DNS names.
    #[serde(default)]
    pub names: Vec<String>,
}

/// The process's session-ticket keys (made on first use, kept for the process's life).
fn ticketer() -> Result<Arc<dyn ProducesTickets>, String> {
    static KEYS: OnceLock<Result<Arc<dyn ProducesTickets>, String>> = OnceLock::new();
    KEYS.get_or_init(|| new_ticketer().map_err(|e| e.to_string()))
        .clone()
}

/// Compiles listener `i`'s TLS settings, reading its files. Problems go to `errs`.
pub fn compile(
    cfg: &TlsConfig,
    i: usize,
    errs: &mut Vec<String>,
) -> Option<Arc<rustls::ServerConfig>> {
    let at = format!("listeners[{i}].tls");
    let before = errs.len();
    if cfg.certificates.is_empty() {
        errs.push(format!(
            "{at}.certificates: at least one certificate is needed"
        ));
    }
    let client_auth = match (cfg.client_auth.as_deref(), &cfg.client_ca) {
        (None | Some("off"), None) => ClientAuth::Off,
        (None | Some("off"), Some(_)) => {
            errs.push(format!(
                "{at}.client_ca: set client_auth = \"optional\" or \"required\" to use it"
            ));
            ClientAuth::Off
        }
        (Some("optional"), Some(ca)) => ClientAuth::Optional {
            ca_path: ca.clone(),
        },
        (Some("required"), Some(ca)) => ClientAuth::Required {
            ca_path: ca.clone(),
        },
        (Some("optional" | "required"), None) => {
            errs.push(format!("{at}.client_ca: client_auth needs a CA bundle"));
            ClientAuth::Off
        }
        (Some(other), _) => {
            errs.push(format!(
                "{at}.client_auth: {other:?} is not off, optional or required"
            ));
            ClientAuth::Off
        }
    };
    let mut versions = TlsVersions {
        tls12: true,
        tls13: true,
    };
    if let Some(list) = &cfg.versions {
        versions = TlsVersions {
            tls12: false,
            tls13: false,
        };
        for v in list {
            match v.as_str() {
                "1.2" => versions.tls12 = true,
                "1.3" => versions.tls13 = true,
                other => errs.push(format!(
                    "{at}.versions: {other:?} is not \"1.2\" or \"1.3\" (older versions are not offered)"
                )),
            }
        }
        if list.is_empty() {
            errs.push(format!("{at}.versions: name at least one version"));
        }
    }
    let alpn: Vec<Vec<u8>> = match &cfg.alpn {
        None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Some(list) => {
            for p in list {
                if p != "http/1.1" && p != "h2" {
                    errs.push(format!(
                        "{at}.alpn: {p:?} is not served (h2 and http/1.1 are)"
                    ));
                }
            }
            if list.is_empty() {
                errs.push(format!("{at}.alpn: name at least one protocol"));
            }
            list.iter().map(|p| p.as_bytes().to_vec()).collect()
        }
    };
    if errs.len() > before {
        return None;
    }
    let spec = ListenerTls {
        certs: cfg
            .certificates
            .iter()
            .map(|c| NamedCert {
                cert_path: c.cert.clone(),
                key_path: c.key.clone(),
                names: c.names.clone(),
            })
            .collect(),
        strict_sni: cfg.strict_sni,
        client_auth,
        versions,
        alpn,
    };
    let tickets = if cfg.session_tickets.unwrap_or(true) {
        match ticketer() {
            Ok(t) => Some(t),
            Err(e) => {
                errs.push(format!("{at}: session ticket keys: {e}"));
                return None;
            }
        }
    } else {
        None
    };
    match build_server_config(&spec, tickets) {
        Ok(c) => Some(c),
        Err(e) => {
            errs.push(format!("{at}: {e}"));
            None
        }
    }
}

/// `[upstreams.tls]`: TLS from the gateway to an upstream's endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM bundle of the CAs the upstream's certificate must chain to (default: the host's
    /// trusted roots).
    #[serde(default)]
    pub ca: Option<String>,
    /// The name sent as SNI and verified in the certificate (default: the upstream's
    /// `host_header` when it is a name, else the host of its first endpoint as written).
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM certificate (and chain) the gateway presents (mTLS to the upstream).
    #[serde(default)]
    pub client_cert: Option<String>,
    /// PEM key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<String>,
}

/// Compiles upstream `i`'s TLS settings (`default_name`: the name to verify when none is given).
pub fn compile_upstream(
    cfg: &UpstreamTlsConfig,
    i: usize,
    default_name: Option<&str>,
    h2: bool,
    errs: &mut Vec<String>,
) -> Option<ringgate_http::gateway::UpstreamTls> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let at = format!("upstreams[{i}].tls");
    let name = match cfg.server_name.as_deref().or(default_name) {
        Some(n) => match ServerName::try_from(n.to_string()) {
            Ok(n) => n,
            Err(e) => {
                errs.push(format!("{at}.server_name: {n:?}: {e}"));
                return None;
            }
        },
        None => {
            errs.push(format!(
                "{at}.server_name: needed (the endpoints are addresses and host_header names no host)"
            ));
            return None;
        }
    };
    let mut key = KeyDigest::default();
    key.part(name.to_str().as_bytes());
    let certs = match root_certs(cfg.ca.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            errs.push(format!("{at}.ca: {e}"));
            return None;
        }
    };
    for c in &certs {
        key.part(c);
    }
    let builder = match client_builder(certs) {
        Ok(b) => b,
        Err(e) => {
            errs.push(format!("{at}: {e}"));
            return None;
        }
    };
    let mut config = match (&cfg.client_cert, &cfg.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(c), Some(k)) => {
            let chain: Result<Vec<_>, _> = match CertificateDer::pem_file_iter(c) {
                Ok(it) => it.collect(),
                Err(e) => {
                    errs.push(format!("{at}.client_cert: {c}: {e}"));
                    return None;
                }
            };
            let chain = chain.unwrap_or_default();
            let private = match PrivateKeyDer::from_pem_file(k) {
                Ok(private) => private,
                Err(e) => {
                    errs.push(format!("{at}.client_key: {k}: {e}"));
                    return None;
                }
            };
            key.part(b"client");
            for c in &chain {
                key.part(c);
            }
            key.part(private.secret_der());
            match builder.with_client_auth_cert(chain, private) {
                Ok(cfg) => cfg,
                Err(e) => {
                    errs.push(format!("{at}.client_cert: {e}"));
                    return None;
                }
            }
        }
        _ => {
            errs.push(format!("{at}: client_cert and client_key go together"));
            return None;
        }
    };
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    for p in &config.alpn_protocols {
        key.part(p);
    }
    Some(ringgate_http::gateway::UpstreamTls {
        config: std::sync::Arc::new(config),
        server_name: name,
        key: key.finish(),
    })
}

/// Digests what a handshake under an upstream's TLS settings depends on, each part
/// length-prefixed; the pool key of its connections (see `ringgate_http::pool::ConnKey`).
#[derive(Default)]
struct KeyDigest(sha2::Sha256);

impl KeyDigest {
    fn part(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// The first 8 bytes of the digest, never 0 (0 is the cleartext key).
    fn finish(self) -> u64 {
        use sha2::Digest;
        let d = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        u64::from_le_bytes(first).max(1)
    }
}

/// The trust anchors of a TLS client: the CA certificates of the PEM bundle at `ca`, or the
/// host's trusted roots; an error when there is none usable.
pub fn root_certs(
    ca: Option<&str>,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs = match ca {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| format!("{path}: {e}"))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let mut probe = rustls::RootCertStore::empty();
    let (added, _) = probe.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(match ca {
            Some(path) => format!("{path}: no usable CA certificate"),
            None => "the host has no trusted roots: give a CA bundle".to_string(),
        });
    }
    Ok(certs)
}

/// TLS client settings for the control plane's https calls: `root_certs(ca)` as trust anchors,
/// TLS 1.3 and 1.2, one ALPN protocol, no client certificate.
pub fn client_config(
    ca: Option<&str>,
    alpn: &[u8],
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let mut config = client_builder(root_certs(ca)?)?.with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(std::sync::Arc::new(config))
}

/// Like [`client_config`], presenting the client certificate chain `cert` with its key `key`
/// (PEM files) when given (mutual TLS, e.g. to etcd).
pub fn client_config_with_cert(
    ca: Option<&str>,
    cert_key: Option<(&str, &str)>,
    alpn: &[u8],
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let builder = client_builder(root_certs(ca)?)?;
    let mut config = match cert_key {
        None => builder.with_no_client_auth(),
        Some((c, k)) => {
            let chain = CertificateDer::pem_file_iter(c)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("{c}: {e}"))?;
            let private = PrivateKeyDer::from_pem_file(k).map_err(|e| format!("{k}: {e}"))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("{c}: {e}"))?
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(std::sync::Arc::new(config))
}

/// A TLS client configuration on the ring provider, TLS 1.3 and 1.2, trusting `certs`; what is
/// left to say is the client certificate.
fn client_builder(
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots))
}
