//! What to send: the target (from `--url`) and the request kinds, either the single request
//! that `--url` describes or a weighted mix from a scenario file. Each kind is compiled once into
//! byte templates; placeholders `${pool}` draw a value (an API key, a JWT: valid, expired, badly
//! signed) from a named pool per request, so auth and rate-limit mixes are real.
//!
//! Scenario file (TOML):
//! ```toml
//! [[requests]]
//! name = "read"            # shown in the per-kind table
//! weight = 9
//! method = "GET"
//! path = "/items/${ids}"
//! headers = { authorization = "Bearer ${jwt_valid}" }
//! [[requests]]
//! name = "write"
//! weight = 1
//! method = "POST"
//! path = "/items"
//! body_bytes = 512          # or body_file = "item.json"
//! host = "api.example"      # Host header of this kind (default: the URL's authority)
//! group = "api"             # latency reported per group too (e.g. api / bulk / stream)
//! [pools]
//! ids = ["1", "2", "3"]
//! jwt_valid = { file = "jwts.txt" }   # one value per line
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rng::Rng;

/// A target or scenario that cannot be used.
#[derive(Debug, Error)]
pub enum PlanError {
    /// Not `http[s]://host:port/path`.
    #[error("url {0:?}: expected http://HOST[:PORT][/PATH] or https://HOST[:PORT][/PATH]")]
    Url(String),
    /// The host did not resolve.
    #[error("url host {host:?} does not resolve: {source}")]
    Resolve {
        /// Host.
        host: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Unreadable scenario, pool or body file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a valid scenario file.
    #[error("scenario {path}: {source}")]
    Toml {
        /// File.
        path: String,
        /// Cause.
        source: Box<toml::de::Error>,
    },
    /// A scenario that parses but cannot run.
    #[error("scenario: {0}")]
    Invalid(String),
}

/// Where requests go.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path (and query) of the URL.
    pub path: String,
    /// `https://`: connections speak TLS (see [`super::tls`]).
    pub tls: bool,
    /// The host without port or IPv6 brackets: the default TLS server name.
    pub server_host: String,
}

impl Target {
    /// Parses and resolves `http://host[:port][/path]` or `https://host[:port][/path]` (port 80
    /// or 443 by default).
    pub fn parse(url: &str) -> Result<Self, PlanError> {
        let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, false, 80)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, true, 443)
        } else {
            return Err(PlanError::Url(url.to_string()));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(PlanError::Url(url.to_string()));
        }
        let host_only = match authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => authority,
        };
        let with_port = if host_only.len() < authority.len() {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|source| PlanError::Resolve {
                host: authority.to_string(),
                source,
            })?
            .next()
            .ok_or_else(|| PlanError::Url(url.to_string()))?;
        Ok(Self {
            url: url.to_string(),
            addr,
            host: authority.to_string(),
            path: path.to_string(),
            tls,
            server_host: host_only
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host_only)
                .to_string(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    requests: Vec<RequestSpec>,
    #[serde(default)]
    pools: BTreeMap<String, PoolSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    name: Option<String>,
    #[serde(default = "one")]
    weight: f64,
    #[serde(default = "get")]
    method: String,
    path: Option<String>,
    /// `Host` header of this kind (default: the URL's authority), for host-routed mixes.
    host: Option<String>,
    /// Latency group of this kind (reported on its own beside the whole mix).
    group: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body_bytes: usize,
    body_file: Option<PathBuf>,
}

fn one() -> f64 {
    1.0
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PoolSpec {
    Inline(Vec<String>),
    File { file: PathBuf },
}

#[derive(Clone, Debug)]
enum Part {
    Bytes(Vec<u8>),
    Pool(usize),
}

/// One compiled request kind.
#[derive(Clone, Debug)]
pub struct Kind {
    /// Name for reports.
    pub name: String,
    /// Relative weight.
    pub weight: f64,
    /// HEAD request (its response has no body).
    pub head_only: bool,
    /// Index of its latency group in [`Plan::groups`] (0 when the plan has none).
    pub group: u16,
    parts: Vec<Part>,
    /// A body of at least [`LARGE_BODY`] bytes, sent from here after the rendered head: never
    /// copied per request (a 10 MiB upload would cost a 10 MiB copy and stall the loop).
    pub large_body: Option<Arc<[u8]>>,
}

/// Bodies at least this long are kept apart from the rendered head ([`Kind::large_body`]).
pub const LARGE_BODY: usize = 64 * 1024;

/// The compiled request mix.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Kinds in file order.
    pub kinds: Vec<Kind>,
    /// Latency groups named by the scenario's kinds, in order of first use (empty: none named;
    /// kinds without a group then share one called `other`).
    pub groups: Vec<String>,
    cumulative: Vec<f64>,
    pools: Vec<Vec<Vec<u8>>>,
}

/// A request described on the command line.
#[derive(Clone, Debug, Default)]
pub struct SimpleRequest {
    /// Method.
    pub method: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes (a repeated pattern).
    pub body_bytes: usize,
}

fn compile_template(text: &str, pool_names: &[String]) -> Result<Vec<Part>, PlanError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        parts.push(Part::Bytes(rest.as_bytes()[..i].to_vec()));
        let end = rest[i..]
            .find('}')
            .ok_or_else(|| PlanError::Invalid(format!("unclosed ${{ in {text:?}")))?;
        let name = &rest[i + 2..i + end];
        let idx = pool_names.iter().position(|p| p == name).ok_or_else(|| {
            PlanError::Invalid(format!("no pool named {name:?} (used in {text:?})"))
        })?;
        parts.push(Part::Pool(idx));
        rest = &rest[i + end + 1..];
    }
    parts.push(Part::Bytes(rest.as_bytes().to_vec()));
    Ok(parts)
}

struct KindSource<'a> {
    name: String,
    weight: f64,
    method: &'a str,
    path: &'a str,
    host: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: Vec<u8>,
}

fn compile_kind(src: KindSource<'_>, pool_names: &[String]) -> Result<Kind, PlanError> {
    let method = src.method.to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(PlanError::Invalid(format!("bad method {:?}", src.method)));
    }
    if src.host.is_empty() || src.host.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(PlanError::Invalid(format!("bad host {:?}", src.host)));
    }
    let mut parts = vec![Part::Bytes(format!("{method} ").into_bytes())];
    parts.extend(compile_template(src.path, pool_names)?);
    parts.push(Part::Bytes(
        format!(" HTTP/1.1\r\nhost: {}\r\n", src.host).into_bytes(),
    ));
    for (name, value) in &src.headers {
        if name
            .bytes()
            .any(|b| b.is_ascii_control() || b == b':' || b == b' ')
        {
            return Err(PlanError::Invalid(format!("bad header name {name:?}")));
        }
        parts.push(Part::Bytes(format!("{name}: ").into_bytes()));
        parts.extend(compile_template(value, pool_names)?);
        parts.push(Part::Bytes(b"\r\n".to_vec()));
    }
    let mut tail = Vec::new();
    if !src.body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        tail.extend_from_slice(format!("content-length: {}\r\n", src.body.len()).as_bytes());
    }
    tail.extend_from_slice(b"\r\n");
    let large_body = if src.body.len() >= LARGE_BODY {
        Some(Arc::from(src.body))
    } else {
        tail.extend_from_slice(&src.body);
        None
    };
    parts.push(Part::Bytes(tail));
    // Merge adjacent byte parts so rendering is as few copies as possible.
    let mut merged: Vec<Part> = Vec::new();
    for p in parts {
        match (merged.last_mut(), p) {
            (Some(Part::Bytes(a)), Part::Bytes(b)) => a.extend_from_slice(&b),
            (_, p) => merged.push(p),
        }
    }
    if !(src.weight.is_finite() && src.weight > 0.0) {
        return Err(PlanError::Invalid(format!(
            "{}: weight must be positive",
            src.name
        )));
    }
    Ok(Kind {
        name: src.name,
        weight: src.weight,
        head_only: method == "HEAD",
        group: 0,
        parts: merged,
        large_body,
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, PlanError> {
    std::fs::read(path).map_err(|source| PlanError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn pattern_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

impl Plan {
    fn new(kinds: Vec<Kind>, pools: Vec<Vec<Vec<u8>>>) -> Self {
        let total: f64 = kinds.iter().map(|k| k.weight).sum();
        let mut acc = 0.0;
        let cumulative = kinds
            .iter()
            .map(|k| {
                acc += k.weight / total;
                acc
            })
            .collect();
        Self {
            kinds,
            groups: Vec::new(),
            cumulative,
            pools,
        }
    }

    /// Names each kind's latency group (`None`: `other`); no name at all leaves the plan without
    /// groups.
    fn with_groups(mut self, names: &[Option<String>]) -> Self {
        if names.iter().all(Option::is_none) {
            return self;
        }
        for (k, name) in self.kinds.iter_mut().zip(names) {
            let name = name.as_deref().unwrap_or("other");
            k.group = match self.groups.iter().position(|g| g == name) {
                Some(i) => i as u16,
                None => {
                    self.groups.push(name.to_string());
                    (self.groups.len() - 1) as u16
                }
            };
        }
        self
    }

    /// The one request `--url` (with `--method`, `--header`, `--body-bytes`) describes.
    pub fn single(target: &Target, req: &SimpleRequest) -> Result<Self, PlanError> {
        let method = if req.method.is_empty() {
            "GET"
        } else {
            &req.method
        };
        let kind = compile_kind(
            KindSource {
                name: format!("{method} {}", target.path),
                weight: 1.0,
                method,
                path: &target.path,
                host: &target.host,
                headers: req
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect(),
                body: pattern_body(req.body_bytes),
            },
            &[],
        )?;
        Ok(Self::new(vec![kind], Vec::new()))
    }

    /// Compiles a scenario file; paths without one default to the URL's path.
    pub fn from_scenario(path: &Path, target: &Target) -> Result<Self, PlanError> {
        let text = String::from_utf8_lossy(&read_file(path)?).into_owned();
        let file: ScenarioFile = toml::from_str(&text).map_err(|e| PlanError::Toml {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut names = Vec::new();
        let mut pools = Vec::new();
        for (name, spec) in &file.pools {
            let values: Vec<Vec<u8>> = match spec {
                PoolSpec::Inline(v) => v.iter().map(|s| s.as_bytes().to_vec()).collect(),
                PoolSpec::File { file } => String::from_utf8_lossy(&read_file(&base.join(file))?)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| l.as_bytes().to_vec())
                    .collect(),
            };
            if values.is_empty() {
                return Err(PlanError::Invalid(format!("pools.{name} is empty")));
            }
            names.push(name.clone());
            pools.push(values);
        }
        if file.requests.is_empty() {
            return Err(PlanError::Invalid("no [[requests]]".into()));
        }
        let mut kinds = Vec::new();
        for (i, r) in file.requests.iter().enumerate() {
            let body = match &r.body_file {
                Some(f) => read_file(&base.join(f))?,
                None => pattern_body(r.body_bytes),
            };
            let src = KindSource {
                name: r.name.clone().unwrap_or_else(|| format!("requests[{i}]")),
                weight: r.weight,
                method: &r.method,
                path: r.path.as_deref().unwrap_or(&target.path),
                host: r.host.as_deref().unwrap_or(&target.host),
                headers: r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect(),
                body,
            };
            kinds.push(compile_kind(src, &names).map_err(|e| match e {
                PlanError::Invalid(m) => PlanError::Invalid(format!("requests[{i}]: {m}")),
                other => other,
            })?);
        }
        let groups: Vec<Option<String>> = file.requests.iter().map(|r| r.group.clone()).collect();
        Ok(Self::new(kinds, pools).with_groups(&groups))
    }

    /// Picks a kind by weight.
    #[inline]
    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.kinds.len() == 1 {
            return 0;
        }
        let u = rng.next_f64();
        self.cumulative
            .iter()
            .position(|c| u < *c)
            .unwrap_or(self.kinds.len() - 1)
    }

    /// Renders kind `k` into `out` (cleared first), drawing pool values from `rng`; a large body
    /// ([`Kind::large_body`]) is not part of it and goes after it.
    #[inline]
    pub fn render(&self, k: usize, rng: &mut Rng, out: &mut Vec<u8>) {
        out.clear();
        for part in &self.kinds[k].parts {
            match part {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::Pool(p) => {
                    let pool = &self.pools[*p];
                    out.extend_from_slice(&pool[rng.below(pool.len() as u64) as usize]);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::parse("http://127.0.0.1:9000/base?x=1").unwrap()
    }

    #[test]
    fn urls_parse_with_and_without_port_and_path() {
        let t = target();
        assert_eq!(t.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(t.path, "/base?x=1");
        assert_eq!(t.host, "127.0.0.1:9000");
        assert_eq!(Target::parse("http://127.0.0.1").unwrap().addr.port(), 80);
        assert!(!t.tls);
        assert_eq!(t.server_host, "127.0.0.1");
        assert!(Target::parse("127.0.0.1:80").is_err());
    }

    #[test]
    fn https_urls_select_tls_and_default_to_port_443() {
        let t = Target::parse("https://127.0.0.1/x").unwrap();
        assert!(t.tls);
        assert_eq!(t.addr.port(), 443);
        assert_eq!(
            (t.host.as_str(), t.server_host.as_str()),
            ("127.0.0.1", "127.0.0.1")
        );
        let t = Target::parse("https://[::1]:8443").unwrap();
        assert!(t.tls);
        assert_eq!(t.addr, "[::1]:8443".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.server_host.as_str()),
            ("[::1]:8443", "::1")
        );
        assert_eq!(Target::parse("https://[::1]").unwrap().addr.port(), 443);
        assert!(Target::parse("ftp://127.0.0.1/").is_err());
    }

    #[test]
    fn a_large_body_is_kept_apart_from_the_rendered_head() {
        let req = SimpleRequest {
            method: "PUT".into(),
            headers: Vec::new(),
            body_bytes: LARGE_BODY,
        };
        let plan = Plan::single(&target(), &req).unwrap();
        let mut out = Vec::new();
        plan.render(0, &mut Rng::new(1), &mut out);
        let head = String::from_utf8(out).unwrap();
        assert!(head.ends_with(&format!("content-length: {LARGE_BODY}\r\n\r\n")));
        assert_eq!(
            plan.kinds[0].large_body.as_ref().map(|b| b.len()),
            Some(LARGE_BODY)
        );
        let small = Plan::single(
            &target(),
            &SimpleRequest {
                body_bytes: LARGE_BODY - 1,
                ..req
            },
        )
        .unwrap();
        assert!(small.kinds[0].large_body.is_none());
    }

    #[test]
    fn single_request_renders_head_and_body() {
        let req = SimpleRequest {
            method: "post".into(),
            headers: vec![("x-api-key".into(), "k".into())],
            body_bytes: 3,
        };
        let plan = Plan::single(&target(), &req).unwrap();
        let mut out = Vec::new();
        plan.render(0, &mut Rng::new(1), &mut out);
        assert_eq!(
            out,
            b"POST /base?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9000\r\nx-api-key: k\r\ncontent-length: 3\r\n\r\nabc".to_vec()
        );
    }

    #[test]
    fn scenario_mixes_kinds_by_weight_and_draws_from_pools() {
        let dir = std::env::temp_dir().join(format!("ringbench-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keys.txt"), "key-a\nkey-b\n").unwrap();
        let file = dir.join("s.toml");
        std::fs::write(
            &file,
            r#"
            [[requests]]
            name = "read"
            weight = 3
            path = "/r/${ids}"
            headers = { x-api-key = "${keys}" }
            [[requests]]
            name = "write"
            method = "PUT"
            body_bytes = 2
            host = "api.test"
            [pools]
            ids = ["1", "2"]
            keys = { file = "keys.txt" }
            "#,
        )
        .unwrap();
        let plan = Plan::from_scenario(&file, &target()).unwrap();
        let mut rng = Rng::new(5);
        let mut counts = [0usize; 2];
        let mut out = Vec::new();
        for _ in 0..4000 {
            let k = plan.pick(&mut rng);
            counts[k] += 1;
            plan.render(k, &mut rng, &mut out);
            let text = String::from_utf8(out.clone()).unwrap();
            if k == 0 {
                assert!(text.starts_with("GET /r/1 ") || text.starts_with("GET /r/2 "));
                assert!(
                    text.contains("x-api-key: key-a\r\n") || text.contains("x-api-key: key-b\r\n")
                );
            } else {
                assert!(text.starts_with("PUT /base?x=1 HTTP/1.1\r\nhost: api.test\r\n"));
                assert!(text.ends_with("content-length: 2\r\n\r\nab"));
            }
        }
        assert!((2800..3200).contains(&counts[0]), "{counts:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kinds_name_latency_groups_in_order_of_first_use() {
        let dir = std::env::temp_dir().join(format!("ringbench-groups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.toml");
        let kinds = |groups: [&str; 3]| {
            groups
                .iter()
                .map(|g| format!("[[requests]]\n{g}\n"))
                .collect::<String>()
        };
        std::fs::write(&file, kinds(["group = \"bulk\"", "", "group = \"api\""])).unwrap();
        let plan = Plan::from_scenario(&file, &target()).unwrap();
        assert_eq!(plan.groups, ["bulk", "other", "api"]);
        let of: Vec<u16> = plan.kinds.iter().map(|k| k.group).collect();
        assert_eq!(of, [0, 1, 2]);
        std::fs::write(&file, kinds(["", "", ""])).unwrap();
        assert!(Plan::from_scenario(&file, &target())
            .unwrap()
            .groups
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_pools_and_fields_are_reported() {
        let dir = std::env::temp_dir().join(format!("ringbench-plan-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.toml");
        std::fs::write(&file, "[[requests]]\npath = \"/${nope}\"\n").unwrap();
        let err = Plan::from_scenario(&file, &target())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no pool named \"nope\""), "{err}");
        std::fs::write(&file, "[[requests]]\npaht = \"/\"\n").unwrap();
        assert!(Plan::from_scenario(&file, &target()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
