//! What a certificate says about who holds it: the DNS names a server certificate answers for
//! (SNI selection when the operator gave none), and the identity of a verified client
//! certificate (mTLS), handed to the auth filters and forwarded upstream.
//!
//! Parsing happens once per handshake (client) or per config build (server), never per request.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The identity of a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject as an RFC 4514 string (`CN=svc-a,O=Acme`).
    pub subject: Box<str>,
    /// Subject alternative names: `URI:...`, `DNS:...`, `email:...`, `IP:...`.
    pub sans: Vec<Box<str>>,
    /// `sans` joined with `, ` (the `x-client-cert-san` header value).
    pub san_list: Box<str>,
    /// The one id rate limits and the access log use: the first URI SAN (a SPIFFE id), else the
    /// first DNS SAN, else the first email, else the subject's common name, else the subject.
    pub id: Box<str>,
}

impl CertIdentity {
    /// Reads the identity of a DER certificate (`None` when it cannot be parsed, which a
    /// verified certificate always can).
    pub fn from_der(der: &[u8]) -> Option<CertIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject().to_string();
        let mut sans = Vec::new();
        let (mut uri, mut dns, mut email) = (None, None, None);
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for n in &ext.value.general_names {
                let s = match n {
                    GeneralName::URI(u) => {
                        uri.get_or_insert(*u);
                        format!("URI:{u}")
                    }
                    GeneralName::DNSName(d) => {
                        dns.get_or_insert(*d);
                        format!("DNS:{d}")
                    }
                    GeneralName::RFC822Name(e) => {
                        email.get_or_insert(*e);
                        format!("email:{e}")
                    }
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => format!(
                            "IP:{}",
                            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?)
                        ),
                        16 => format!(
                            "IP:{}",
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?)
                        ),
                        _ => continue,
                    },
                    _ => continue,
                };
                sans.push(sanitize(&s));
            }
        }
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok());
        let id = uri.or(dns).or(email).or(cn).unwrap_or(&subject);
        Some(CertIdentity {
            subject: sanitize(&subject),
            id: sanitize(id),
            san_list: sans.join(", ").into_boxed_str(),
            sans,
        })
    }
}

/// Keeps a value safe to put in a header line: visible ASCII and spaces only.
fn sanitize(s: &str) -> Box<str> {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .into_boxed_str()
}

/// The DNS names a server certificate covers: its DNS subject alternative names, else its
/// common name.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, c)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(ext)) = c.subject_alternative_name() {
        for n in &ext.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push((*d).to_string());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
        {
            names.push(cn.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_prefers_uri_then_dns_then_cn() {
        let mut p =
            rcgen::CertificateParams::new(vec!["svc.internal".to_string()]).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "svc-a");
        p.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://acme/ns/prod/sa/svc-a".try_into().expect("uri"),
        ));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("sign");
        let id = CertIdentity::from_der(cert.der()).expect("parse");
        assert_eq!(&*id.id, "spiffe://acme/ns/prod/sa/svc-a");
        assert!(id.subject.contains("CN=svc-a"), "{}", id.subject);
        assert!(
            id.sans.iter().any(|s| &**s == "DNS:svc.internal"),
            "{:?}",
            id.sans
        );
        assert_eq!(dns_names(cert.der()), vec!["svc.internal".to_string()]);

        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "only-cn");
        let cert = p.self_signed(&key).expect("sign");
        let id = CertIdentity::from_der(cert.der()).expect("parse");
        assert_eq!(&*id.id, "only-cn");
        assert_eq!(dns_names(cert.der()), vec!["only-cn".to_string()]);
        assert!(CertIdentity::from_der(b"garbage").is_none());
    }
}
