//! The response of a request that went upstream from a cached route: judged storable or not
//! when its head arrives (the `Cache-Status` field says which), its body kept as it streams to
//! the client (never held back: the client gets each piece as it comes), stored when it ended
//! cleanly. A body that outgrows the zone's `max_object_bytes` stops being kept and streams on
//! uncached. A `304` to a validation refreshes the stored response instead.

use super::state::{CacheReq, Filling, Ticket};
use crate::codec::{parse_response_head, BodyKind, ResponseHead, MAX_HEADERS};
use crate::engine::worker::Worker;
use crate::gateway::Gateway;
use crate::hygiene::push_header;
use ringgate_cache::freshness::{judge, merge_not_modified, storable_field, Asked, Freshness};
use ringgate_cache::status::{field, ttl_secs, Outcome};
use ringgate_cache::store::Object;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The response head `resp` arrived for the current request: on a cached route, decide whether
/// its response is stored (start keeping it) and add the `Cache-Status` line to `extra`.
pub(crate) fn on_head<G: Gateway>(
    st: &mut CacheReq,
    extra: &mut Vec<u8>,
    w: &Worker<G>,
    resp: &ResponseHead<'_, '_>,
) {
    let Some(t) = st.ticket.as_ref() else {
        if st.outcome == Some(Outcome::Bypass) {
            extra.extend_from_slice(field(Outcome::Bypass, None, "").as_bytes());
        }
        return;
    };
    if t.invalidate {
        if resp.status < 400 {
            let mut caches = w.caches.borrow_mut();
            caches
                .zone(&t.route.zone, w.settings.workers)
                .store
                .purge_key(&t.key);
        }
        return;
    }
    if t.validating && resp.status == 304 {
        // Served from the refreshed stored response (see `revalidated`).
        return;
    }
    let fields: Vec<(&str, &[u8])> = resp.headers.iter().map(|h| (h.name, h.value)).collect();
    let asked = Asked {
        get: t.get,
        authorization: t.authorization,
        directives: &t.directives,
    };
    let sent_for = t.sent.elapsed();
    let verdict = judge(
        asked,
        resp.status,
        &fields,
        &t.route.rules,
        sent_for,
        unix_now(),
    );
    let max = t.route.zone.max_object_bytes as usize;
    let verdict = verdict
        .and_then(|f| match resp.body {
            BodyKind::Length(n) if n as usize > max => Err("too-large"),
            BodyKind::UntilClose => Err("no-length"),
            _ => Ok(f),
        })
        .and_then(|f| filling(t, resp, &fields, f, max));
    match verdict {
        Ok(f) => {
            let ttl = ttl_secs(f.fresh.lifetime.saturating_sub(f.fresh.initial_age), true);
            st.filling = Some(Box::new(f));
            st.outcome = Some(Outcome::MissStored);
            extra.extend_from_slice(field(Outcome::MissStored, Some(ttl), "").as_bytes());
        }
        Err(why) => {
            st.outcome = Some(Outcome::MissNotStored);
            st.detail = why;
            extra.extend_from_slice(field(Outcome::MissNotStored, None, why).as_bytes());
            // Nothing will be stored: requests waiting for this fetch go on now.
            release(st);
        }
    }
}

/// Ends this request's fetch of its key (its waiters look again, and go upstream themselves
/// when nothing was stored).
fn release(st: &mut CacheReq) {
    if let Some(t) = st.ticket.as_mut() {
        t.fetch = None;
    }
}

/// What is kept of a storable response (its stored fields: not hop-by-hop ones, not those its
/// `Connection` names, not `Age`, not the surrogate keys, which are for the cache alone), or why
/// it is not stored after all (a `Vary`'d field the request sent on several lines).
fn filling(
    t: &Ticket,
    resp: &ResponseHead<'_, '_>,
    fields: &[(&str, &[u8])],
    fresh: Freshness,
    max: usize,
) -> Result<Filling, &'static str> {
    let mut text = Vec::with_capacity(512);
    for (n, v) in fields {
        if !storable_field(n, fields) || n.eq_ignore_ascii_case(&t.route.tags_header) {
            continue;
        }
        push_header(&mut text, n.as_bytes(), v);
    }
    let first = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| Box::<[u8]>::from(*v))
    };
    let vary: Vec<ringgate_cache::store::VaryField> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
        .flat_map(|(_, v)| v.split(|b| *b == b','))
        .map(|n| String::from_utf8_lossy(n.trim_ascii()).to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .map(|n| {
            let v = t.field(&n).map(Box::from);
            (n.into_boxed_str(), v)
        })
        .collect();
    let tags = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(&t.route.tags_header))
        .flat_map(|(_, v)| v.split(|b| *b == b' ' || *b == b',' || *b == b'\t'))
        .filter(|x| !x.is_empty())
        .map(|x| String::from_utf8_lossy(x).into_owned().into_boxed_str())
        .collect();
    if vary
        .iter()
        .any(|(_, v)| v.as_deref() == Some(super::state::REPEATED))
    {
        return Err("vary-repeated");
    }
    let expected = match resp.body {
        BodyKind::Length(n) => n as usize,
        _ => 0,
    };
    Ok(Filling {
        status: resp.status,
        fields: text,
        etag: first("etag"),
        last_modified: first("last-modified"),
        vary,
        tags,
        fresh,
        body: Vec::with_capacity(expected.min(max)),
        max,
        arrived: Instant::now(),
    })
}

/// A piece of the body on its way to the client: kept too, while it fits.
#[inline]
pub(crate) fn tee(st: &mut CacheReq, data: &[u8]) {
    if let Some(f) = st.filling.as_mut() {
        if f.body.len() + data.len() > f.max {
            st.filling = None;
            st.detail = "too-large";
            release(st);
        } else {
            f.body.extend_from_slice(data);
        }
    }
}

/// Whether the current response is being kept (the relay then passes the body's payload).
#[inline]
pub(crate) fn keeping(st: &CacheReq) -> bool {
    st.filling.is_some()
}

/// The body ended cleanly: store the response, then end the fetch (its waiters find it).
pub(crate) fn complete<G: Gateway>(st: &mut CacheReq, w: &Worker<G>) {
    let Some(f) = st.filling.take() else {
        return;
    };
    if let Some(t) = st.ticket.as_ref() {
        let obj = Object {
            status: f.status,
            fields: f.fields.into_boxed_slice(),
            body: f.body.into(),
            etag: f.etag,
            last_modified: f.last_modified,
            vary: f.vary.into_boxed_slice(),
            tags: f.tags.into_boxed_slice(),
            fresh: f.fresh,
            stored_at: f.arrived,
        };
        let mut caches = w.caches.borrow_mut();
        let zone = caches.zone(&t.route.zone, w.settings.workers);
        zone.store.insert(&t.key, obj);
    }
    // The fetch ends: waiters look again and find it.
    if let Some(t) = st.ticket.as_mut() {
        t.fetch = None;
    }
}

/// A `304` answered the validation of the stored response: it is refreshed with the 304's
/// fields (RFC 9111 §4.3.4), stored again when the refreshed response may be stored (it may not
/// any more: a `no-store` request, a 304 that says `private`), and returned to be served either
/// way (the client asked without validators of its own and must get the body). `head` is the
/// 304's head.
pub(crate) fn revalidated<G: Gateway>(
    st: &mut CacheReq,
    w: &Worker<G>,
    head: &[u8],
) -> Option<Rc<Object>> {
    let t = st.ticket.as_mut()?;
    let old = t.stale.clone()?;
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some(resp) = parse_response_head(head, &mut hs, false, head.len())
        .ok()
        .flatten()
    else {
        // (It parsed once already, as the response head.) Serve what is stored.
        t.fetch = None;
        return Some(old);
    };
    let fresh_fields: Vec<(&str, &[u8])> = resp.headers.iter().map(|h| (h.name, h.value)).collect();
    let stored = split_fields(&old.fields);
    let merged = merge_not_modified(&stored, &fresh_fields);
    let merged_ref: Vec<(&str, &[u8])> = merged
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let asked = Asked {
        get: true,
        authorization: t.authorization,
        directives: &t.directives,
    };
    let judged = judge(
        asked,
        old.status,
        &merged_ref,
        &t.route.rules,
        t.sent.elapsed(),
        unix_now(),
    );
    let fresh = judged.unwrap_or(old.fresh);
    let mut text = Vec::with_capacity(old.fields.len() + 64);
    for (n, v) in &merged {
        push_header(&mut text, n.as_bytes(), v);
    }
    let first = |name: &str| {
        merged
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| Box::<[u8]>::from(v.as_slice()))
    };
    let obj = Object {
        status: old.status,
        fields: text.into_boxed_slice(),
        body: old.body.clone(),
        etag: first("etag"),
        last_modified: first("last-modified"),
        vary: old.vary.clone(),
        tags: old.tags.clone(),
        fresh,
        stored_at: Instant::now(),
    };
    let served = if judged.is_ok() {
        let mut caches = w.caches.borrow_mut();
        let zone = caches.zone(&t.route.zone, w.settings.workers);
        zone.store.insert(&t.key, obj)
    } else {
        Some(Rc::new(obj))
    };
    t.fetch = None;
    st.outcome = Some(Outcome::Revalidated);
    served.or(Some(old))
}

/// Stored header lines back into `(name, value)` pairs.
pub(crate) fn split_fields(text: &[u8]) -> Vec<(&str, &[u8])> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name, line[colon + 1..].trim_ascii()))
        })
        .collect()
}
