//! Whether a response may be stored by a shared cache, for how long it is fresh, and whether a
//! stored response may answer a request now (RFC 9111 §3, §4.2, §4.3.4; RFC 5861).
//!
//! Stored only: responses to `GET`; final statuses that are cacheable by default (200, 203, 204,
//! 300, 301, 308, 404, 405, 410, 414, 501) or that the route gives a TTL (`status_ttl`); not
//! `no-store` (response or request), not `private`, not `Vary: *`, not `206`; responses that set
//! cookies only when the route allows it; responses to requests with `Authorization` only when
//! the route allows it *and* the response says `public`, `s-maxage` or `must-revalidate`
//! (§3.5). Freshness comes from `s-maxage`, else `max-age`, else `Expires` minus `Date` (an
//! invalid `Expires` means already stale), else the route's TTL for the status, else its
//! default TTL. A response with no freshness of either kind is not stored; neither is one that
//! must be validated before every use (`no-cache`, or zero freshness) but has no validator to
//! validate with.
//!
//! Stale serving: `stale-while-revalidate` and `stale-if-error` from the response, or the route's
//! defaults when the response has none (the route's win with `stale_override`); never for a
//! response that says `must-revalidate`/`proxy-revalidate` or `no-cache`. (`s-maxage` implies
//! proxy-revalidate in RFC 9111, but an explicit stale-* directive beside it is the origin's own
//! permission, as CDNs read it.)

use super::directives::{RequestDirectives, ResponseDirectives, MAX_DELTA};
use super::{first, values, Field};
use std::time::{Duration, Instant};

/// What a route says about caching, beside what responses say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Freshness for a cacheable-by-default status whose response gives none.
    pub default_ttl: Option<Duration>,
    /// Freshness by status when the response gives none (also makes the status storable).
    pub status_ttl: Vec<(u16, Duration)>,
    /// Responses to requests with `Authorization` may be shared (when the response allows).
    pub shared_authenticated: bool,
    /// Responses with `Set-Cookie` may be stored (the cookie is then served to everyone).
    pub store_set_cookie: bool,
    /// `stale-while-revalidate` when the response has none.
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` when the response has none.
    pub stale_if_error: Option<Duration>,
    /// The route's stale-* values win over the response's.
    pub stale_override: bool,
}

/// How long a stored response is fresh and how it may be used once stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime.
    pub lifetime: Duration,
    /// Its age when it arrived (RFC 9111 §4.2.3 corrected initial age).
    pub initial_age: Duration,
    /// May be served stale this long while a refresh runs.
    pub while_revalidate: Duration,
    /// May be served stale this long when the upstream fails.
    pub if_error: Duration,
    /// Must be validated before every use (`no-cache`).
    pub no_cache: bool,
    /// Never served stale (`must-revalidate`, `proxy-revalidate`).
    pub must_revalidate: bool,
    /// Has `ETag` or `Last-Modified` (can be validated with a conditional request).
    pub validatable: bool,
}

/// Why a response is not stored.
pub type Skip = &'static str;

/// The request facts the verdict needs.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The request was a `GET`.
    pub get: bool,
    /// It carried `Authorization`.
    pub authorization: bool,
    /// Its `Cache-Control`.
    pub directives: &'a RequestDirectives,
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1).
const CACHEABLE_BY_DEFAULT: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Whether the response `status` with `fields` to the request `asked` may be stored, and its
/// freshness if so. `request_time` and `response_time` are when the request went upstream and
/// the response head came back; `now_unix` is the wall clock at the response (seconds).
pub fn judge(
    asked: Asked<'_>,
    status: u16,
    fields: &[Field<'_>],
    rules: &Rules,
    sent_for: Duration,
    now_unix: u64,
) -> Result<Freshness, Skip> {
    if !asked.get {
        return Err("method");
    }
    let cc: Vec<&[u8]> = values(fields, "cache-control").collect();
    let d = ResponseDirectives::parse(&cc);
    if d.no_store || asked.directives.no_store {
        return Err("no-store");
    }
    if d.private {
        return Err("private");
    }
    if values(fields, "vary").any(|v| v.split(|b| *b == b',').any(|t| t.trim_ascii() == b"*")) {
        return Err("vary-star");
    }
    if asked.authorization
        && !(rules.shared_authenticated && (d.public || d.s_maxage.is_some() || d.must_revalidate))
    {
        return Err("authorization");
    }
    if !rules.store_set_cookie && first(fields, "set-cookie").is_some() {
        return Err("set-cookie");
    }
    let by_status = rules
        .status_ttl
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, t)| *t);
    if !CACHEABLE_BY_DEFAULT.contains(&status) && by_status.is_none() {
        return Err("status");
    }
    let date = first(fields, "date").and_then(super::httpdate::parse);
    let explicit = d
        .s_maxage
        .or(d.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            first(fields, "expires").map(|e| match (super::httpdate::parse(e), date) {
                (Some(exp), Some(date)) => Duration::from_secs(exp.saturating_sub(date)),
                (Some(exp), None) => Duration::from_secs(exp.saturating_sub(now_unix)),
                // An invalid Expires ("0", "-1") means already expired.
                (None, _) => Duration::ZERO,
            })
        });
    let lifetime = explicit
        .or(by_status)
        .or(rules.default_ttl)
        .ok_or("no-freshness")?;
    let validatable = first(fields, "etag").is_some() || first(fields, "last-modified").is_some();
    if (d.no_cache || lifetime.is_zero()) && !validatable {
        return Err("no-validator");
    }
    // A number too large for u64 is a very old response (RFC 9111 §1.2.2), not a young one.
    let age_value = first(fields, "age")
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.trim().is_empty() && v.trim().bytes().all(|b| b.is_ascii_digit()))
        .map(|v| v.trim().parse::<u64>().unwrap_or(MAX_DELTA))
        .unwrap_or(0)
        .min(MAX_DELTA);
    let apparent = date.map_or(0, |d| now_unix.saturating_sub(d));
    let corrected = Duration::from_secs(age_value).saturating_add(sent_for);
    let initial_age = corrected.max(Duration::from_secs(apparent));
    let stale_ok = !d.must_revalidate && !d.no_cache;
    let pick = |theirs: Option<u64>, ours: Option<Duration>| -> Duration {
        if !stale_ok {
            return Duration::ZERO;
        }
        let theirs = theirs.map(Duration::from_secs);
        let v = if rules.stale_override {
            ours.or(theirs)
        } else {
            theirs.or(ours)
        };
        v.unwrap_or(Duration::ZERO)
    };
    Ok(Freshness {
        lifetime,
        initial_age,
        while_revalidate: pick(d.stale_while_revalidate, rules.stale_while_revalidate),
        if_error: pick(d.stale_if_error, rules.stale_if_error),
        no_cache: d.no_cache,
        must_revalidate: d.must_revalidate,
        validatable,
    })
}

/// How a stored response may answer a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// Fresh: answer from the cache; `ttl` is what is left of its freshness.
    Fresh {
        /// Freshness left.
        ttl: Duration,
    },
    /// Not usable without going upstream (stale, `no-cache`, or the request asked for more
    /// freshness). `stale_for` is how long past its lifetime it is; it may still be served while
    /// a refresh runs (`while_revalidate`) or when the upstream fails (`if_error`).
    Stale {
        /// How long past its freshness lifetime.
        stale_for: Duration,
        /// May be served now while it is refreshed in the background.
        while_revalidate: bool,
        /// May be served if going upstream fails.
        if_error: bool,
    },
}

impl Freshness {
    /// Its age at `now`, stored at `stored_at`.
    pub fn age(&self, stored_at: Instant, now: Instant) -> Duration {
        self.initial_age
            .saturating_add(now.saturating_duration_since(stored_at))
    }

    /// How it may answer a request with `req`'s directives at `now`.
    pub fn usable(&self, stored_at: Instant, now: Instant, req: &RequestDirectives) -> Usable {
        let age = self.age(stored_at, now);
        let mut limit = self.lifetime;
        if let Some(m) = req.max_age {
            limit = limit.min(Duration::from_secs(m));
        }
        let need = req.min_fresh.map_or(Duration::ZERO, Duration::from_secs);
        let forced = self.no_cache || req.no_cache;
        if !forced && age.saturating_add(need) < limit {
            return Usable::Fresh {
                ttl: self.lifetime.saturating_sub(age),
            };
        }
        let stale_for = age.saturating_sub(self.lifetime);
        Usable::Stale {
            stale_for,
            while_revalidate: !forced
                && !self.while_revalidate.is_zero()
                && stale_for < self.while_revalidate,
            if_error: !self.if_error.is_zero() && stale_for < self.if_error,
        }
    }
}

/// Fields a cache never stores: hop-by-hop and framing ones, and `Age` (computed when served).
pub const NOT_STORED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "age",
];

/// Whether a field named `name` of a response whose `Connection` fields are `fields` is stored:
/// not one of [`NOT_STORED`], not one its `Connection` names.
pub fn storable_field(name: &str, fields: &[Field<'_>]) -> bool {
    if NOT_STORED.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return false;
    }
    !values(fields, "connection")
        .flat_map(|v| v.split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

/// The header fields of a stored response updated by a `304` (RFC 9111 §4.3.4): every field the
/// 304 carries replaces the stored fields of that name, except the framing ones (and what is
/// never stored: hop-by-hop fields, those its `Connection` names, `Age`).
pub fn merge_not_modified(stored: &[Field<'_>], fresh: &[Field<'_>]) -> Vec<(String, Vec<u8>)> {
    const KEEP: [&str; 1] = ["content-encoding"];
    let takes =
        |n: &str| !KEEP.iter().any(|k| k.eq_ignore_ascii_case(n)) && storable_field(n, fresh);
    let replaced = |n: &str| takes(n) && fresh.iter().any(|(f, _)| f.eq_ignore_ascii_case(n));
    let mut out: Vec<(String, Vec<u8>)> = stored
        .iter()
        .filter(|(n, _)| !replaced(n))
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    out.extend(
        fresh
            .iter()
            .filter(|(n, _)| takes(n))
            .map(|(n, v)| (n.to_string(), v.to_vec())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn get() -> Asked<'static> {
        static NONE: RequestDirectives = RequestDirectives {
            no_cache: false,
            no_store: false,
            max_age: None,
            min_fresh: None,
            only_if_cached: false,
        };
        Asked {
            get: true,
            authorization: false,
            directives: &NONE,
        }
    }

    fn judge_fields(status: u16, fields: &[Field<'_>], rules: &Rules) -> Result<Freshness, Skip> {
        judge(get(), status, fields, rules, Duration::ZERO, NOW)
    }

    #[test]
    fn freshness_comes_from_s_maxage_then_max_age_then_expires_then_the_route() {
        let r = Rules::default();
        let f = judge_fields(200, &[("cache-control", b"max-age=60, s-maxage=120")], &r).unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(120));
        let f = judge_fields(200, &[("Cache-Control", b"max-age=60")], &r).unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(60));
        let date = super::super::httpdate::format(NOW);
        let exp = super::super::httpdate::format(NOW + 300);
        let f = judge_fields(
            200,
            &[("date", date.as_bytes()), ("expires", exp.as_bytes())],
            &r,
        )
        .unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(300));
        assert_eq!(
            judge_fields(200, &[("expires", b"0"), ("etag", b"\"x\"")], &r)
                .unwrap()
                .lifetime,
            Duration::ZERO
        );
        assert_eq!(judge_fields(200, &[], &r), Err("no-freshness"));
        let d = Rules {
            default_ttl: Some(Duration::from_secs(5)),
            ..Rules::default()
        };
        assert_eq!(
            judge_fields(200, &[], &d).unwrap().lifetime,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn what_a_shared_cache_must_not_store() {
        let r = Rules {
            default_ttl: Some(Duration::from_secs(60)),
            ..Rules::default()
        };
        assert_eq!(
            judge_fields(200, &[("cache-control", b"no-store")], &r),
            Err("no-store")
        );
        assert_eq!(
            judge_fields(200, &[("cache-control", b"private, max-age=60")], &r),
            Err("private")
        );
        assert_eq!(
            judge_fields(200, &[("vary", b"accept, *")], &r),
            Err("vary-star")
        );
        assert_eq!(
            judge_fields(200, &[("set-cookie", b"a=b")], &r),
            Err("set-cookie")
        );
        assert_eq!(
            judge_fields(206, &[("cache-control", b"max-age=60")], &r),
            Err("status")
        );
        assert_eq!(
            judge_fields(500, &[("cache-control", b"max-age=60")], &r),
            Err("status")
        );
        assert_eq!(
            judge_fields(200, &[("cache-control", b"no-cache")], &r),
            Err("no-validator")
        );
        assert!(
            judge_fields(
                200,
                &[("cache-control", b"no-cache"), ("etag", b"\"1\"")],
                &r
            )
            .unwrap()
            .no_cache
        );
        let head = Asked {
            get: false,
            ..get()
        };
        assert_eq!(
            judge(head, 200, &[], &r, Duration::ZERO, NOW),
            Err("method")
        );
        let no_store = RequestDirectives {
            no_store: true,
            ..RequestDirectives::default()
        };
        let asked = Asked {
            directives: &no_store,
            ..get()
        };
        assert_eq!(
            judge(asked, 200, &[], &r, Duration::ZERO, NOW),
            Err("no-store")
        );
        let cookies = Rules {
            store_set_cookie: true,
            ..r.clone()
        };
        assert!(judge_fields(200, &[("set-cookie", b"a=b")], &cookies).is_ok());
    }

    #[test]
    fn authenticated_requests_are_shared_only_when_route_and_response_allow() {
        let auth = Asked {
            authorization: true,
            ..get()
        };
        let r = Rules::default();
        let public = [("cache-control", &b"public, max-age=60"[..])];
        assert_eq!(
            judge(auth, 200, &public, &r, Duration::ZERO, NOW),
            Err("authorization")
        );
        let shared = Rules {
            shared_authenticated: true,
            ..Rules::default()
        };
        assert!(judge(auth, 200, &public, &shared, Duration::ZERO, NOW).is_ok());
        let plain = [("cache-control", &b"max-age=60"[..])];
        assert_eq!(
            judge(auth, 200, &plain, &shared, Duration::ZERO, NOW),
            Err("authorization")
        );
        assert!(judge(
            auth,
            200,
            &[("cache-control", b"s-maxage=60")],
            &shared,
            Duration::ZERO,
            NOW
        )
        .is_ok());
    }

    #[test]
    fn status_ttls_cache_what_the_route_names() {
        let r = Rules {
            status_ttl: vec![
                (404, Duration::from_secs(10)),
                (503, Duration::from_secs(1)),
            ],
            ..Rules::default()
        };
        assert_eq!(
            judge_fields(404, &[], &r).unwrap().lifetime,
            Duration::from_secs(10)
        );
        assert_eq!(
            judge_fields(503, &[], &r).unwrap().lifetime,
            Duration::from_secs(1)
        );
        assert_eq!(
            judge_fields(404, &[("cache-control", b"max-age=2")], &r)
                .unwrap()
                .lifetime,
            Duration::from_secs(2),
            "the response's own freshness wins"
        );
    }

    #[test]
    fn age_counts_the_age_field_the_trip_and_the_clock_skew() {
        let r = Rules::default();
        let f = judge(
            get(),
            200,
            &[("cache-control", b"max-age=60"), ("age", b"10")],
            &r,
            Duration::from_secs(2),
            NOW,
        )
        .unwrap();
        assert_eq!(f.initial_age, Duration::from_secs(12));
        let old = super::super::httpdate::format(NOW - 30);
        let f = judge_fields(
            200,
            &[("cache-control", b"max-age=60"), ("date", old.as_bytes())],
            &r,
        )
        .unwrap();
        assert_eq!(f.initial_age, Duration::from_secs(30));
        let t0 = Instant::now();
        let req = RequestDirectives::default();
        assert_eq!(
            f.usable(t0, t0 + Duration::from_secs(29), &req),
            Usable::Fresh {
                ttl: Duration::from_secs(1)
            }
        );
        assert!(matches!(
            f.usable(t0, t0 + Duration::from_secs(31), &req),
            Usable::Stale { .. }
        ));
    }

    #[test]
    fn stale_serving_follows_the_response_then_the_route_and_never_must_revalidate() {
        let t0 = Instant::now();
        let req = RequestDirectives::default();
        let r = Rules {
            stale_while_revalidate: Some(Duration::from_secs(100)),
            stale_if_error: Some(Duration::from_secs(1000)),
            ..Rules::default()
        };
        let f = judge_fields(
            200,
            &[("cache-control", b"max-age=10, stale-while-revalidate=5")],
            &r,
        )
        .unwrap();
        assert_eq!(
            f.while_revalidate,
            Duration::from_secs(5),
            "the response's value wins"
        );
        assert_eq!(
            f.if_error,
            Duration::from_secs(1000),
            "the route's default fills the gap"
        );
        assert_eq!(
            f.usable(t0, t0 + Duration::from_secs(12), &req),
            Usable::Stale {
                stale_for: Duration::from_secs(2),
                while_revalidate: true,
                if_error: true
            }
        );
        assert_eq!(
            f.usable(t0, t0 + Duration::from_secs(20), &req),
            Usable::Stale {
                stale_for: Duration::from_secs(10),
                while_revalidate: false,
                if_error: true
            }
        );
        let over = Rules {
            stale_override: true,
            ..r.clone()
        };
        assert_eq!(
            judge_fields(
                200,
                &[("cache-control", b"max-age=10, stale-while-revalidate=5")],
                &over
            )
            .unwrap()
            .while_revalidate,
            Duration::from_secs(100)
        );
        let strict = judge_fields(
            200,
            &[(
                "cache-control",
                b"max-age=10, must-revalidate, stale-if-error=60",
            )],
            &r,
        )
        .unwrap();
        assert_eq!(
            (strict.while_revalidate, strict.if_error),
            (Duration::ZERO, Duration::ZERO)
        );
    }

    #[test]
    fn a_request_can_ask_for_more_freshness() {
        let t0 = Instant::now();
        let f = judge_fields(
            200,
            &[("cache-control", b"max-age=60"), ("etag", b"\"e\"")],
            &Rules::default(),
        )
        .unwrap();
        let at = t0 + Duration::from_secs(30);
        let no_cache = RequestDirectives {
            no_cache: true,
            ..RequestDirectives::default()
        };
        assert!(matches!(
            f.usable(t0, at, &no_cache),
            Usable::Stale {
                while_revalidate: false,
                ..
            }
        ));
        let max_age = RequestDirectives {
            max_age: Some(10),
            ..RequestDirectives::default()
        };
        assert!(matches!(f.usable(t0, at, &max_age), Usable::Stale { .. }));
        let min_fresh = RequestDirectives {
            min_fresh: Some(40),
            ..RequestDirectives::default()
        };
        assert!(matches!(f.usable(t0, at, &min_fresh), Usable::Stale { .. }));
    }

    proptest::proptest! {
        /// Whatever ages, lifetimes and request directives a client or an upstream sends, judging
        /// and using a response never panics (no arithmetic overflow).
        #[test]
        fn huge_values_never_overflow(
            max_age in proptest::prelude::any::<u64>(),
            age in proptest::prelude::any::<u64>(),
            min_fresh in proptest::prelude::any::<u64>(),
            req_max_age in proptest::prelude::any::<u64>(),
            later in 0u64..1_000_000,
        ) {
            let cc = format!("max-age={max_age}, stale-while-revalidate={age}, stale-if-error={max_age}");
            let a = age.to_string();
            let fields = [("cache-control", cc.as_bytes()), ("age", a.as_bytes()), ("etag", &b"\"x\""[..])];
            if let Ok(f) = judge_fields(200, &fields, &Rules::default()) {
                let req = RequestDirectives::parse(&[format!("min-fresh={min_fresh}, max-age={req_max_age}").as_bytes()], &[]);
                let t0 = Instant::now();
                let _ = f.usable(t0, t0 + Duration::from_secs(later), &req);
                let _ = f.age(t0, t0 + Duration::from_secs(later));
            }
        }
    }

    #[test]
    fn a_304_replaces_the_fields_it_carries_but_not_the_framing() {
        let stored = [
            ("content-length", &b"5"[..]),
            ("etag", b"\"1\""),
            ("x-a", b"old"),
            ("cache-control", b"max-age=1"),
        ];
        let fresh = [
            ("etag", &b"\"1\""[..]),
            ("cache-control", b"max-age=60"),
            ("content-length", b"0"),
        ];
        let m = merge_not_modified(&stored, &fresh);
        let get = |n: &str| {
            m.iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("content-length"), vec![b"5".to_vec()]);
        assert_eq!(get("cache-control"), vec![b"max-age=60".to_vec()]);
        assert_eq!(get("x-a"), vec![b"old".to_vec()]);
        for hop in ["connection", "x-hop", "age", "keep-alive"] {
            assert!(get(hop).is_empty(), "{hop} was stored");
        }
    }
}
