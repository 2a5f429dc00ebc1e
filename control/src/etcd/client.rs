//! The unary calls to an etcd v3 cluster over its HTTP/JSON gateway: range (a key or a prefix),
//! put, delete, compact, authenticate; and opening a watch ([`super::watch`]).
//!
//! Members are tried in turn: a member that cannot be reached, times out or says it is
//! unavailable sends the call to the next one, and the one that answered is asked first next
//! time. With a user name, the client authenticates for a token (sent as `Authorization`) and
//! authenticates again once when the cluster says the token is no longer valid. etcd's 64-bit
//! numbers arrive as JSON strings; keys and values as base64.

use super::watch::WatchStream;
use crate::config::discovery::EtcdSettings;
use crate::httpc::{self, Target};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No member answered (each member's failure, in order).
    #[error("no etcd member answered: {0}")]
    Unreachable(String),
    /// A member answered with an error.
    #[error("etcd refused: {message} (code {code})")]
    Refused {
        /// The gRPC status code etcd gave.
        code: i64,
        /// Its message.
        message: String,
    },
    /// A member answered something that is not what the API says.
    #[error("unexpected answer from etcd: {0}")]
    Protocol(String),
    /// The settings cannot be used (a URL, a TLS file, the password file).
    #[error("etcd settings: {0}")]
    Settings(String),
}

/// gRPC `UNAVAILABLE`: the member cannot serve now (no leader, stopping); another may.
const UNAVAILABLE: i64 = 14;
/// gRPC `UNAUTHENTICATED`: the token expired or was revoked.
const UNAUTHENTICATED: i64 = 16;

/// One key and its value as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: i64,
}

/// What a range read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The cluster's revision the read saw.
    pub revision: i64,
    /// The keys, in key order.
    pub kvs: Vec<Kv>,
}

/// A blocking client of one etcd cluster. Not shared between threads: each source owns one.
pub struct Client {
    members: Vec<Target>,
    /// The member asked first (the last one that answered).
    current: usize,
    timeout: Duration,
    credentials: Option<(String, String)>,
    token: Option<String>,
}

/// An etcd 64-bit number: a JSON string (the gateway's encoding) or number; 0 when absent.
pub(crate) fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// Decodes a base64 field; absent is empty.
pub(crate) fn bytes(v: &Value) -> Result<Vec<u8>, EtcdError> {
    match v.as_str() {
        None => Ok(Vec::new()),
        Some(s) => B64
            .decode(s)
            .map_err(|e| EtcdError::Protocol(format!("bad base64: {e}"))),
    }
}

/// A key-value object of a range answer or a watch event.
pub(crate) fn kv(v: &Value) -> Result<Kv, EtcdError> {
    Ok(Kv {
        key: bytes(&v["key"])?,
        value: bytes(&v["value"])?,
        mod_revision: int(&v["mod_revision"]),
    })
}

fn refused(status: u16, body: &[u8]) -> EtcdError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["message"].as_str().or(v["error"].as_str()).map_or_else(
        || {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            format!("HTTP {status}: {}", text.trim())
        },
        str::to_string,
    );
    EtcdError::Refused {
        code: v["code"].as_i64().unwrap_or(-1),
        message,
    }
}

impl Client {
    /// A client of the cluster `s` describes (reads the password file and TLS files now).
    pub fn new(s: &EtcdSettings) -> Result<Self, EtcdError> {
        if s.endpoints.is_empty() {
            return Err(EtcdError::Settings("no member URL".into()));
        }
        let needs_tls = s.endpoints.iter().any(|e| e.starts_with("https://"));
        let tls = if needs_tls {
            let pair = s.cert.as_deref().zip(s.key.as_deref());
            Some(
                crate::tls::client_config_with_cert(s.ca.as_deref(), pair, b"http/1.1")
                    .map_err(EtcdError::Settings)?,
            )
        } else {
            None
        };
        let members = s
            .endpoints
            .iter()
            .map(|e| Target::with_tls(e.trim_end_matches('/'), tls.as_ref().map(Arc::clone)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(EtcdError::Settings)?;
        let credentials = match (&s.username, &s.password_file) {
            (Some(u), Some(f)) => {
                let p = std::fs::read_to_string(f)
                    .map_err(|e| EtcdError::Settings(format!("password_file {f}: {e}")))?;
                Some((u.clone(), p.trim_end_matches(['\r', '\n']).to_string()))
            }
            _ => None,
        };
        Ok(Self {
            members,
            current: 0,
            timeout: s.timeout,
            credentials,
            token: None,
        })
    }

    /// Takes note of a failure a caller met on a stream: an authentication failure drops the
    /// token, so the next call authenticates again (tokens do not survive an etcd restart).
    pub fn note(&mut self, e: &EtcdError) {
        if matches!(e, EtcdError::Refused { code, .. } if *code == UNAUTHENTICATED) {
            self.token = None;
        }
    }

    /// One request's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The member URLs, for messages.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self
            .members
            .iter()
            .map(|m| m.url.authority.as_str())
            .collect();
        names.join(",")
    }

    /// POSTs `body` to `path` on each member in turn until one answers; authenticates first
    /// (and once more on an expired token) when the cluster needs it.
    fn call(&mut self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let body = serde_json::to_vec(body).map_err(|e| EtcdError::Protocol(e.to_string()))?;
        let mut failures = Vec::new();
        let n = self.members.len();
        for i in 0..n {
            let idx = (self.current + i) % n;
            match self.call_member(idx, path, &body) {
                Ok(v) => {
                    self.current = idx;
                    return Ok(v);
                }
                Err(EtcdError::Unreachable(why)) => failures.push(why),
                Err(EtcdError::Refused { code, message }) if code == UNAVAILABLE => {
                    failures.push(format!("{}: {message}", self.members[idx].url.authority));
                }
                Err(e) => return Err(e),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    /// One member: the call, with a token when credentials are set.
    fn call_member(&mut self, idx: usize, path: &str, body: &[u8]) -> Result<Value, EtcdError> {
        let mut renewed = false;
        loop {
            if self.credentials.is_some() && self.token.is_none() {
                self.token = Some(self.authenticate(idx)?);
                renewed = true;
            }
            match self.post(idx, path, body, self.token.as_deref()) {
                Err(EtcdError::Refused { code, .. })
                    if code == UNAUTHENTICATED && self.credentials.is_some() && !renewed =>
                {
                    self.token = None;
                }
                r => return r,
            }
        }
    }

    fn authenticate(&self, idx: usize) -> Result<String, EtcdError> {
        let Some((name, password)) = &self.credentials else {
            return Err(EtcdError::Settings("no credentials".into()));
        };
        let body = json!({"name": name, "password": password}).to_string();
        let v = self.post(idx, "/v3/auth/authenticate", body.as_bytes(), None)?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| EtcdError::Protocol("authenticate answered no token".into()))
    }

    fn post(
        &self,
        idx: usize,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> Result<Value, EtcdError> {
        let m = &self.members[idx];
        let mut target = m.clone();
        target.url.path = path.to_string();
        let mut headers = vec![("content-type", "application/json")];
        if let Some(t) = token {
            headers.push(("authorization", t));
        }
        let (status, resp) = httpc::call(&target, "POST", &headers, body, self.timeout)
            .map_err(|e| EtcdError::Unreachable(format!("{}: {e}", m.url.authority)))?;
        if status != 200 {
            return Err(refused(status, &resp));
        }
        serde_json::from_slice(&resp).map_err(|e| EtcdError::Protocol(e.to_string()))
    }

    /// Every key starting with `prefix`, and the revision read.
    pub fn range_prefix(&mut self, prefix: &[u8]) -> Result<Range, EtcdError> {
        let end = super::prefix_end(prefix);
        self.range(json!({"key": B64.encode(prefix), "range_end": B64.encode(end)}))
    }

    /// One key (none when absent), and the revision read.
    pub fn get(&mut self, key: &[u8]) -> Result<(i64, Option<Kv>), EtcdError> {
        let r = self.range(json!({"key": B64.encode(key)}))?;
        Ok((r.revision, r.kvs.into_iter().next()))
    }

    fn range(&mut self, req: Value) -> Result<Range, EtcdError> {
        let v = self.call("/v3/kv/range", &req)?;
        let kvs = match v["kvs"].as_array() {
            Some(list) => list.iter().map(kv).collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        Ok(Range {
            revision: int(&v["header"]["revision"]),
            kvs,
        })
    }

    /// Sets `key` to `value`; returns the new revision.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<i64, EtcdError> {
        let v = self.call(
            "/v3/kv/put",
            &json!({"key": B64.encode(key), "value": B64.encode(value)}),
        )?;
        Ok(int(&v["header"]["revision"]))
    }

    /// Deletes `key`; returns the new revision.
    pub fn delete(&mut self, key: &[u8]) -> Result<i64, EtcdError> {
        let v = self.call("/v3/kv/deleterange", &json!({"key": B64.encode(key)}))?;
        Ok(int(&v["header"]["revision"]))
    }

    /// Opens a watch of `key` (of every key under it when `prefix`) from `start_revision` on
    /// the first member that accepts it.
    pub fn watch(
        &mut self,
        key: &[u8],
        prefix: bool,
        start_revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        let mut req = json!({"key": B64.encode(key), "start_revision": start_revision.to_string()});
        if prefix {
            req["range_end"] = Value::String(B64.encode(super::prefix_end(key)));
        }
        let body = json!({ "create_request": req }).to_string();
        let n = self.members.len();
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (self.current + i) % n;
            if self.credentials.is_some() && self.token.is_none() {
                match self.authenticate(idx) {
                    Ok(t) => self.token = Some(t),
                    Err(e) => {
                        failures.push(e.to_string());
                        continue;
                    }
                }
            }
            match WatchStream::open(
                &self.members[idx],
                self.token.as_deref(),
                body.as_bytes(),
                self.timeout,
            ) {
                Ok(s) => {
                    self.current = idx;
                    return Ok(s);
                }
                Err(EtcdError::Refused { code, .. }) if code == UNAUTHENTICATED => {
                    self.token = None;
                    failures.push("token expired".into());
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}
