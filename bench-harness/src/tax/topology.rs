//! The tax table's realistic topology, generated from a seed: many routes of every match kind
//! (host, prefix, template, method, header) to many upstreams of several replicas, and the
//! request mix that exercises them (mostly small JSON-sized requests, a slice of 1-10 MB uploads
//! and downloads and of streamed responses, a share of requests on new connections).
//!
//! One [`Topology`] renders both sides of a run: the ringgate config ([`gateway_toml`]) and the
//! ringbench scenario ([`scenario_toml`]). Both are plain text written in a fixed order, so the
//! same seed (and the same addresses) gives byte-identical files; the copies shipped under
//! `bench-harness/scenarios/` are checked against a fresh generation by the tests.
//!
//! Paths are forwarded unchanged (no rewrites), so the same scenario sent straight to a stub
//! upstream (the `direct` rung) asks for the same responses: the stubs answer any path with the
//! configured body, and `/chunked` and `/sse` with streams.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::rng::Rng;

/// The default seed of the shipped files.
pub const DEFAULT_SEED: u64 = 17;
/// The default number of upstreams.
pub const DEFAULT_UPSTREAMS: usize = 12;
/// The default replicas per upstream.
pub const DEFAULT_REPLICAS: usize = 3;
/// Response body of the stub upstreams on ordinary paths (a small JSON document's size).
pub const SMALL_BODY_BYTES: usize = 512;
/// Largest request body a route of the topology accepts (the biggest upload is 10 MiB).
const MAX_UPLOAD_BYTES: u64 = 16 << 20;
const MIB: usize = 1 << 20;

/// How a route matches the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// A prefix.
    Prefix(String),
    /// A template with `{name}` segments.
    Template(String),
}

/// One gateway route.
#[derive(Clone, Debug)]
pub struct Route {
    /// Route id.
    pub id: String,
    /// Host patterns (empty: any host).
    pub hosts: Vec<String>,
    /// Path match.
    pub path: PathMatch,
    /// Methods (empty: any).
    pub methods: Vec<&'static str>,
    /// Header matches: (name, exact value).
    pub headers: Vec<(String, String)>,
    /// Priority (higher wins).
    pub priority: i32,
    /// Index into [`Topology::upstreams`].
    pub upstream: usize,
    /// Request body limit, when above the gateway's default.
    pub max_body_bytes: Option<u64>,
}

/// One request kind of the scenario.
#[derive(Clone, Debug)]
pub struct RequestKind {
    /// Name (per-kind table).
    pub name: String,
    /// Relative weight.
    pub weight: f64,
    /// Method.
    pub method: &'static str,
    /// Host header.
    pub host: String,
    /// Path, with `${pool}` placeholders.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Request body size.
    pub body_bytes: usize,
    /// Latency group: `api` (small requests), `bulk` (1-10 MiB bodies) or `stream`.
    pub group: &'static str,
}

/// The generated topology.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The seed it came from.
    pub seed: u64,
    /// Upstream names.
    pub upstreams: Vec<String>,
    /// Replicas per upstream.
    pub replicas: usize,
    /// Gateway routes, in config order.
    pub routes: Vec<Route>,
    /// Scenario request kinds, in file order.
    pub requests: Vec<RequestKind>,
    /// Scenario pools: (name, values).
    pub pools: Vec<(String, Vec<String>)>,
}

fn between(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    // Two decimals, so the rendered weights are short and exact.
    ((lo + (hi - lo) * rng.next_f64()) * 100.0).round() / 100.0
}

fn route(id: String, path: PathMatch, upstream: usize) -> Route {
    Route {
        id,
        hosts: Vec::new(),
        path,
        methods: Vec::new(),
        headers: Vec::new(),
        priority: 0,
        upstream,
        max_body_bytes: None,
    }
}

fn kind(name: String, weight: f64, method: &'static str, host: &str, path: String) -> RequestKind {
    RequestKind {
        name,
        weight,
        method,
        host: host.to_string(),
        path,
        headers: Vec::new(),
        body_bytes: 0,
        group: "api",
    }
}

/// The API host of routes that match any host.
const API_HOST: &str = "api.tax.test";

/// Six routes per upstream, one per match kind, and the requests that reach them.
fn service_routes(t: &mut Topology, rng: &mut Rng, u: usize) {
    let svc = t.upstreams[u].clone();
    let host = format!("{svc}.tax.test");
    let tenant = format!("tenant-{}", rng.below(1000));
    let mut r = route(
        format!("{svc}-item"),
        PathMatch::Template(format!("/{svc}/items/{{id}}")),
        u,
    );
    r.methods = vec!["GET", "HEAD"];
    r.priority = 10;
    t.routes.push(r);
    let w = between(rng, 1.0, 3.0);
    t.requests.push(kind(
        format!("{svc} get item"),
        w,
        "GET",
        API_HOST,
        format!("/{svc}/items/${{ids}}"),
    ));
    // The same request on a new connection: the share of clients that do not keep alive.
    let mut k = kind(
        format!("{svc} get item, new connection"),
        between(rng, 0.05, 0.3),
        "GET",
        API_HOST,
        format!("/{svc}/items/${{ids}}"),
    );
    k.headers.push(("connection".into(), "close".into()));
    t.requests.push(k);

    let mut r = route(
        format!("{svc}-item-write"),
        PathMatch::Template(format!("/{svc}/items/{{id}}")),
        u,
    );
    r.methods = vec!["POST", "PUT"];
    r.priority = 10;
    t.routes.push(r);
    let mut k = kind(
        format!("{svc} write item"),
        between(rng, 0.2, 0.8),
        if rng.below(2) == 0 { "POST" } else { "PUT" },
        API_HOST,
        format!("/{svc}/items/${{ids}}"),
    );
    k.body_bytes = 128 + rng.below(1920) as usize;
    t.requests.push(k);

    let mut r = route(
        format!("{svc}-search"),
        PathMatch::Prefix(format!("/{svc}/search")),
        u,
    );
    r.priority = 10;
    t.routes.push(r);
    t.requests.push(kind(
        format!("{svc} search"),
        between(rng, 0.5, 1.5),
        "GET",
        API_HOST,
        format!("/{svc}/search?q=${{terms}}"),
    ));

    let mut r = route(format!("{svc}-vhost"), PathMatch::Prefix("/v1".into()), u);
    r.hosts = vec![host.clone()];
    r.priority = 10;
    t.routes.push(r);
    t.requests.push(kind(
        format!("{svc} vhost"),
        between(rng, 0.5, 1.5),
        "GET",
        &host,
        "/v1/orders/${ids}".into(),
    ));

    let mut r = route(
        format!("{svc}-tenant"),
        PathMatch::Prefix(format!("/{svc}")),
        u,
    );
    r.headers = vec![("x-tenant".into(), tenant.clone())];
    r.priority = 20;
    t.routes.push(r);
    let mut k = kind(
        format!("{svc} tenant"),
        between(rng, 0.3, 1.0),
        "GET",
        API_HOST,
        format!("/{svc}/profile"),
    );
    k.headers.push(("x-tenant".into(), tenant));
    t.requests.push(k);

    t.routes.push(route(
        format!("{svc}-rest"),
        PathMatch::Prefix(format!("/{svc}")),
        u,
    ));
    t.requests.push(kind(
        format!("{svc} other"),
        between(rng, 0.2, 0.6),
        "GET",
        API_HOST,
        format!("/{svc}/status"),
    ));
}

/// Large bodies and streams: uploads and downloads of 1-10 MiB, chunked and SSE responses.
fn bulk_routes(t: &mut Topology, rng: &mut Rng) {
    let n = t.upstreams.len() as u64;
    let files = rng.below(n) as usize;
    let streams = rng.below(n) as usize;
    let mut r = route("uploads".into(), PathMatch::Prefix("/upload".into()), files);
    r.methods = vec!["POST", "PUT"];
    r.max_body_bytes = Some(MAX_UPLOAD_BYTES);
    t.routes.push(r);
    let mut r = route(
        "downloads".into(),
        PathMatch::Prefix("/chunked".into()),
        files,
    );
    r.hosts = vec!["files.tax.test".into()];
    t.routes.push(r);
    t.routes.push(route(
        "streams".into(),
        PathMatch::Prefix("/sse".into()),
        streams,
    ));
    for mib in [1usize, 4, 10] {
        let mut k = kind(
            format!("upload {mib} MiB"),
            between(rng, 0.05, 0.3),
            "POST",
            API_HOST,
            format!("/upload/{mib}"),
        );
        k.body_bytes = mib * MIB;
        k.group = "bulk";
        t.requests.push(k);
        let mut k = kind(
            format!("download {mib} MiB"),
            between(rng, 0.05, 0.3),
            "GET",
            "files.tax.test",
            format!("/chunked?n={mib}&size={MIB}"),
        );
        k.group = "bulk";
        t.requests.push(k);
    }
    let mut k = kind(
        "chunked stream".into(),
        between(rng, 0.5, 1.5),
        "GET",
        "files.tax.test",
        format!("/chunked?n={}&size=256", 8 + rng.below(56)),
    );
    k.group = "stream";
    t.requests.push(k);
    let mut k = kind(
        "sse stream".into(),
        between(rng, 0.5, 1.5),
        "GET",
        API_HOST,
        format!("/sse?n={}", 4 + rng.below(28)),
    );
    k.group = "stream";
    t.requests.push(k);
    let mut r = route("health".into(), PathMatch::Exact("/healthz".into()), 0);
    r.methods = vec!["GET", "HEAD"];
    t.routes.push(r);
}

/// Generates the topology of `upstreams` upstreams of `replicas` replicas from `seed`.
pub fn generate(seed: u64, upstreams: usize, replicas: usize) -> Topology {
    let mut rng = Rng::new(seed);
    let mut t = Topology {
        seed,
        upstreams: (0..upstreams.max(1))
            .map(|i| format!("svc{i:02}"))
            .collect(),
        replicas: replicas.max(1),
        routes: Vec::new(),
        requests: Vec::new(),
        pools: Vec::new(),
    };
    for u in 0..t.upstreams.len() {
        service_routes(&mut t, &mut rng, u);
    }
    bulk_routes(&mut t, &mut rng);
    let ids = (0..32).map(|_| (1 + rng.below(1_000_000)).to_string());
    t.pools.push(("ids".into(), ids.collect()));
    let terms = (0..16).map(|_| format!("term{}", rng.below(10_000)));
    t.pools.push(("terms".into(), terms.collect()));
    t
}

/// TOML basic string: quoted, with `"` and `\` escaped (the generator emits no control bytes).
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list<T: AsRef<str>>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(|s| q(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

/// Addresses of the replicas of upstream `u`, from the flat list (replicas in order).
pub fn replicas_of(t: &Topology, endpoints: &[SocketAddr], u: usize) -> Vec<String> {
    endpoints
        .iter()
        .skip(u * t.replicas)
        .take(t.replicas)
        .map(ToString::to_string)
        .collect()
}

/// The ringgate config of `t`: one listener on `listen`, upstream `u`'s replicas at
/// `endpoints[u * replicas ..][.. replicas]` (`endpoints` holds `upstreams * replicas` addresses).
pub fn gateway_toml(t: &Topology, listen: SocketAddr, endpoints: &[SocketAddr]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# ringgate config of the tax-table topology, seed {}: {} routes to {} upstreams of {} replicas.\n\
         # Generated by `ringbench tax --emit DIR --seed {}`; regenerate rather than edit.\n",
        t.seed,
        t.routes.len(),
        t.upstreams.len(),
        t.replicas,
        t.seed
    );
    let _ = writeln!(o, "version = {}\n", q(&format!("tax-seed-{}", t.seed)));
    let _ = writeln!(
        o,
        "[[listeners]]\nname = \"public\"\naddress = {}\n",
        q(&listen.to_string())
    );
    for (u, name) in t.upstreams.iter().enumerate() {
        let _ = writeln!(
            o,
            "[[upstreams]]\nname = {}\nendpoints = {}\n",
            q(name),
            list(&replicas_of(t, endpoints, u))
        );
    }
    for r in &t.routes {
        let _ = writeln!(o, "[[routes]]\nid = {}", q(&r.id));
        if !r.hosts.is_empty() {
            let _ = writeln!(o, "hosts = {}", list(&r.hosts));
        }
        let path = match &r.path {
            PathMatch::Exact(p) => format!("{{ exact = {} }}", q(p)),
            PathMatch::Prefix(p) => format!("{{ prefix = {} }}", q(p)),
            PathMatch::Template(p) => format!("{{ template = {} }}", q(p)),
        };
        let _ = writeln!(o, "path = {path}");
        if !r.methods.is_empty() {
            let _ = writeln!(o, "methods = {}", list(&r.methods));
        }
        if !r.headers.is_empty() {
            let hs: Vec<String> = r
                .headers
                .iter()
                .map(|(n, v)| format!("{{ name = {}, exact = {} }}", q(n), q(v)))
                .collect();
            let _ = writeln!(o, "headers = [{}]", hs.join(", "));
        }
        if r.priority != 0 {
            let _ = writeln!(o, "priority = {}", r.priority);
        }
        if let Some(b) = r.max_body_bytes {
            let _ = writeln!(o, "max_body_bytes = {b}");
        }
        let _ = writeln!(o, "upstream = {}\n", q(&t.upstreams[r.upstream]));
    }
    o
}

/// The ringbench scenario of `t` (see [`crate::run::plan`] for the format).
pub fn scenario_toml(t: &Topology) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# ringbench scenario of the tax-table topology, seed {}: {} request kinds.\n\
         # Generated by `ringbench tax --emit DIR --seed {}`; regenerate rather than edit.\n",
        t.seed,
        t.requests.len(),
        t.seed
    );
    for k in &t.requests {
        let _ = writeln!(
            o,
            "[[requests]]\nname = {}\nweight = {}\nmethod = {}\nhost = {}\npath = {}\ngroup = {}",
            q(&k.name),
            k.weight,
            q(k.method),
            q(&k.host),
            q(&k.path),
            q(k.group)
        );
        if !k.headers.is_empty() {
            let hs: Vec<String> = k
                .headers
                .iter()
                .map(|(n, v)| format!("{} = {}", n, q(v)))
                .collect();
            let _ = writeln!(o, "headers = {{ {} }}", hs.join(", "));
        }
        if k.body_bytes > 0 {
            let _ = writeln!(o, "body_bytes = {}", k.body_bytes);
        }
        o.push('\n');
    }
    o.push_str("[pools]\n");
    for (name, values) in &t.pools {
        let _ = writeln!(o, "{name} = {}", list(values));
    }
    o
}

/// The addresses the shipped files use: `127.0.0.1:{base_port + i}`.
pub fn fixed_endpoints(t: &Topology, base_port: u16) -> Vec<SocketAddr> {
    (0..t.upstreams.len() * t.replicas)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], base_port.saturating_add(i as u16))))
        .collect()
}
