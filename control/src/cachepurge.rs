//! `POST /cache/purge` on the admin API: remove cached responses on every core, by exact key, by
//! key prefix, by surrogate key (tag), or all of a zone.
//!
//! The body is JSON: `{"zone": "api", "key": "api.example.com/items/1?x=1"}`, or `"prefix":
//! "api.example.com/items/"`, or `"tag": "item-1"`, or `"all": true`; without `zone` every zone
//! is purged. A key is the cached request's host, normalized path and query as the route keys it
//! (then its key header and cookie lines). The answer says which zones the purge went to and its
//! generation in each; every core applies it before its next cache lookup in the zone, and
//! `ringgate_cache_purged_total` counts what it removed.

use ringgate_http::cache::purge::{log_for, zones, Purge};
use serde_json::json;

/// Handles a purge request's body: `(status, content type, body)`.
pub fn purge(body: &[u8]) -> (u16, &'static str, Vec<u8>) {
    let bad = |why: &str| {
        let b = json!({"error": "bad_request", "detail": why}).to_string();
        (400, "application/json", b.into_bytes())
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return bad("the body must be a JSON object");
    };
    let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    let what = match (text("key"), text("prefix"), text("tag"), v.get("all")) {
        (Some(k), None, None, None) => Purge::Key(k.as_bytes().into()),
        (None, Some(p), None, None) if !p.is_empty() => Purge::Prefix(p.as_bytes().into()),
        (None, None, Some(t), None) if !t.is_empty() => Purge::Tag(t.into()),
        (None, None, None, Some(serde_json::Value::Bool(true))) => Purge::All,
        _ => return bad("give exactly one of key, prefix, tag, or all = true"),
    };
    let known = zones();
    let targets: Vec<Box<str>> = match text("zone") {
        Some(z) if known.iter().any(|k| &**k == z) => vec![z.into()],
        Some(z) => {
            let b = json!({"error": "not_found", "detail": format!("no cache zone {z:?}")});
            return (404, "application/json", b.to_string().into_bytes());
        }
        None => known,
    };
    let applied: Vec<serde_json::Value> = targets
        .iter()
        .map(|z| json!({"zone": &**z, "generation": log_for(z).push(what.clone())}))
        .collect();
    let b = json!({"result": "ok", "purged": applied}).to_string();
    (200, "application/json", b.into_bytes())
}
