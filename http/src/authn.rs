//! What the engine asks of authentication: who is this request, and may it use its route?
//!
//! The checks themselves (API keys, JWTs, scopes) are decisions written in `ringgate-policies`;
//! the compiled snapshot runs them through [`crate::gateway::Gateway::authenticate`] with the
//! worker's own per-core [`crate::gateway::Gateway::Auth`] state (verified-token caches), so a
//! warm request pays a hash lookup, not a signature check. The engine only applies the verdict:
//! refuse (401/403/503 with a challenge), or forward with the identity headers it was given.

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
    /// token introspection): wait until [`crate::gateway::Gateway::auth_poll`] says `ticket` is
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
}
