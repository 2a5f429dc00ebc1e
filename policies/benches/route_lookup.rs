//! Route lookup cost: the compiled table at 10, 1,000 and 10,000 routes, for requests that
//! hit and requests that miss, against the naive linear matcher (`tests/routing_naive.rs`)
//! at 1,000; plus the build time of a 10,000-route table.
//!
//! Routes mix hosts (exact `svcN.example.com`, wildcard `*.tenantN.example.com`, none) and
//! paths (exact, prefix, two-capture template) under `/api/vN/svcI`; each iteration looks up
//! the next of 512 prepared requests (host with port and mixed case, five headers), so
//! the figures include host normalisation and are not one cached path.
//!
//! Run:
//! `cargo bench -p ringgate-policies --bench route_lookup -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used)]

#[path = "../tests/routing_naive.rs"]
mod naive;

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion};
use ringgate_policies::routing::{HostMatch, PathMatch, RouteRequest, RouteSpec, RouteTable};

/// An owned request, borrowed as a `RouteRequest` per lookup.
struct Request {
    host: String,
    path: String,
}

const HEADERS: &[(&str, &str)] = &[
    ("user-agent", "bench/1.0"),
    ("accept", "*/*"),
    ("accept-encoding", "gzip"),
    ("x-request-id", "0123456789abcdef"),
    ("content-length", "0"),
];

fn exact_host(i: usize, n: usize) -> String {
    format!("svc{}.example.com", i % (n / 20).max(1))
}

fn tenant(i: usize, n: usize) -> usize {
    i % (n / 40).max(1)
}

/// `n` routes; route `i` picks its host kind from `i % 4` and its path kind from `(i / 4) % 3`.
fn routes(n: usize) -> Vec<RouteSpec<usize>> {
    (0..n)
        .map(|i| {
            let base = format!("/api/v{}/svc{i}", i % 3);
            let path = match (i / 4) % 3 {
                0 => PathMatch::Exact(format!("{base}/status")),
                1 => PathMatch::Prefix(base),
                _ => PathMatch::Template(format!("{base}/users/{{id}}/orders/{{order}}")),
            };
            let spec = RouteSpec::new(format!("route-{i}"), path, i);
            match i % 4 {
                0 | 1 => spec.host(HostMatch::Exact(exact_host(i, n))),
                2 => spec.host(HostMatch::Wildcard(format!(
                    "*.tenant{}.example.com",
                    tenant(i, n)
                ))),
                _ => spec,
            }
        })
        .collect()
}

/// 512 requests, each hitting a different route (spread over the table).
fn hits(n: usize) -> Vec<Request> {
    (0..512)
        .map(|k| {
            let i = k * n / 512 % n;
            let host = match i % 4 {
                0 | 1 => format!("{}:443", exact_host(i, n).to_uppercase()),
                2 => format!("App.tenant{}.example.com", tenant(i, n)),
                _ => "www.example.org".to_string(),
            };
            let base = format!("/api/v{}/svc{i}", i % 3);
            let path = match (i / 4) % 3 {
                0 => format!("{base}/status"),
                1 => format!("{base}/deep/resource"),
                _ => format!("{base}/users/42/orders/7"),
            };
            Request { host, path }
        })
        .collect()
}

/// The same hosts as `hits`, with paths no route has.
fn misses(n: usize) -> Vec<Request> {
    hits(n)
        .into_iter()
        .map(|r| Request {
            host: r.host,
            path: format!("/nothing{}/here", r.path.len()),
        })
        .collect()
}

fn headers() -> Vec<httparse::Header<'static>> {
    HEADERS
        .iter()
        .map(|&(name, value)| httparse::Header {
            name,
            value: value.as_bytes(),
        })
        .collect()
}

fn route_request<'a>(r: &'a Request, headers: &'a [httparse::Header<'a>]) -> RouteRequest<'a> {
    RouteRequest {
        host: r.host.as_bytes(),
        path: r.path.as_bytes(),
        method: b"GET",
        headers,
    }
}

fn bench_table(c: &mut Criterion) {
    let headers = headers();
    let mut group = c.benchmark_group("route_lookup");
    for n in [10, 1_000, 10_000] {
        let table = RouteTable::build(routes(n)).unwrap();
        for (kind, requests, expect_hit) in [("hit", hits(n), true), ("miss", misses(n), false)] {
            let requests: Vec<RouteRequest<'_>> =
                requests_checked(&table, &requests, &headers, expect_hit);
            let mut next = 0;
            group.bench_with_input(
                BenchmarkId::new(format!("table_{kind}"), n),
                &requests,
                |b, requests| {
                    b.iter(|| {
                        next = (next + 1) % requests.len();
                        black_box(table.lookup(black_box(&requests[next])).map(|m| m.index()))
                    })
                },
            );
        }
    }

    let n = 1_000;
    let specs = routes(n);
    for (kind, requests) in [("hit", hits(n)), ("miss", misses(n))] {
        let mut next = 0;
        group.bench_with_input(
            BenchmarkId::new(format!("naive_{kind}"), n),
            &requests,
            |b, requests| {
                b.iter(|| {
                    next = (next + 1) % requests.len();
                    let r = &requests[next];
                    black_box(naive::naive_lookup(
                        &specs,
                        r.host.as_bytes(),
                        r.path.as_bytes(),
                        b"GET",
                        &headers,
                    ))
                })
            },
        );
    }
    group.finish();

    let mut build = c.benchmark_group("route_table_build");
    build.sample_size(10);
    build.bench_function(BenchmarkId::from_parameter(10_000), |b| {
        b.iter_batched(
            || routes(10_000),
            |r| RouteTable::build(r).unwrap(),
            BatchSize::LargeInput,
        )
    });
    build.finish();
}

/// Borrows the requests and checks, once, that they hit (or miss) as the benchmark claims,
/// and that the table and the naive matcher agree on them.
fn requests_checked<'a>(
    table: &RouteTable<usize>,
    requests: &'a [Request],
    headers: &'a [httparse::Header<'a>],
    expect_hit: bool,
) -> Vec<RouteRequest<'a>> {
    let requests: Vec<RouteRequest<'a>> =
        requests.iter().map(|r| route_request(r, headers)).collect();
    for r in &requests {
        let found = table.lookup(r);
        assert_eq!(
            found.is_some(),
            expect_hit,
            "{:?}",
            String::from_utf8_lossy(r.path)
        );
    }
    requests
}

// What `criterion_group!`/`criterion_main!` expand to, minus the undocumented `pub fn`
// that `missing_docs` rejects.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_table(&mut c);
    c.final_summary();
}
