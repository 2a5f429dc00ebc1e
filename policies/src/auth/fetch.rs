//! What the per-request authentication asks of the fetchers that run off the request path: a key
//! set fetched from a URL, and a pool of RFC 7662 introspection calls.
//!
//! The fetchers own threads and HTTP clients, so they live in the control plane; the request path
//! only needs these few calls (atomic loads, a channel send). Defining them here as traits keeps
//! this crate free of I/O while [`crate::auth::Authenticator`] stays generic over the real
//! fetchers (static dispatch: no boxing, no vtable on the request path). [`NoFetcher`] stands in
//! where a gateway (or a test) has no such fetcher.

use super::{AuthFailure, Identity, Jwks, TokenDigest};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The answer to one introspection: the token's digest and the identity, or why not.
pub type IntrospectionResult = (TokenDigest, Result<Identity, AuthFailure>);

/// Where a core's introspection answers arrive.
pub type IntrospectionReply = crossbeam_channel::Sender<IntrospectionResult>;

/// A key set fetched elsewhere and kept fresh (shared by every core).
pub trait KeySetSource: Send + Sync {
    /// The current key set's epoch (changes when a fetch brings a new set); called once per JWT
    /// request, so it must be cheap (one atomic load).
    fn epoch(&self) -> u64;
    /// The current key set with its epoch, if one was ever fetched.
    fn load(&self) -> (u64, Option<Arc<Jwks>>);
    /// Asks for a refresh (coalesced with any pending one); returns a ticket for
    /// [`KeySetSource::refreshed_since`].
    fn request_refresh(&self) -> u64;
    /// Whether a refresh request was handled (fetched or declined) since `ticket`.
    fn refreshed_since(&self, ticket: u64) -> bool;
}

/// A bounded pool of introspection calls (shared by every core).
pub trait IntrospectionPool: Send + Sync {
    /// The longest a request waits for an answer.
    fn max_wait(&self) -> Duration;
    /// Asks about `token` for a request from `peer`; the answer is sent on `reply` (possibly
    /// before this returns). False, sending nothing, when the call is not taken (answer 503).
    fn start(self: &Arc<Self>, token: &[u8], peer: IpAddr, reply: IntrospectionReply) -> bool;
}

/// No fetcher: the type of an absent key-set source or introspection pool. It has no values, so
/// its methods can never run.
pub enum NoFetcher {}

impl KeySetSource for NoFetcher {
    fn epoch(&self) -> u64 {
        match *self {}
    }
    fn load(&self) -> (u64, Option<Arc<Jwks>>) {
        match *self {}
    }
    fn request_refresh(&self) -> u64 {
        match *self {}
    }
    fn refreshed_since(&self, _ticket: u64) -> bool {
        match *self {}
    }
}

impl IntrospectionPool for NoFetcher {
    fn max_wait(&self) -> Duration {
        match *self {}
    }
    fn start(self: &Arc<Self>, _token: &[u8], _peer: IpAddr, _reply: IntrospectionReply) -> bool {
        match **self {}
    }
}
