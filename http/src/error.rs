//! The engine's failures and the one place that maps them to responses.
//!
//! Every gateway-made response comes from a [`Refusal`]; the type, its stable codes and the reason
//! phrases live in `ringgate-model` ([`ringgate_model::refusal`]), shared with the policies, and are
//! re-exported here under their old paths. What stays here is what knows the engine: a
//! [`ProxyError`] (why one proxied exchange failed) and how the codec's errors become refusals.

use crate::codec::CodecError;

pub use ringgate_model::refusal::{reason_phrase, FramingError, Refusal};

/// The codec's errors carry their status and code, so `Refusal::from_codec` takes them.
impl FramingError for CodecError {
    fn status(&self) -> u16 {
        CodecError::status(self)
    }

    fn code(&self) -> &'static str {
        CodecError::code(self)
    }
}

/// Why one proxied exchange failed (internal to the engine; becomes a [`Refusal`] or an abort).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client sent something the codec rejects.
    #[error("bad request: {0}")]
    Codec(#[from] CodecError),
    /// The client went away or its socket failed.
    #[error("client i/o: {0}")]
    ClientIo(std::io::Error),
    /// The client stalled while sending a body.
    #[error("client body stalled")]
    ClientStalled,
    /// The request body missed its deadline (total, or minimum rate).
    #[error("request body too slow")]
    BodyTooSlow,
    /// The request body is over the route's limit.
    #[error("request body over the route's limit")]
    BodyTooLarge,
    /// Connecting to the upstream failed or timed out.
    #[error("upstream connect failed: {0}")]
    Connect(std::io::Error),
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The upstream connection failed or closed mid-exchange.
    #[error("upstream i/o: {0}")]
    UpstreamIo(std::io::Error),
    /// The upstream sent something unparsable.
    #[error("upstream protocol error: {0}")]
    UpstreamProtocol(CodecError),
    /// The upstream's per-core connection cap is reached.
    #[error("upstream connection cap reached")]
    Overloaded,
}

impl ProxyError {
    /// The response for this failure, if one can still be sent; `None` means just close.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            ProxyError::Codec(e) => Some(Refusal::from_codec(e)),
            ProxyError::ClientIo(_) => None,
            ProxyError::ClientStalled => Some(Refusal::REQUEST_TIMEOUT),
            ProxyError::BodyTooSlow => Some(Refusal::BODY_TIMEOUT),
            ProxyError::BodyTooLarge => Some(Refusal::BODY_TOO_LARGE),
            ProxyError::Connect(e) if crate::tls::UpstreamTlsFail::of_io(e).is_some() => {
                Some(Refusal::UPSTREAM_TLS_FAILED)
            }
            ProxyError::Connect(_) => Some(Refusal::UPSTREAM_CONNECT_FAILED),
            ProxyError::Overloaded => Some(Refusal::UPSTREAM_OVERLOADED),
            ProxyError::UpstreamTimeout => Some(Refusal::UPSTREAM_TIMEOUT),
            ProxyError::UpstreamIo(_) | ProxyError::UpstreamProtocol(_) => {
                Some(Refusal::UPSTREAM_PROTOCOL)
            }
        }
    }
}
