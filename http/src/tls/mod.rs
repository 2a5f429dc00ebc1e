//! TLS termination on the worker cores, with rustls driven by hand over monoio's rent I/O.
//!
//! Why by hand: the engine's HTTP/1.1 loop lends owned buffers to the ring, and rustls is a
//! plain state machine (`read_tls` / `process_new_packets` / `write_tls`), so a connection needs
//! no adapter layer, no extra task and no poll-style I/O. [`server`] builds one
//! `rustls::ServerConfig` per listener from the config (certificates chosen by SNI, versions,
//! ALPN, client-certificate verification, stateless session tickets whose keys are shared by all
//! cores); [`stream`] runs the handshake and moves application data; [`identity`] reads the
//! verified client certificate into the identity the auth filters see.
//!
//! A new connection takes the listener's config from the worker's current snapshot, so a reload
//! that swapped a certificate serves it to new connections while old ones finish on theirs.

pub mod identity;
pub mod server;
pub mod stream;
pub mod upstream_fail;

pub use identity::CertIdentity;
pub use server::{build_server_config, ClientAuth, ListenerTls, NamedCert, TlsVersions};
pub use stream::{HandshakeFail, TlsConn};
pub use upstream_fail::UpstreamTlsFail;

/// A listener's TLS setup could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The certificate and key do not belong together, or rustls refused them.
    #[error("certificate {path}: {why}")]
    Certificate {
        /// The certificate file.
        path: String,
        /// rustls' reason.
        why: String,
    },
    /// The client CA bundle cannot verify anything.
    #[error("client_ca {path}: {why}")]
    ClientCa {
        /// The bundle.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// rustls refused the settings (versions, provider).
    #[error("tls settings: {0}")]
    Settings(String),
}
