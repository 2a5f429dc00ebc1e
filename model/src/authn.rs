//! What authentication and rate limiting conclude about one request, in the terms the engine
//! applies.
//!
//! The checks themselves (API keys, JWTs, scopes, buckets) are decisions written in
//! `ringgate-policies`; the compiled snapshot runs them through the engine's `Gateway` trait
//! (`ringgate_http::gateway`) with the worker's own per-core state (verified-token caches,
//! leased buckets), so a warm request pays a hash lookup, not a signature check. The engine only
//! applies the verdict: refuse (401/403/429/503, with a challenge for auth), wait for work off the
//! core, or forward with the identity headers it was given.

/// What authentication adds to a request that passed.
#[derive(Debug, Default)]
pub struct AuthOutput {
    /// Header lines to add upstream (each `name: value\r\n`): the identity headers.
    pub headers: Vec<u8>,
    /// The identity's id for the access log (client id, else subject); empty when anonymous.
    pub identity: Vec<u8>,
    /// Strip the credential headers (`Authorization`, `X-API-Key`) from the upstream request.
    pub strip_credential: bool,
    /// A stable hash of the identity (consistent hashing and splits on identity), if any.
    pub key: Option<u64>,
    /// The client id (rate limits keyed on it); empty when none.
    pub client_id: Vec<u8>,
    /// The subject (`sub`); empty when none.
    pub subject: Vec<u8>,
    /// The tenant; empty when none.
    pub tenant: Vec<u8>,
    /// The rate-limit tier; empty when none.
    pub tier: Vec<u8>,
}

impl AuthOutput {
    /// Empties it for the next request (keeps the allocations).
    pub fn clear(&mut self) {
        self.headers.clear();
        self.identity.clear();
        self.strip_credential = false;
        self.key = None;
        self.client_id.clear();
        self.subject.clear();
        self.tenant.clear();
        self.tier.clear();
    }
}

/// The outcome of authenticating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Forward it (anonymously when the route allows and nothing was presented).
    Pass,
    /// Answer it with `status` and `{"error":code}`; `reason` says which check failed (access
    /// log and metrics only); `challenge` is the `WWW-Authenticate` value.
    Refuse {
        /// 401, 403 or 503.
        status: u16,
        /// The body's error code (`unauthorized`, `forbidden`, `auth_unavailable`).
        code: &'static str,
        /// The reason class (`expired`, `bad_signature`...).
        reason: &'static str,
        /// The challenge, if any.
        challenge: Option<String>,
    },
    /// The answer depends on work off the core (a key-set refresh after an unknown `kid`, a
    /// token introspection): wait until the gateway's `auth_poll` says `ticket` is
    /// ready, at most `within`, then authenticate the request once more (which then decides).
    Wait {
        /// What to poll for.
        ticket: u64,
        /// The longest wait.
        within: std::time::Duration,
    },
}

/// Which of a route's rate limits to judge: a request is judged twice, by the limits whose key
/// needs no identity before authentication (so refused authentications count against them) and
/// by the others after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitStage {
    /// Before authentication (the identity is not known yet).
    BeforeAuth,
    /// After authentication succeeded (or on a route without authentication).
    AfterAuth,
}

/// The outcome of a route's rate limits for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    /// Within every limit.
    Pass,
    /// Over a limit (429), or a fail-closed limit cannot reach its store (its status).
    Refuse {
        /// 429, or the configured status of a fail-closed limit.
        status: u16,
        /// The body's error code (`rate_limited`, `rate_limit_unavailable`).
        code: &'static str,
    },
    /// A fail-closed limit has no fresh word from its store on this key: wait until
    /// the gateway's `limits_poll` says `ticket` is ready, at most `within`, then
    /// judge the request again (which then decides).
    Wait {
        /// What to poll for.
        ticket: u64,
        /// The longest wait.
        within: std::time::Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_empties_every_field_and_keeps_the_buffers() {
        let mut out = AuthOutput {
            headers: b"x-client-id: billing\r\n".to_vec(),
            identity: b"billing".to_vec(),
            strip_credential: true,
            key: Some(7),
            client_id: b"billing".to_vec(),
            subject: b"alice".to_vec(),
            tenant: b"t1".to_vec(),
            tier: b"gold".to_vec(),
        };
        let cap = out.headers.capacity();
        out.clear();
        assert!(out.headers.is_empty() && out.identity.is_empty());
        assert!(out.client_id.is_empty() && out.subject.is_empty());
        assert!(out.tenant.is_empty() && out.tier.is_empty());
        assert!(!out.strip_credential);
        assert_eq!(out.key, None);
        assert_eq!(out.headers.capacity(), cap);
    }
}
