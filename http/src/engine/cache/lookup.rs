//! The cache phase proper: for a request on a route with `cache`, the key, then fresh (answer),
//! stale within `stale-while-revalidate` (answer, refresh in the background), stale otherwise or
//! `no-cache` (validate: go upstream with the stored response's validators), or a miss (wait for
//! the fetch in progress, or go upstream to fetch). Requests the cache does not take (other
//! methods, bodies, `Range`, the route's bypass header) go upstream untouched; an unsafe method
//! carries a ticket that invalidates the key on success (this core's copy; RFC 9111 §4.4).

use super::pending::Pending;
use super::state::{CacheReq, Cached, RefreshJob, Ticket, REPEATED};
use crate::cache::{ClientNoCache, KeyQuery, RouteCache};
use crate::codec::{BodyKind, RequestHead};
use crate::engine::request::stop::Stop;
use crate::engine::worker::Worker;
use crate::error::Refusal;
use crate::gateway::{Gateway, RouteSettings};
use ringgate_cache::directives::RequestDirectives;
use ringgate_cache::freshness::Usable;
use ringgate_cache::status::{ttl_secs, Outcome};
use ringgate_cache::store::Object;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

fn header<'a>(req: &'a RequestHead<'_, '_>, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// A field's value for keys and `Vary`: sent on more than one line, it is [`REPEATED`], which no
/// stored response is ever stored under (such a request is not stored), so it never matches.
fn single<'a>(req: &'a RequestHead<'_, '_>, name: &str) -> Option<&'a [u8]> {
    let mut lines = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name));
    let first = lines.next()?;
    Some(if lines.next().is_some() {
        REPEATED
    } else {
        first.value
    })
}

/// Who is asking, as admission and the connection established it, and where the request goes.
pub(crate) struct Asker<'a> {
    /// Admission authenticated the request (a credential, a token, a client certificate) or it
    /// carries `Authorization`.
    pub(crate) authenticated: bool,
    /// The authenticated identity (client id, else subject), for `key_identity`.
    pub(crate) identity: &'a [u8],
    /// `http` or `https`, as the client connected.
    pub(crate) scheme: &'static str,
    /// The route's upstream speaks HTTP/2 (its responses are not cached yet).
    pub(crate) upstream_h2: bool,
}

/// The key of `req` on route `rc`: host, normalized path, query (as configured), then on lines of
/// their own the route, the scheme, the identity (with `key_identity`), and the configured header
/// fields and cookies. `GET` and `HEAD` share it. The host and path come validated and
/// normalized (no CR, LF or `?` can appear in them), so the first line is the URL alone and a
/// purge by key or prefix names it.
pub(crate) fn key_of(
    rc: &RouteCache,
    route: &RouteSettings,
    req: &RequestHead<'_, '_>,
    npath: &[u8],
    who: &Asker<'_>,
) -> Vec<u8> {
    let mut k = Vec::with_capacity(64 + npath.len());
    if let Some(h) = req.host {
        k.extend(h.iter().map(u8::to_ascii_lowercase));
    }
    k.extend_from_slice(npath);
    match (rc.key_query, req.query) {
        (KeyQuery::Ignored, _) | (_, None) => {}
        (KeyQuery::AsSent, Some(q)) => {
            k.push(b'?');
            k.extend_from_slice(q.as_bytes());
        }
        (KeyQuery::Sorted, Some(q)) => {
            let mut parts: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
            parts.sort_unstable();
            k.push(b'?');
            k.extend_from_slice(parts.join("&").as_bytes());
        }
    }
    k.extend_from_slice(b"\n#route=");
    k.extend_from_slice(route.id.as_bytes());
    k.extend_from_slice(b"\n#scheme=");
    k.extend_from_slice(who.scheme.as_bytes());
    if rc.key_identity {
        k.extend_from_slice(b"\n#identity=");
        k.extend_from_slice(who.identity);
    }
    for name in &rc.key_headers {
        k.push(b'\n');
        k.extend_from_slice(name.as_bytes());
        k.push(b'=');
        if let Some(v) = single(req, name) {
            k.extend_from_slice(v.trim_ascii());
        }
    }
    for name in &rc.key_cookies {
        k.extend_from_slice(b"\ncookie:");
        k.extend_from_slice(name.as_bytes());
        k.push(b'=');
        if let Some(v) = cookie(req, name) {
            k.extend_from_slice(v);
        }
    }
    k
}

fn cookie<'a>(req: &'a RequestHead<'_, '_>, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .flat_map(|h| h.value.split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// Runs the cache phase for `req` on `route`. `Ok`: go on to the upstream (with a ticket in
/// `st` when the cache is involved); `Err`: answered from the cache, or wait for a fetch.
pub(crate) fn lookup<'s, G: Gateway>(
    w: &Worker<G>,
    route: &'s RouteSettings,
    req: &RequestHead<'_, '_>,
    npath: &[u8],
    who: &Asker<'_>,
    st: &mut CacheReq,
) -> Result<(), Stop<'s>> {
    let Some(rc) = route.cache.as_ref() else {
        return Ok(());
    };
    let get = req.method == "GET";
    let head = req.method == "HEAD";
    let unsafe_method = !matches!(req.method, "GET" | "HEAD" | "OPTIONS" | "TRACE");
    if unsafe_method && !who.upstream_h2 {
        let key = key_of(rc, route, req, npath, who);
        let mut t = ticket(rc, req, key, RequestDirectives::default(), who, false);
        t.invalidate = true;
        st.ticket = Some(Box::new(t));
        return Ok(());
    }
    let bypassed = !(get || head)
        || who.upstream_h2
        || req.upgrade
        || req.body != BodyKind::Empty
        || header(req, "range").is_some()
        || rc
            .bypass_header
            .as_deref()
            .is_some_and(|b| header(req, b).is_some());
    if bypassed {
        st.outcome = Some(Outcome::Bypass);
        return Ok(());
    }
    let dirs = directives(rc, req);
    let key = key_of(rc, route, req, npath, who);
    let mut caches = w.caches.borrow_mut();
    let zone = caches.zone(&rc.zone, w.settings.workers);
    if st.refresh {
        // The refresh's fetch is held by its task (started by the request that found the stale
        // response).
        st.ticket = Some(Box::new(ticket(rc, req, key, dirs, who, true)));
        return Ok(());
    }
    let now = Instant::now();
    let stored = zone.store.get(&key, |n| single(req, n));
    let answer = |obj: Rc<Object>, outcome: Outcome, ttl: i64, detail: &'static str| {
        cached_answer(req, route, obj, (outcome, ttl, detail))
    };
    let wait = |p: Rc<Pending>| Stop::CacheWait(p, rc.lock_timeout);
    let stale = match stored {
        Some(obj) => match obj.fresh.usable(obj.stored_at, now, &dirs) {
            Usable::Fresh { ttl } => {
                let outcome = if st.waited {
                    Outcome::Collapsed
                } else {
                    Outcome::Hit
                };
                return Err(answer(obj, outcome, ttl_secs(ttl, true), ""));
            }
            Usable::Stale {
                stale_for,
                while_revalidate: true,
                ..
            } => {
                // One refresh per key per core; the connection loop starts it.
                let refresh = zone.pending.get(&key).is_none().then(|| RefreshJob {
                    head: super::replay::replay_head(req),
                    fetch: zone.pending.start(&key),
                });
                let ttl = ttl_secs(stale_for, false);
                let detail = "stale-while-revalidate";
                let mut a = answer(obj, Outcome::StaleWhileRevalidate, ttl, detail);
                if let Stop::Cached(c) = &mut a {
                    c.refresh = refresh;
                }
                return Err(a);
            }
            Usable::Stale { .. } => Some(obj),
        },
        None => None,
    };
    // only-if-cached: what cannot be answered without the upstream is a 504 (RFC 9111 §5.2.1.7).
    if dirs.only_if_cached {
        return Err(Stop::Refuse {
            r: Refusal::new(504, "cache_only_if_cached"),
            consumed: req.head_len,
            http10: req.minor_version == 0,
            route: Some(route),
            fallback: None,
        });
    }
    let in_progress = zone.pending.get(&key);
    if let Some(p) = in_progress.filter(|_| !st.waited && get) {
        return Err(wait(p));
    }
    // A HEAD miss goes upstream as a HEAD and stores nothing; a GET fetches for the core unless
    // a fetch is in progress (the request waited for it already and goes on its own).
    let fetch = (get && zone.pending.get(&key).is_none()).then(|| zone.pending.start(&key));
    let mut t = ticket(rc, req, key, dirs, who, get);
    t.stale = stale;
    t.fetch = fetch;
    st.ticket = Some(Box::new(t));
    Ok(())
}

/// The request's cache directives, as the route lets them count.
fn directives(rc: &RouteCache, req: &RequestHead<'_, '_>) -> RequestDirectives {
    let named = |name: &str| -> Vec<&[u8]> {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let mut dirs = RequestDirectives::parse(&named("cache-control"), &named("pragma"));
    if rc.client_no_cache == ClientNoCache::Ignore {
        dirs.no_cache = false;
        dirs.max_age = None;
        dirs.min_fresh = None;
    }
    dirs
}

/// The stop that answers `req` on `route` with `obj` (`how`: the outcome, the ttl shown, the
/// detail), 304 when the client's validators match it.
fn cached_answer<'s>(
    req: &RequestHead<'_, '_>,
    route: &'s RouteSettings,
    obj: Rc<Object>,
    (outcome, ttl, detail): (Outcome, i64, &'static str),
) -> Stop<'s> {
    // Conditions apply only to what would be a 2xx (RFC 9110 §13.2.1).
    let not_modified = req.method == "GET"
        && (200..300).contains(&obj.status)
        && ringgate_cache::conditional::not_modified(
            header(req, "if-none-match"),
            header(req, "if-modified-since"),
            obj.etag.as_deref(),
            obj.last_modified.as_deref(),
        );
    Stop::Cached(Box::new(Cached {
        refresh: None,
        obj,
        outcome,
        ttl,
        detail,
        not_modified,
        head_only: req.method == "HEAD",
        consumed: req.head_len,
        keep_alive: req.keep_alive,
        http10: req.minor_version == 0,
        route,
    }))
}

fn ticket(
    rc: &Arc<RouteCache>,
    req: &RequestHead<'_, '_>,
    key: Vec<u8>,
    directives: RequestDirectives,
    who: &Asker<'_>,
    get: bool,
) -> Ticket {
    let inm = header(req, "if-none-match");
    let ims = header(req, "if-modified-since");
    Ticket {
        route: rc.clone(),
        key: key.into(),
        stale: None,
        fetch: None,
        fields: req
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase().into(), h.value.into()))
            .collect(),
        directives,
        authorization: who.authenticated || header(req, "authorization").is_some(),
        get,
        invalidate: false,
        validating: false,
        if_none_match: inm.map(Into::into),
        if_modified_since: ims.map(Into::into),
        sent: Instant::now(),
    }
}

/// A `GET` that may fill the cache asks the upstream without the client's own validators (the
/// client is answered from the stored response, 304 when its validators match that; a 304 the
/// upstream sent for the client's validators could not refresh anything). When the request
/// validates a stored response, the upstream head in `wbuf` asks with that response's
/// validators instead, and only then is a 304 taken as a refresh.
pub(crate) fn add_validators(st: &mut CacheReq, wbuf: &mut Vec<u8>) {
    let Some(t) = st.ticket.as_mut().filter(|t| t.get && !t.invalidate) else {
        return;
    };
    if !wbuf.ends_with(b"\r\n\r\n") {
        return;
    }
    let ours = t.stale.as_ref().filter(|o| o.fresh.validatable);
    if ours.is_none() && t.if_none_match.is_none() && t.if_modified_since.is_none() {
        return;
    }
    let Some(first_line) = wbuf.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let mut out = Vec::with_capacity(wbuf.len() + 128);
    out.extend_from_slice(&wbuf[..first_line + 2]);
    let fields = &wbuf[first_line + 2..wbuf.len() - 2];
    for line in fields.split_inclusive(|b| *b == b'\n') {
        let lower: Vec<u8> = line.iter().take(20).map(u8::to_ascii_lowercase).collect();
        if lower.starts_with(b"if-none-match:") || lower.starts_with(b"if-modified-since:") {
            continue;
        }
        out.extend_from_slice(line);
    }
    if let Some(obj) = ours {
        if let Some(e) = &obj.etag {
            crate::hygiene::push_header(&mut out, b"if-none-match", e);
        }
        if let Some(lm) = &obj.last_modified {
            crate::hygiene::push_header(&mut out, b"if-modified-since", lm);
        }
        t.validating = true;
    }
    out.extend_from_slice(b"\r\n");
    wbuf.clear();
    wbuf.extend_from_slice(&out);
}
