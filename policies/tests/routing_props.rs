//! Property test: the compiled table agrees with the naive linear reference
//! (`routing_naive.rs`) on the winning route, its captures and the upstream path, over
//! random route sets and requests drawn from small alphabets so that routes overlap and
//! every precedence rule gets exercised.
#![allow(clippy::unwrap_used)]

#[path = "routing_naive.rs"]
mod naive;

use std::ops::Range;

use proptest::prelude::*;
use ringgate_policies::routing::{
    split_path_query, HeaderMatch, HostMatch, PathMatch, Rewrite, RouteRequest, RouteSpec,
    RouteTable,
};

const SEGMENTS: &[&str] = &["a", "b", "c", ""];

fn host_matcher() -> impl Strategy<Value = HostMatch> {
    prop_oneof![
        Just(HostMatch::Any),
        Just(HostMatch::Exact("a.com".into())),
        Just(HostMatch::Exact("B.a.com.".into())),
        Just(HostMatch::Exact("x.b.a.com".into())),
        Just(HostMatch::Wildcard("*.a.com".into())),
        Just(HostMatch::Wildcard("*.b.a.COM".into())),
        Just(HostMatch::Wildcard("*.com".into())),
    ]
}

fn literal_path(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SEGMENTS), 0..=max)
        .prop_map(|s| format!("/{}", s.join("/")))
}

/// A template segment: a literal, a param, or (when last) a catch-all.
#[derive(Debug, Clone)]
enum Seg {
    Lit(&'static str),
    Param,
    Rest,
}

/// A path matcher with a rewrite that fits it.
fn path_and_rewrite() -> impl Strategy<Value = (PathMatch, Rewrite)> {
    let exact = literal_path(3).prop_map(|p| (PathMatch::Exact(p), Rewrite::None));
    let prefix = (literal_path(3), any::<bool>(), 0..4u8).prop_map(|(p, slash, rw)| {
        let p = if slash && p != "/" {
            format!("{p}/")
        } else {
            p
        };
        let rewrite = match rw {
            0 => Rewrite::None,
            1 => Rewrite::StripPrefix,
            2 => Rewrite::ReplacePrefix("/r".into()),
            _ => Rewrite::ReplacePrefix("/r/".into()),
        };
        (PathMatch::Prefix(p), rewrite)
    });
    let seg =
        prop_oneof![3 => prop::sample::select(SEGMENTS).prop_map(Seg::Lit), 2 => Just(Seg::Param)];
    let template = (
        prop::collection::vec(seg, 0..=3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut segs, rest, rewrite)| {
            if rest || segs.is_empty() {
                segs.push(Seg::Rest);
            }
            let mut names = Vec::new();
            let parts: Vec<String> = segs
                .iter()
                .enumerate()
                .map(|(i, s)| match s {
                    Seg::Lit(l) => l.to_string(),
                    Seg::Param => {
                        names.push(format!("p{i}"));
                        format!("{{p{i}}}")
                    }
                    Seg::Rest => {
                        names.push(format!("r{i}"));
                        format!("{{*r{i}}}")
                    }
                })
                .collect();
            let rewrite = if rewrite {
                let fill: String = names.iter().rev().map(|n| format!("/{{{n}}}")).collect();
                Rewrite::Template(format!("/t{fill}"))
            } else {
                Rewrite::None
            };
            (
                PathMatch::Template(format!("/{}", parts.join("/"))),
                rewrite,
            )
        });
    prop_oneof![exact, prefix, template]
}

fn header_matcher() -> impl Strategy<Value = HeaderMatch> {
    prop_oneof![
        Just(HeaderMatch::Present("x-a".into())),
        Just(HeaderMatch::Exact("X-A".into(), "1".into())),
        Just(HeaderMatch::Prefix("x-a".into(), "1".into())),
        Just(HeaderMatch::Present("x-b".into())),
    ]
}

fn route_set() -> impl Strategy<Value = Vec<RouteSpec<usize>>> {
    let route = (
        prop::collection::vec(host_matcher(), 0..=2),
        path_and_rewrite(),
        prop::sample::subsequence(vec!["GET", "post"], 0..=2),
        prop::collection::vec(header_matcher(), 0..=1),
        prop_oneof![4 => Just(0), 1 => -1..=1i32],
    );
    prop::collection::vec(route, 1..=16).prop_map(|routes| {
        routes
            .into_iter()
            .enumerate()
            .map(
                |(i, (hosts, (path, rewrite), methods, headers, priority))| RouteSpec {
                    id: format!("r{i}"),
                    hosts,
                    path,
                    methods: methods.into_iter().map(String::from).collect(),
                    headers,
                    priority,
                    rewrite,
                    action: i,
                },
            )
            .collect()
    })
}

#[derive(Debug, Clone)]
struct Request {
    host: String,
    target: String,
    method: String,
    headers: Vec<(String, String)>,
}

fn request() -> impl Strategy<Value = Request> {
    let host = prop::sample::select(vec![
        "a.com",
        "A.COM:8080",
        "b.a.com.",
        "x.b.a.com",
        "y.X.b.a.com",
        "com",
        "c.com",
        "",
        "[::1]:80",
        ".a.com",
        "a.com..",
    ]);
    let path = prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "", "d"]), 0..=4)
        .prop_map(|s| format!("/{}", s.join("/")));
    let query = prop::option::of(prop::sample::select(vec!["q=1", "", "a/b"]));
    let method = prop::sample::select(vec!["GET", "POST", "PUT"]);
    let headers = prop::sample::subsequence(
        vec![("X-A", "1"), ("x-a", "12"), ("x-b", ""), ("x-a", "2")],
        0..=2,
    );
    (host, path, query, method, headers).prop_map(|(host, path, query, method, headers)| Request {
        host: host.into(),
        target: match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        },
        method: method.into(),
        headers: headers
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect(),
    })
}

/// Checks one request: same winner, captures and upstream path as the naive matcher.
fn agrees(
    table: &RouteTable<usize>,
    routes: &[RouteSpec<usize>],
    r: &Request,
) -> Result<(), TestCaseError> {
    let headers: Vec<httparse::Header<'_>> = r
        .headers
        .iter()
        .map(|(n, v)| httparse::Header {
            name: n,
            value: v.as_bytes(),
        })
        .collect();
    let req = RouteRequest {
        host: r.host.as_bytes(),
        path: r.target.as_bytes(),
        method: r.method.as_bytes(),
        headers: &headers,
    };
    let got = table.lookup(&req);
    let want = naive::naive_lookup(routes, req.host, req.path, req.method, &headers);
    prop_assert_eq!(
        got.map(|m| m.index()),
        want.as_ref().map(|w| w.index),
        "{:?}",
        r
    );
    let (Some(got), Some(want)) = (got, want) else {
        return Ok(());
    };
    let got_captures: Vec<(String, Range<usize>)> = got
        .captures()
        .map(|c| (c.name.to_string(), c.range))
        .collect();
    prop_assert_eq!(&got_captures, &want.captures, "{:?}", r);
    prop_assert_eq!(*table.action(&got), want.index);

    let (path, query) = split_path_query(r.target.as_bytes());
    let mut out = Vec::new();
    table.write_upstream_path(&got, path, query, &mut out);
    let (path, query) = match r.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (r.target.as_str(), None),
    };
    let expected = naive::naive_upstream(&routes[want.index], &want, path, query);
    prop_assert_eq!(String::from_utf8(out).unwrap(), expected, "{:?}", r);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn table_agrees_with_naive_linear_reference(
        routes in route_set(),
        requests in prop::collection::vec(request(), 1..=16),
    ) {
        let table = RouteTable::build(routes.clone()).unwrap();
        prop_assert_eq!(table.len(), routes.len());
        for r in &requests {
            agrees(&table, &routes, r)?;
        }
    }
}
