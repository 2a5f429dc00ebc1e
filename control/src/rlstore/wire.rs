//! Cutting a sync into chunks (one cluster slot each) and reading the script's reply back
//! into results.

use super::script::REPLY_PER_KEY;
use super::{unavailable, MAX_CHUNK};
use redis::{ServerErrorKind, Value};
use ringgate_policies::ratelimit::store::{StoreError, SyncItem, SyncResult};

pub(super) fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}

/// The slot-deciding part of a key (Redis Cluster's rule): the text between the first `{` and
/// the first `}` after it when not empty, else the whole key.
pub(super) fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.find('}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// Splits `items` into runs of consecutive items with the same hash tag, at most [`MAX_CHUNK`]
/// long, as (start, end) ranges.
pub(super) fn chunk_ranges(items: &[SyncItem], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut start = 0;
    for i in 1..=items.len() {
        let cut = i == items.len()
            || i - start == MAX_CHUNK
            || hash_tag(&items[i].key) != hash_tag(&items[start].key);
        if cut {
            out.push((start, i));
            start = i;
        }
    }
}

/// Reads one chunk's reply into `out`.
pub(super) fn parse_reply(
    v: Value,
    expect: usize,
    out: &mut Vec<SyncResult>,
) -> Result<(), StoreError> {
    let vals = match v {
        Value::Array(vals) => vals,
        Value::ServerError(e) => return Err(unavailable(format_args!("script: {e}"))),
        other => {
            return Err(StoreError::Protocol(format!(
                "script answered {other:?}, not an array"
            )))
        }
    };
    if vals.len() != expect * REPLY_PER_KEY {
        return Err(StoreError::Protocol(format!(
            "script answered {} numbers for {expect} keys",
            vals.len()
        )));
    }
    let mut it = vals.iter();
    while let (Some(lease), Some(free), Some(nodes), Some(retry), Some(reset), Some(share)) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) {
        out.push(SyncResult {
            lease: as_i64(lease)?,
            free: as_i64(free)?,
            nodes: u32::try_from(as_i64(nodes)?.max(0)).unwrap_or(u32::MAX),
            retry_ms: as_u64(retry)?,
            reset_ms: as_u64(reset)?,
            share_ppm: u32::try_from(as_i64(share)?.clamp(0, 1_000_000)).unwrap_or(1_000_000),
        });
    }
    Ok(())
}

/// A reply number: an integer, or a float as text (cast as `LocalStore` casts).
fn reply_f64(v: &Value) -> Result<f64, StoreError> {
    let text = match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s.as_str()),
        Value::Double(d) => return Ok(*d),
        _ => None,
    };
    text.and_then(|t| t.trim().parse::<f64>().ok())
        .ok_or_else(|| StoreError::Protocol(format!("script answered {v:?}, not a number")))
}

fn as_i64(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Ok(reply_f64(other)? as i64),
    }
}

fn as_u64(v: &Value) -> Result<u64, StoreError> {
    match v {
        Value::Int(i) => Ok(u64::try_from(*i).unwrap_or(0)),
        other => Ok(reply_f64(other)? as u64),
    }
}
