//! The edge features of the ladder's rungs as ringgate config: what [`super::topology::rung_toml`]
//! adds to the routing-only config for a rung's [`Features`], written the way an operator would
//! set them up, and what each request kind is then meant to get back ([`Expect`]).
//!
//! - auth: JWTs on the service routes (item reads and writes, virtual hosts, tenant routes,
//!   uploads) against a JWKS file; search, status, downloads, streams and `/healthz` stay public.
//!   Every client of the harness is 127.0.0.1, so the per-address verification budget (a guard
//!   against forged-token floods from one address) is off, as the README advises behind a proxy.
//! - limit: a per-user token bucket on the authenticated routes, generous for everyone but the
//!   `free` tier, which the scenario's noisy consumer is on; reconciled through Redis.
//! - resilience: outlier ejection and a circuit breaker on every upstream, budgeted idempotent
//!   retries on every route.
//! - observe: Prometheus metrics, request ids and a JSON access log written to a file.
//! - tls: the listener terminates TLS with the harness's self-signed certificate.
//!
//! Every feature rung also gets an `[admin]` listener: the key rotation reloads through it.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::topology::{list, q, Route};
use super::Features;

/// The JWT issuer of the scenario's tokens.
pub const ISSUER: &str = "https://idp.tax.test";
/// The audience of the scenario's tokens.
pub const AUDIENCE: &str = "tax-api";
/// The rate-limit tier of the noisy consumer (the tokens' `tier` claim).
pub const NOISY_TIER: &str = "free";
/// Per-user bucket of everyone else: far above what one user of the scenario sends.
const USER_RATE: u32 = 1000;
/// The noisy consumer's bucket: a free tier, below what it sends.
const NOISY_RATE: u32 = 1;

/// What a request kind is meant to get back, by the rung's features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// A 2xx/3xx answer on every rung.
    #[default]
    Ok,
    /// 401 where auth is on (an expired, forged or missing token), else 2xx/3xx.
    Refused,
    /// A token of the key the rotation adds: 401 before it, 2xx after, where auth is on.
    RotatedIn,
    /// A token of the key the rotation drops: 2xx before it, 401 after, where auth is on.
    RotatedOut,
    /// The noisy consumer: 2xx, or 429 where limits are on.
    Noisy,
}

impl Expect {
    /// Whether `status` is an answer this kind may get on a rung with `features` (`None`: no
    /// gateway).
    pub fn accepts(self, features: Option<Features>, status: u16) -> bool {
        let f = features.unwrap_or_default();
        let ok = (200..400).contains(&status);
        match self {
            Expect::Ok => ok,
            Expect::Refused if f.auth => status == 401,
            Expect::RotatedIn | Expect::RotatedOut if f.auth => ok || status == 401,
            Expect::Noisy if f.limit => ok || status == 429,
            Expect::Refused | Expect::RotatedIn | Expect::RotatedOut | Expect::Noisy => ok,
        }
    }
}

/// Where a rung's config points: the files and services its features use. Paths are written
/// as given (absolute for a run, relative to the emitted folder for `--emit`).
#[derive(Clone, Debug)]
pub struct Edge {
    /// The rung's features.
    pub features: Features,
    /// The admin API (reloads, `/metrics`).
    pub admin: SocketAddr,
    /// The JWKS file.
    pub jwks: String,
    /// The Redis the rate limits reconcile through.
    pub redis: SocketAddr,
    /// The access log file (see [`super::stand::rung_edge`]: each rung writes its own).
    pub access_log: String,
    /// The listener's certificate chain (PEM).
    pub cert: String,
    /// Its private key (PEM).
    pub key: String,
}

fn on(edge: Option<&Edge>) -> Features {
    edge.map(|e| e.features).unwrap_or_default()
}

/// Lines of the `[[listeners]]` table (after its address).
pub fn listener(edge: Option<&Edge>, o: &mut String) {
    let Some(e) = edge.filter(|e| e.features.tls) else {
        return;
    };
    let _ = writeln!(
        o,
        "[listeners.tls]\ncertificates = [{{ cert = {}, key = {} }}]",
        q(&e.cert),
        q(&e.key)
    );
}

/// Sub-tables of an `[[upstreams]]` table (after its endpoints).
pub fn upstream(edge: Option<&Edge>, o: &mut String) {
    if !on(edge).resilience {
        return;
    }
    o.push_str(
        "[upstreams.outlier]\nconsecutive_5xx_per_core = 5\nconsecutive_connect_failures_per_core = 3\n\
         base_ejection = \"30s\"\nmax_ejection = \"300s\"\nmax_ejected_percent = 50\n\
         [upstreams.circuit_breaker]\nerror_ratio = 0.5\nmin_requests_per_core = 20\n\
         window = \"10s\"\nopen_for = \"5s\"\nhalf_open_probes = 1\n",
    );
}

/// Keys of a `[[routes]]` table (before its sub-tables).
pub fn route_keys(edge: Option<&Edge>, r: &Route, o: &mut String) {
    let f = on(edge);
    if f.auth && r.auth {
        o.push_str("auth = { mode = \"required\", methods = [\"jwt\"] }\n");
    }
    if f.limit && r.auth {
        o.push_str("rate_limits = [\"per-user\"]\n");
    }
}

/// Sub-tables of a `[[routes]]` table (its last lines).
pub fn route_tables(edge: Option<&Edge>, _r: &Route, o: &mut String) {
    if !on(edge).resilience {
        return;
    }
    // Only idempotent requests are retried (ringgate's rule), each to another replica.
    o.push_str(
        "[routes.retry]\nattempts = 2\non = [\"connect_failure\", \"reset\", \"503\"]\n\
         backoff = \"25ms\"\nbudget_ratio = 0.2\n",
    );
}

/// Top-level sections, after the routes.
pub fn sections(edge: Option<&Edge>, o: &mut String) {
    let Some(e) = edge else {
        return;
    };
    let f = e.features;
    let _ = writeln!(o, "[admin]\naddress = {}\n", q(&e.admin.to_string()));
    if f.auth {
        let _ = writeln!(
            o,
            "[auth]\njwks_file = {}\n# Every client of the harness is 127.0.0.1: no per-address \
             verification budget.\nmax_verifications_per_client = 0\n\
             [auth.jwt]\nissuers = {}\naudiences = {}\nalgorithms = {}\ntier_claim = \"tier\"\n",
            q(&e.jwks),
            list(&[ISSUER]),
            list(&[AUDIENCE]),
            list(&super::auth::ALGORITHMS)
        );
    }
    if f.limit {
        let _ = writeln!(
            o,
            "[rate_limit]\nredis = {}\ntick = \"20ms\"\n\n\
             [[rate_limits]]\nname = \"per-user\"\nkey = \"user\"\nrate = {USER_RATE}\n\
             burst = {}\ntiers = {{ {NOISY_TIER} = {{ rate = {NOISY_RATE}, burst = {NOISY_RATE} }} }}\n",
            q(&format!("redis://{}/", e.redis)),
            USER_RATE * 2
        );
    }
    if f.observe {
        let _ = writeln!(
            o,
            "[access_log]\npath = {}\n\n[observability]\nmetrics = true\nrequest_ids = true\n",
            q(&e.access_log)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_statuses_follow_the_rungs_features() {
        let none = None;
        let auth = Some(Features {
            auth: true,
            ..Features::default()
        });
        let limit = Some(Features {
            auth: true,
            limit: true,
            ..Features::default()
        });
        assert!(Expect::Refused.accepts(none, 200));
        assert!(!Expect::Refused.accepts(none, 401));
        assert!(!Expect::Refused.accepts(auth, 200));
        assert!(Expect::Refused.accepts(auth, 401));
        assert!(Expect::RotatedIn.accepts(auth, 401) && Expect::RotatedIn.accepts(auth, 200));
        assert!(!Expect::Noisy.accepts(auth, 429));
        assert!(Expect::Noisy.accepts(limit, 429));
        assert!(!Expect::Ok.accepts(limit, 401));
        assert!(!Expect::Ok.accepts(limit, 502));
    }
}
