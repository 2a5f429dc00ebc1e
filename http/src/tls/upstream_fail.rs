//! Why a TLS handshake with an upstream failed, in words an operator can act on.
//!
//! A failed upstream handshake used to be one more `upstream_connect_failed`; the cause (a
//! certificate for another name, a CA the gateway does not trust, an expired certificate, an
//! upstream that refused the gateway) was lost. The reason travels inside the connect error (an
//! `io::Error` wrapping an [`UpstreamTlsFail`], found again with [`UpstreamTlsFail::of_io`]), so
//! every path that already carries connect errors carries it too; the engine answers
//! `502 upstream_tls_failed`, puts the reason in the access log and counts it in
//! `ringgate_upstream_tls_failures_total{upstream, reason}`.

use rustls::{CertificateError, Error as TlsError};

/// The reason an upstream TLS handshake failed. The names are the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamTlsFail {
    /// The certificate is not valid for the server name the gateway verifies.
    #[error("upstream tls: certificate not valid for the server name")]
    NameMismatch,
    /// The certificate does not chain to a CA the gateway trusts.
    #[error("upstream tls: certificate issued by an unknown CA")]
    UnknownCa,
    /// The certificate has expired or is not valid yet.
    #[error("upstream tls: certificate expired or not yet valid")]
    Expired,
    /// Any other certificate problem (bad signature, encoding, revoked...).
    #[error("upstream tls: bad certificate")]
    BadCertificate,
    /// The upstream aborted the handshake with an alert (it refused the gateway: no client
    /// certificate, a protocol version it will not speak...).
    #[error("upstream tls: the upstream sent an alert")]
    PeerAlert,
    /// No version, cipher suite or ALPN protocol in common.
    #[error("upstream tls: no version, cipher suite or protocol in common")]
    Incompatible,
    /// The upstream closed or reset the connection during the handshake.
    #[error("upstream tls: connection closed during the handshake")]
    Closed,
    /// The handshake did not finish within the connect timeout.
    #[error("upstream tls: handshake timed out")]
    Timeout,
    /// Anything else (not TLS, a malformed message...).
    #[error("upstream tls: handshake failed")]
    Handshake,
}

impl UpstreamTlsFail {
    /// Every reason, in metric order.
    pub const ALL: [UpstreamTlsFail; 9] = [
        UpstreamTlsFail::NameMismatch,
        UpstreamTlsFail::UnknownCa,
        UpstreamTlsFail::Expired,
        UpstreamTlsFail::BadCertificate,
        UpstreamTlsFail::PeerAlert,
        UpstreamTlsFail::Incompatible,
        UpstreamTlsFail::Closed,
        UpstreamTlsFail::Timeout,
        UpstreamTlsFail::Handshake,
    ];

    /// The metric label (and the access log's `detail`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamTlsFail::NameMismatch => "name_mismatch",
            UpstreamTlsFail::UnknownCa => "unknown_ca",
            UpstreamTlsFail::Expired => "expired",
            UpstreamTlsFail::BadCertificate => "bad_certificate",
            UpstreamTlsFail::PeerAlert => "peer_alert",
            UpstreamTlsFail::Incompatible => "incompatible",
            UpstreamTlsFail::Closed => "closed",
            UpstreamTlsFail::Timeout => "timeout",
            UpstreamTlsFail::Handshake => "handshake",
        }
    }

    /// Its position in [`UpstreamTlsFail::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason for an error rustls reported during the handshake.
    pub fn of(e: &TlsError) -> Self {
        match e {
            TlsError::InvalidCertificate(c) => match c {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => UpstreamTlsFail::NameMismatch,
                CertificateError::UnknownIssuer => UpstreamTlsFail::UnknownCa,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => UpstreamTlsFail::Expired,
                _ => UpstreamTlsFail::BadCertificate,
            },
            TlsError::AlertReceived(_) => UpstreamTlsFail::PeerAlert,
            TlsError::PeerIncompatible(_) | TlsError::NoApplicationProtocol => {
                UpstreamTlsFail::Incompatible
            }
            _ => UpstreamTlsFail::Handshake,
        }
    }

    /// This error as the `io::Error` connect paths carry (`TimedOut` for a timeout, so that
    /// timeouts stay timeouts to whoever looks only at the kind).
    pub fn into_io(self) -> std::io::Error {
        let kind = match self {
            UpstreamTlsFail::Timeout => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }

    /// The reason inside a connect error, when it is an upstream TLS failure.
    pub fn of_io(e: &std::io::Error) -> Option<Self> {
        e.get_ref()?.downcast_ref::<UpstreamTlsFail>().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_survive_the_trip_through_io_errors() {
        for r in UpstreamTlsFail::ALL {
            assert_eq!(UpstreamTlsFail::ALL[r.index()], r);
            assert_eq!(UpstreamTlsFail::of_io(&r.into_io()), Some(r));
        }
        assert_eq!(
            UpstreamTlsFail::of_io(&std::io::Error::other("refused")),
            None
        );
        assert_eq!(
            UpstreamTlsFail::of(&TlsError::InvalidCertificate(
                CertificateError::NotValidForName
            )),
            UpstreamTlsFail::NameMismatch
        );
        assert_eq!(
            UpstreamTlsFail::of(&TlsError::InvalidCertificate(
                CertificateError::UnknownIssuer
            )),
            UpstreamTlsFail::UnknownCa
        );
    }
}
