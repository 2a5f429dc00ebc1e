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
