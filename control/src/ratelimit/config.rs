//! `[rate_limit]` and `[[rate_limits]]`: where limits are reconciled and what each limit is.
//!
//! ```toml
//! [rate_limit]
//! redis = "redis://127.0.0.1:6379"   # or redis_cluster = [...]; none: per node, in-process
//! tick = "20ms"                      # how often cores and the store are reconciled
//! trusted_proxies = ["10.0.0.0/8"]   # X-Forwarded-For is believed from these
//! global = ["per-ip"]                # limits every route applies
//!
//! [[rate_limits]]
//! name = "per-key"
//! key = "client_id"                  # global, route, client_id, user, tenant, client_ip, { header = "x-..." }
//! rate = 100                         # tokens per second
//! burst = 200
//! tiers = { gold = { rate = 1000, burst = 2000 } }
//! on_store_failure = "open"          # or "closed" (closed_status = 503 or 429)
//! stage = "after_auth"               # or "before_auth" (default for keys needing no identity)
//! ```
//! A sliding window instead: `algorithm = "sliding_window"`, `limit = 1000`, `window = "1m"`.
//! Routes name theirs with `rate_limits = [...]` and `rate_limit_headers = true`.

use ringgate_core::duration::{serde_text, serde_text_opt};
use ringgate_policies::ratelimit::clientip::{Cidr, TrustedProxies};
use ringgate_policies::ratelimit::local::MAX_QUOTA;
use ringgate_policies::ratelimit::spec::{
    FailMode, KeySource, LimitSet, LimitSpec, Missing, Stage, MAX_CHAIN,
};
use ringgate_policies::ratelimit::store::Algo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[rate_limit]`: the reconciler and what all limits share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// A Redis server shared by the nodes (`redis://host:port[/db]`); none: each node enforces
    /// the limits alone across its cores.
    #[serde(default)]
    pub redis: Option<String>,
    /// A Redis Cluster's seed nodes instead.
    #[serde(default)]
    pub redis_cluster: Vec<String>,
    /// The reconcile tick.
    #[serde(default = "default_tick", with = "serde_text")]
    pub tick: Duration,
    /// Longest wait for a Redis answer before the tick counts as failed.
    #[serde(default = "default_redis_timeout", with = "serde_text")]
    pub redis_timeout: Duration,
    /// Longest wait for a Redis connection.
    #[serde(default = "default_connect_timeout", with = "serde_text")]
    pub redis_connect_timeout: Duration,
    /// A node silent this long loses its leases.
    #[serde(default = "default_lease_ttl", with = "serde_text")]
    pub lease_ttl: Duration,
    /// This node's name in the store (default: host name and process id).
    #[serde(default)]
    pub node_id: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed (CIDR or address).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Limits applied to every route, before the route's own.
    #[serde(default)]
    pub global: Vec<String>,
}

fn default_tick() -> Duration {
    Duration::from_millis(20)
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_connect_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(1)
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            redis: None,
            redis_cluster: Vec::new(),
            tick: default_tick(),
            redis_timeout: default_redis_timeout(),
            redis_connect_timeout: default_connect_timeout(),
            lease_ttl: default_lease_ttl(),
            node_id: None,
            trusted_proxies: Vec::new(),
            global: Vec::new(),
        }
    }
}

/// What a limit keys on, as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum KeyConfig {
    /// `global`, `route`, `client_id` (or `api_key`), `user`, `tenant`, `client_ip`.
    Named(String),
    /// `{ header = "x-..." }`.
    Header {
        /// The header name.
        header: String,
    },
}

/// A tier's algorithm (the same fields as the limit's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AlgoConfig {
    /// Token bucket: tokens per second.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Token bucket: size (default: one second of `rate`, at least 1).
    #[serde(default)]
    pub burst: Option<f64>,
    /// Sliding window: requests per window.
    #[serde(default)]
    pub limit: Option<f64>,
    /// Sliding window: its length.
    #[serde(default, with = "serde_text_opt")]
    pub window: Option<Duration>,
}

/// `[[rate_limits]]`: one limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Its name (letters, digits, `-`, `_`, `.`), referred to by routes and `global`.
    pub name: String,
    /// What it counts by.
    pub key: KeyConfig,
    /// `token_bucket` (default) or `sliding_window`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Token bucket: tokens per second.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Token bucket: size.
    #[serde(default)]
    pub burst: Option<f64>,
    /// Sliding window: requests per window.
    #[serde(default)]
    pub limit: Option<f64>,
    /// Sliding window: its length.
    #[serde(default, with = "serde_text_opt")]
    pub window: Option<Duration>,
    /// Algorithms by the caller's rate-limit tier.
    #[serde(default)]
    pub tiers: BTreeMap<String, AlgoConfig>,
    /// `open` (default: keep admitting at this node's share) or `closed` (refuse).
    #[serde(default)]
    pub on_store_failure: Option<String>,
    /// The status a closed limit answers while the store is down (503 default, or 429).
    #[serde(default)]
    pub closed_status: Option<u16>,
    /// `skip` (default: the limit does not apply) or `shared` (one bucket for all).
    #[serde(default)]
    pub missing_key: Option<String>,
    /// Most keys one core tracks (default 100000).
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// `before_auth` or `after_auth`: when the limit judges a request (default: before
    /// authentication when the key needs no identity and the limit has no tiers).
    #[serde(default)]
    pub stage: Option<String>,
}

/// What only a restart may change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backend {
    /// `redis://` URL of a single server.
    pub redis: Option<String>,
    /// Cluster seeds.
    pub cluster: Vec<String>,
    /// Reconcile tick.
    pub tick: Duration,
    /// Redis answer timeout.
    pub redis_timeout: Duration,
    /// Redis connect timeout.
    pub connect_timeout: Duration,
    /// Lease lifetime without sync.
    pub lease_ttl: Duration,
    /// This node's name in the store.
    pub node_id: String,
}

impl Backend {
    /// The backend a config asks for.
    pub fn of(cfg: Option<&RateLimitConfig>) -> Self {
        let d = RateLimitConfig::default();
        let c = cfg.unwrap_or(&d);
        Self {
            redis: c.redis.clone(),
            cluster: c.redis_cluster.clone(),
            tick: c.tick,
            redis_timeout: c.redis_timeout,
            connect_timeout: c.redis_connect_timeout,
            lease_ttl: c.lease_ttl,
            node_id: c.node_id.clone().unwrap_or_else(default_node_id),
        }
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".to_owned());
    format!("{host}:{}", std::process::id())
}

fn algo_of(what: &str, kind: Option<&str>, a: &AlgoConfig, errs: &mut Vec<String>) -> Option<Algo> {
    let sliding = match kind {
        None | Some("token_bucket") => a.limit.is_some() && a.rate.is_none(),
        Some("sliding_window") => true,
        Some(other) => {
            errs.push(format!(
                "{what}.algorithm: {other:?} is neither token_bucket nor sliding_window"
            ));
            return None;
        }
    };
    if sliding {
        let (Some(limit), Some(window)) = (a.limit, a.window) else {
            errs.push(format!("{what}: a sliding window needs limit and window"));
            return None;
        };
        if !(1.0..=MAX_QUOTA).contains(&limit) || window.as_millis() < 1 {
            errs.push(format!(
                "{what}: limit must be at least 1 (at most 1e15) and window at least 1ms"
            ));
            return None;
        }
        return Some(Algo::SlidingWindow {
            limit,
            window_ms: window.as_millis() as u64,
        });
    }
    let Some(rate) = a.rate else {
        errs.push(format!("{what}: rate (tokens per second) is needed"));
        return None;
    };
    let burst = a.burst.unwrap_or(rate.ceil().max(1.0));
    if !(f64::MIN_POSITIVE..=MAX_QUOTA).contains(&rate) || !(1.0..=MAX_QUOTA).contains(&burst) {
        errs.push(format!(
            "{what}: rate must be above 0 and burst at least 1, both at most 1e15"
        ));
        return None;
    }
    Some(Algo::TokenBucket { rate, burst })
}

fn key_of(what: &str, k: &KeyConfig, errs: &mut Vec<String>) -> Option<KeySource> {
    Some(match k {
        KeyConfig::Header { header } => {
            if header.is_empty() || !header.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                errs.push(format!(
                    "{what}.key.header: {header:?} is not a header name"
                ));
                return None;
            }
            KeySource::Header(header.to_ascii_lowercase().into())
        }
        KeyConfig::Named(n) => match n.as_str() {
            "global" => KeySource::Global,
            "route" => KeySource::Route,
            "client_id" | "api_key" => KeySource::ClientId,
            "user" | "subject" => KeySource::Subject,
            "tenant" => KeySource::Tenant,
            "client_ip" | "ip" => KeySource::ClientIp,
            other => {
                errs.push(format!(
                    "{what}.key: {other:?} is not one of global, route, client_id, api_key, user, tenant, client_ip, {{ header = \"...\" }}"
                ));
                return None;
            }
        },
    })
}

/// When a limit judges requests: as configured, or by default before authentication whenever
/// its key needs no identity and it has no tiers (the tier comes from the identity).
fn stage_of(
    what: &str,
    text: Option<&str>,
    key: &KeySource,
    tiered: bool,
    errs: &mut Vec<String>,
) -> Option<Stage> {
    match text {
        None => Some(Stage::default_for(key, tiered)),
        Some("after_auth") => Some(Stage::AfterAuth),
        Some("before_auth") if key.needs_identity() || tiered => {
            errs.push(format!(
                "{what}.stage: before_auth needs a key and tiers that do not come from the identity (global, route, client_ip, header; no tiers)"
            ));
            None
        }
        Some("before_auth") => Some(Stage::BeforeAuth),
        Some(other) => {
            errs.push(format!(
                "{what}.stage: {other:?} is neither before_auth nor after_auth"
            ));
            None
        }
    }
}

/// Compiles the limits and each route's chain (`route_limits[i]`: the names route `i` asks
/// for, with its `rate_limit_headers`). Returns the set and each route's chain index.
/// `index_in_file(i)` is where `limits[i]` sits in the file's `[[rate_limits]]` (the paths of
/// problems name it).
pub fn compile(
    cfg: Option<&RateLimitConfig>,
    limits: &[LimitConfig],
    index_in_file: impl Fn(usize) -> usize,
    route_limits: &[(&[String], bool)],
    errs: &mut Vec<String>,
) -> (LimitSet, Vec<Option<u32>>) {
    let mut set = LimitSet::default();
    for (i, l) in limits.iter().enumerate() {
        let what = format!("rate_limits[{}]", index_in_file(i));
        if let Some(spec) = compile_limit(&what, l, &set.limits, errs) {
            set.limits.push(spec);
        }
    }
    set.trusted = settings_of(cfg, errs);
    let chains = chains_of(&mut set, cfg, route_limits, errs);
    (set, chains)
}

/// Compiles limit `l` (at `what` in the file), or reports why it cannot: a bad or repeated
/// name (`earlier` holds the limits compiled so far), or a bad algorithm, key, tier, failure
/// mode, missing-key rule or stage.
fn compile_limit(
    what: &str,
    l: &LimitConfig,
    earlier: &[LimitSpec],
    errs: &mut Vec<String>,
) -> Option<LimitSpec> {
    if l.name.is_empty()
        || !l
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        errs.push(format!(
            "{what}.name: {:?} must be letters, digits, '-', '_' or '.'",
            l.name
        ));
        return None;
    }
    if earlier.iter().any(|x| *x.name == *l.name) {
        errs.push(format!("{what}.name: {:?} is defined twice", l.name));
        return None;
    }
    let base = AlgoConfig {
        rate: l.rate,
        burst: l.burst,
        limit: l.limit,
        window: l.window,
    };
    let algo = algo_of(what, l.algorithm.as_deref(), &base, errs);
    let key = key_of(what, &l.key, errs);
    let mut tiers = Vec::new();
    for (name, t) in &l.tiers {
        if let Some(a) = algo_of(
            &format!("{what}.tiers.{name}"),
            l.algorithm.as_deref(),
            t,
            errs,
        ) {
            tiers.push((name.as_str().into(), a));
        }
    }
    let fail = fail_of(what, l, errs);
    let missing = missing_of(what, l, errs);
    let (algo, key) = (algo?, key?);
    let stage = stage_of(what, l.stage.as_deref(), &key, !tiers.is_empty(), errs)?;
    Some(LimitSpec {
        id: LimitSpec::id_of(&l.name),
        name: l.name.as_str().into(),
        key,
        algo,
        tiers,
        fail,
        missing,
        max_keys: l.max_keys.unwrap_or(100_000).max(1),
        stage,
    })
}

/// What limit `l` does when the store fails: `open` (the default) or `closed` with a 429 or
/// 503 status (503 by default).
fn fail_of(what: &str, l: &LimitConfig, errs: &mut Vec<String>) -> FailMode {
    match l.on_store_failure.as_deref() {
        None | Some("open") => FailMode::Open,
        Some("closed") => match l.closed_status.unwrap_or(503) {
            s @ (429 | 503) => FailMode::Closed { status: s },
            s => {
                errs.push(format!("{what}.closed_status: {s} is neither 429 nor 503"));
                FailMode::Open
            }
        },
        Some(other) => {
            errs.push(format!(
                "{what}.on_store_failure: {other:?} is neither open nor closed"
            ));
            FailMode::Open
        }
    }
}

/// What limit `l` does with a request that has no key: `skip` it (the default) or count it
/// under one `shared` key.
fn missing_of(what: &str, l: &LimitConfig, errs: &mut Vec<String>) -> Missing {
    match l.missing_key.as_deref() {
        None | Some("skip") => Missing::Skip,
        Some("shared") => Missing::Shared,
        Some(other) => {
            errs.push(format!(
                "{what}.missing_key: {other:?} is neither skip nor shared"
            ));
            Missing::Skip
        }
    }
}

/// Checks the `[rate_limit]` table (tick range, one kind of store) and returns its trusted
/// proxies (none without the table).
fn settings_of(cfg: Option<&RateLimitConfig>, errs: &mut Vec<String>) -> TrustedProxies {
    let mut nets = Vec::new();
    if let Some(c) = cfg {
        for (i, p) in c.trusted_proxies.iter().enumerate() {
            match p.parse::<Cidr>() {
                Ok(n) => nets.push(n),
                Err(e) => errs.push(format!("rate_limit.trusted_proxies[{i}]: {e}")),
            }
        }
        if c.tick < Duration::from_millis(2) || c.tick > Duration::from_secs(1) {
            errs.push("rate_limit.tick: must be between 2ms and 1s".to_owned());
        }
        if c.redis.is_some() && !c.redis_cluster.is_empty() {
            errs.push("rate_limit: give redis or redis_cluster, not both".to_owned());
        }
    }
    TrustedProxies::new(nets)
}

/// Adds each route's chain to `set`: the global limits, then the route's own
/// (`route_limits[i]`). Returns each route's chain index (`None`: no limits, or a problem).
fn chains_of(
    set: &mut LimitSet,
    cfg: Option<&RateLimitConfig>,
    route_limits: &[(&[String], bool)],
    errs: &mut Vec<String>,
) -> Vec<Option<u32>> {
    let global: Vec<String> = cfg.map(|c| c.global.clone()).unwrap_or_default();
    let mut chains = Vec::with_capacity(route_limits.len());
    for (i, (names, headers)) in route_limits.iter().enumerate() {
        let all: Vec<&str> = global
            .iter()
            .chain(names.iter())
            .map(String::as_str)
            .collect();
        if all.is_empty() {
            chains.push(None);
            continue;
        }
        if all.len() > MAX_CHAIN {
            errs.push(format!(
                "routes[{i}].rate_limits: at most {MAX_CHAIN} limits apply to one route"
            ));
            chains.push(None);
            continue;
        }
        match set.add_chain(&all, *headers) {
            Ok(c) => chains.push(Some(c as u32)),
            Err(name) => {
                errs.push(format!(
                    "routes[{i}].rate_limits: no rate limit is named {name:?}"
                ));
                chains.push(None);
            }
        }
    }
    chains
}
