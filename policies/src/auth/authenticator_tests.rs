//! The per-request adapter driven without I/O: real API keys and real signed JWTs, and in-memory
//! stand-ins for the key-set source and the introspection pool, so every wait and its end is
//! decided by the test, not by a clock or a thread.

use super::super::testkeys::keys;
use super::super::{
    generate_key, mint, AuthMode, CredentialKinds, IntrospectionReply, JwtPolicySpec, ScopeRule,
};
use super::*;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

fn now() -> u64 {
    unix_now()
}

fn route(kind: CredentialKind, scopes: ScopeRule) -> RouteAuth {
    RouteAuth {
        mode: AuthMode::Required,
        methods: CredentialKinds::EMPTY.with(kind),
        scopes,
        jwt_policy: (kind == CredentialKind::Jwt).then_some(0),
        keep_credential: false,
    }
}

fn parts<J, I>(routes: Vec<RouteAuth>) -> AuthParts<J, I> {
    AuthParts {
        keys: KeyStore::default(),
        jwks: None,
        jwks_source: None,
        fetch_timeout: Duration::from_secs(2),
        introspector: None,
        introspection_ttl: Duration::from_secs(30),
        negative_ttl: Duration::ZERO,
        policies: vec![JwtPolicy::new(JwtPolicySpec::default()).unwrap()],
        routes,
        headers: IdentityHeaderNames {
            client_id: "X-Client-Id".into(),
            user_id: "X-User-Id".into(),
            tenant_id: "X-Tenant-Id".into(),
            scopes: "X-Scopes".into(),
        },
        token_cache: 64,
        verifications: VerifyLimits::default(),
    }
}

fn jwks(kid: &str) -> Arc<Jwks> {
    let doc = json!({"keys": [keys().ed.jwk(kid)]});
    Arc::new(Jwks::parse(&serde_json::to_vec(&doc).unwrap()).unwrap())
}

fn jwt(kid: &str, sub: &str) -> String {
    let claims = json!({"sub": sub, "client_id": "web", "scope": "read", "exp": now() + 300});
    let k = &keys().ed;
    mint(k.private_pem.as_bytes(), k.alg, Some(kid), &claims).unwrap()
}

fn check<J: KeySetSource, I: IntrospectionPool>(
    a: &Authenticator<J, I>,
    st: &mut AuthState,
    rule: usize,
    header: (&str, &[u8]),
    waited: bool,
    out: &mut AuthOutput,
) -> AuthVerdict {
    let headers = [httparse::Header {
        name: header.0,
        value: header.1,
    }];
    a.check(st, rule, &headers, PEER, now(), waited, out)
}

fn reason(v: &AuthVerdict) -> (u16, &'static str) {
    match v {
        AuthVerdict::Refuse { status, reason, .. } => (*status, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A key set whose fetches the test performs by hand.
#[derive(Default)]
struct HandSource {
    set: Mutex<Option<Arc<Jwks>>>,
    epoch: AtomicU64,
    done: AtomicU64,
    asked: AtomicU64,
}

impl HandSource {
    /// A fetch that brings `set` and answers every pending refresh request.
    fn publish(&self, set: Arc<Jwks>) {
        *self.set.lock().unwrap() = Some(set);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

impl KeySetSource for HandSource {
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
    fn load(&self) -> (u64, Option<Arc<Jwks>>) {
        (self.epoch(), self.set.lock().unwrap().clone())
    }
    fn request_refresh(&self) -> u64 {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.done.load(Ordering::SeqCst)
    }
    fn refreshed_since(&self, ticket: u64) -> bool {
        self.done.load(Ordering::SeqCst) > ticket
    }
}

/// An introspection pool whose answers the test sends by hand.
#[derive(Default)]
struct HandPool {
    replies: Mutex<Vec<(Vec<u8>, IntrospectionReply)>>,
}

impl HandPool {
    fn answer(&self, result: Result<Identity, AuthFailure>) {
        let (token, reply) = self.replies.lock().unwrap().remove(0);
        reply.send((TokenDigest::of(&token), result)).unwrap();
    }
}

impl IntrospectionPool for HandPool {
    fn max_wait(&self) -> Duration {
        Duration::from_secs(4)
    }
    fn start(self: &Arc<Self>, token: &[u8], _peer: IpAddr, reply: IntrospectionReply) -> bool {
        self.replies.lock().unwrap().push((token.to_vec(), reply));
        true
    }
}

#[test]
fn an_api_key_passes_with_identity_headers_and_scopes_are_enforced() {
    let (secret, entry) = generate_key("app", Some("acme"), &["read"], Some("gold"), None).unwrap();
    let mut p = parts::<NoFetcher, NoFetcher>(vec![
        route(
            CredentialKind::ApiKey,
            ScopeRule::AnyOf(vec!["read".into()]),
        ),
        route(
            CredentialKind::ApiKey,
            ScopeRule::AllOf(vec!["admin".into()]),
        ),
    ]);
    p.keys = KeyStore::from_entries(vec![entry]).unwrap();
    let a = Authenticator::new(p);
    assert_eq!(
        a.identity_headers(),
        ["x-client-id", "x-user-id", "x-tenant-id", "x-scopes"].map(Box::<str>::from)
    );
    let mut st = a.state(1);
    let mut out = AuthOutput::default();
    let key = ("x-api-key", secret.as_bytes());
    assert_eq!(
        check(&a, &mut st, 0, key, false, &mut out),
        AuthVerdict::Pass
    );
    assert_eq!(
        out.headers,
        b"x-client-id: app\r\nx-tenant-id: acme\r\nx-scopes: read\r\n"
    );
    assert_eq!(
        (&out.identity[..], &out.tier[..]),
        (&b"app"[..], &b"gold"[..])
    );
    assert_eq!(out.key, Some(key_hash(b"app")));
    assert!(out.strip_credential);

    let mut out = AuthOutput::default();
    let v = check(&a, &mut st, 1, key, false, &mut out);
    assert_eq!(reason(&v), (403, "insufficient_scope"));
    assert!(out.headers.is_empty(), "no identity for a refused request");
    let v = check(&a, &mut st, 0, ("x-other", b"x"), false, &mut out);
    assert_eq!(reason(&v), (401, "missing"));
    assert!(matches!(
        v,
        AuthVerdict::Refuse {
            challenge: Some(_),
            ..
        }
    ));
    assert_eq!(
        check(&a, &mut st, 9, key, false, &mut out),
        AuthVerdict::Pass
    );
}

#[test]
fn full_signature_checks_are_charged_to_the_client_and_cache_hits_are_not() {
    let mut p = parts::<NoFetcher, NoFetcher>(vec![route(
        CredentialKind::Jwt,
        ScopeRule::AnyOf(Vec::new()),
    )]);
    p.jwks = Some(jwks("ed"));
    p.verifications = VerifyLimits {
        per_second: 1,
        burst: 1,
    };
    let a = Authenticator::new(p);
    let mut st = a.state(1);
    let mut out = AuthOutput::default();
    let (first, second) = (jwt("ed", "u1"), jwt("ed", "u2"));
    let bearer = |t: &str| format!("Bearer {t}");
    let (b1, b2) = (bearer(&first), bearer(&second));
    let h1 = ("authorization", b1.as_bytes());
    let h2 = ("authorization", b2.as_bytes());
    assert_eq!(
        check(&a, &mut st, 0, h1, false, &mut out),
        AuthVerdict::Pass
    );
    assert_eq!(out.subject, b"u1");
    let v = check(&a, &mut st, 0, h2, false, &mut AuthOutput::default());
    assert_eq!(reason(&v), (401, "verification_rate_limited"));
    let again = check(&a, &mut st, 0, h1, false, &mut AuthOutput::default());
    assert_eq!(again, AuthVerdict::Pass, "a verified token costs no check");
}

#[test]
fn a_key_set_not_yet_fetched_or_missing_a_kid_is_waited_for_once() {
    let src = Arc::new(HandSource::default());
    let mut p = parts::<HandSource, NoFetcher>(vec![route(
        CredentialKind::Jwt,
        ScopeRule::AnyOf(Vec::new()),
    )]);
    p.jwks_source = Some(src.clone());
    let a = Authenticator::new(p);
    let mut st = a.state(1);
    let mut out = AuthOutput::default();
    let b = format!("Bearer {}", jwt("ed", "u1"));
    let h = ("authorization", b.as_bytes());

    // No set yet: one refresh asked for, bounded by the fetch timeout.
    let v = check(&a, &mut st, 0, h, false, &mut out);
    let AuthVerdict::Wait { ticket, within } = v else {
        panic!("expected a wait, got {v:?}")
    };
    assert_eq!(within, Duration::from_secs(2));
    assert_eq!(ticket & INTROSPECTION_TICKET, 0);
    assert!(!a.poll(&mut st, ticket), "not refreshed yet");
    src.publish(jwks("ed"));
    assert!(a.poll(&mut st, ticket));
    assert_eq!(check(&a, &mut st, 0, h, true, &mut out), AuthVerdict::Pass);

    // A kid the set lacks: one refresh, then refused if still unknown.
    let b = format!("Bearer {}", jwt("rotated", "u2"));
    let h = ("authorization", b.as_bytes());
    let v = check(&a, &mut st, 0, h, false, &mut AuthOutput::default());
    let AuthVerdict::Wait { ticket, .. } = v else {
        panic!("expected a wait, got {v:?}")
    };
    assert_eq!(src.asked.load(Ordering::SeqCst), 2);
    src.publish(jwks("ed"));
    assert!(a.poll(&mut st, ticket));
    let v = check(&a, &mut st, 0, h, true, &mut AuthOutput::default());
    assert_eq!(reason(&v), (401, "unknown_kid"));
    assert_eq!(src.asked.load(Ordering::SeqCst), 2, "no second refresh");
}

#[test]
fn an_opaque_token_is_introspected_once_and_its_answer_cached() {
    let pool = Arc::new(HandPool::default());
    let mut p = parts::<NoFetcher, HandPool>(vec![route(
        CredentialKind::Introspection,
        ScopeRule::AnyOf(Vec::new()),
    )]);
    p.introspector = Some(pool.clone());
    p.negative_ttl = Duration::from_secs(60);
    let a = Authenticator::new(p);
    let mut st = a.state(1);
    let good = ("authorization", &b"Bearer opaque-good"[..]);
    let junk = ("authorization", &b"Bearer opaque-junk"[..]);

    let v = check(&a, &mut st, 0, good, false, &mut AuthOutput::default());
    let AuthVerdict::Wait { ticket, within } = v else {
        panic!("expected a wait, got {v:?}")
    };
    assert_eq!(within, Duration::from_secs(4) + Duration::from_millis(100));
    assert_ne!(ticket & INTROSPECTION_TICKET, 0);
    // A second request for the same token joins the call in flight.
    let v = check(&a, &mut st, 0, good, false, &mut AuthOutput::default());
    assert_eq!(v, AuthVerdict::Wait { ticket, within });
    assert_eq!(pool.replies.lock().unwrap().len(), 1);
    assert!(!a.poll(&mut st, ticket), "no answer yet");
    pool.answer(Ok(Identity {
        kind: CredentialKind::Introspection,
        client_id: None,
        subject: Some("svc".into()),
        tenant: None,
        scopes: Vec::new(),
        tier: None,
        expires_at: None,
    }));
    assert!(a.poll(&mut st, ticket));
    let mut out = AuthOutput::default();
    assert_eq!(
        check(&a, &mut st, 0, good, true, &mut out),
        AuthVerdict::Pass
    );
    assert_eq!(out.headers, b"x-user-id: svc\r\n");
    let cached = check(&a, &mut st, 0, good, false, &mut AuthOutput::default());
    assert_eq!(cached, AuthVerdict::Pass, "answered from this core's cache");

    let v = check(&a, &mut st, 0, junk, false, &mut AuthOutput::default());
    let AuthVerdict::Wait { ticket, .. } = v else {
        panic!("expected a wait, got {v:?}")
    };
    pool.answer(Err(AuthFailure::Inactive));
    assert!(a.poll(&mut st, ticket));
    for waited in [true, false] {
        let v = check(&a, &mut st, 0, junk, waited, &mut AuthOutput::default());
        assert_eq!(reason(&v), (401, "inactive"));
    }
    assert!(
        pool.replies.lock().unwrap().is_empty(),
        "junk asked about once"
    );
}
