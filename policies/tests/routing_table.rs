//! Behaviour of the compiled route table through its public API: matching, precedence,
//! captures, rewrites and build errors. Each test builds a small table and asks it
//! questions; the helpers keep each case to a few lines.
#![allow(clippy::unwrap_used)]

use ringgate_policies::routing::{
    split_path_query, HeaderMatch, HostMatch, PathMatch, Rewrite, RouteError, RouteRequest,
    RouteSpec, RouteTable, TemplateError, MAX_CAPTURES,
};

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}
fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}
fn template(p: &str) -> PathMatch {
    PathMatch::Template(p.into())
}
fn host(h: &str) -> HostMatch {
    HostMatch::Exact(h.into())
}
fn wild(h: &str) -> HostMatch {
    HostMatch::Wildcard(h.into())
}

/// A route whose action is its own id, so assertions can name the winner.
fn route(id: &str, path: PathMatch) -> RouteSpec<String> {
    RouteSpec::new(id, path, id.to_string())
}

fn table(routes: Vec<RouteSpec<String>>) -> RouteTable<String> {
    RouteTable::build(routes).unwrap()
}

/// A request; `target` may carry a query.
struct Req<'a> {
    host: &'a str,
    target: &'a str,
    method: &'a str,
    headers: Vec<httparse::Header<'a>>,
}

fn req<'a>(host: &'a str, target: &'a str) -> Req<'a> {
    Req {
        host,
        target,
        method: "GET",
        headers: Vec::new(),
    }
}

impl<'a> Req<'a> {
    fn method(mut self, method: &'a str) -> Self {
        self.method = method;
        self
    }
    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push(httparse::Header {
            name,
            value: value.as_bytes(),
        });
        self
    }
    fn as_route_request(&self) -> RouteRequest<'_> {
        RouteRequest {
            host: self.host.as_bytes(),
            path: self.target.as_bytes(),
            method: self.method.as_bytes(),
            headers: &self.headers,
        }
    }
}

/// The id of the winning route, or `None`; also checks `action` and `route_id` agree.
fn winner(t: &RouteTable<String>, r: Req<'_>) -> Option<String> {
    let m = t.lookup(&r.as_route_request())?;
    assert_eq!(t.action(&m), t.route_id(&m));
    assert_eq!(m.route_id(), t.route_id(&m));
    Some(t.route_id(&m).to_string())
}

fn wins(t: &RouteTable<String>, r: Req<'_>, id: &str) {
    let target = r.target;
    assert_eq!(winner(t, r).as_deref(), Some(id), "for {target}");
}

fn misses(t: &RouteTable<String>, r: Req<'_>) {
    let target = r.target;
    assert_eq!(winner(t, r), None, "for {target}");
}

/// The upstream path for a request target.
fn upstream(t: &RouteTable<String>, host: &str, target: &str) -> String {
    let r = req(host, target);
    let m = t.lookup(&r.as_route_request()).unwrap();
    let (path, query) = split_path_query(target.as_bytes());
    let mut out = Vec::new();
    t.write_upstream_path(&m, path, query, &mut out);
    String::from_utf8(out).unwrap()
}

// --- precedence ---

#[test]
fn higher_priority_beats_more_specific_host_and_path() {
    let t = table(vec![
        route("specific", exact("/a/b")).host(host("h.com")),
        route("catch", prefix("/")).priority(1),
    ]);
    wins(&t, req("h.com", "/a/b"), "catch");
}

#[test]
fn negative_priority_loses_to_default() {
    let t = table(vec![
        route("low", exact("/a")).priority(-1),
        route("default", prefix("/")),
    ]);
    wins(&t, req("", "/a"), "default");
}

#[test]
fn exact_host_beats_wildcard_and_wildcard_beats_any_at_equal_priority() {
    let t = table(vec![
        route("any", exact("/a")),
        route("wild", prefix("/")).host(wild("*.h.com")),
        route("exact", prefix("/")).host(host("x.h.com")),
    ]);
    wins(&t, req("x.h.com", "/a"), "exact");
    wins(&t, req("y.h.com", "/a"), "wild");
    wins(&t, req("other.com", "/a"), "any");
}

#[test]
fn wildcard_with_more_labels_beats_shorter_wildcard() {
    let t = table(vec![
        route("short", prefix("/")).host(wild("*.com")),
        route("long", prefix("/")).host(wild("*.b.com")),
    ]);
    wins(&t, req("a.b.com", "/"), "long");
    wins(&t, req("a.c.com", "/"), "short");
}

#[test]
fn host_specificity_beats_path_specificity() {
    let t = table(vec![
        route("any-exact-path", exact("/a/b")),
        route("host-prefix", prefix("/")).host(host("h.com")),
    ]);
    wins(&t, req("h.com", "/a/b"), "host-prefix");
}

#[test]
fn exact_path_beats_template_beats_prefix() {
    let t = table(vec![
        route("prefix", prefix("/a/b")),
        route("template", template("/a/{x}")),
        route("exact", exact("/a/b")),
    ]);
    wins(&t, req("", "/a/b"), "exact");
    wins(&t, req("", "/a/c"), "template");
    wins(&t, req("", "/a/b/c"), "prefix");
}

#[test]
fn template_with_more_literal_segments_wins() {
    let t = table(vec![
        route("one-literal", template("/{a}/{b}/c")),
        route("two-literals", template("/x/{b}/c")),
    ]);
    wins(&t, req("", "/x/y/c"), "two-literals");
    wins(&t, req("", "/z/y/c"), "one-literal");
}

#[test]
fn template_with_fewer_captures_wins_at_equal_literals() {
    let t = table(vec![
        route("catch-all", template("/a/{*rest}")),
        route("two-params", template("/a/{x}/{y}")),
        route("literal-then-param", template("/a/b/{y}")),
    ]);
    // two-params: 1 literal, 2 captures; catch-all: 1 literal, 1 capture.
    wins(&t, req("", "/a/c/d"), "catch-all");
    wins(&t, req("", "/a/b/d"), "literal-then-param");
}

#[test]
fn template_without_catch_all_beats_catch_all() {
    let t = table(vec![
        route("rest", template("/a/{*rest}")),
        route("param", template("/a/{x}")),
    ]);
    wins(&t, req("", "/a/b"), "param");
    wins(&t, req("", "/a/b/c"), "rest");
}

#[test]
fn longer_prefix_wins() {
    let t = table(vec![
        route("root", prefix("/")),
        route("api", prefix("/api")),
        route("api-slash", prefix("/api/")),
        route("api-v1", prefix("/api/v1")),
    ]);
    wins(&t, req("", "/api/v1/x"), "api-v1");
    wins(&t, req("", "/api/v2"), "api-slash");
    wins(&t, req("", "/api"), "api");
    wins(&t, req("", "/other"), "root");
}

#[test]
fn earlier_declaration_wins_ties() {
    let t = table(vec![
        route("first", template("/a/{x}")),
        route("second", template("/a/{y}")),
        route("third", template("/a/{z}")),
    ]);
    wins(&t, req("", "/a/b"), "first");
}

#[test]
fn route_with_several_hosts_competes_with_its_most_specific_matching_host() {
    let t = table(vec![
        route("wild-only", prefix("/")).host(wild("*.h.com")),
        route("both", prefix("/"))
            .host(wild("*.com"))
            .host(host("x.h.com")),
    ]);
    wins(&t, req("x.h.com", "/"), "both");
    wins(&t, req("y.h.com", "/"), "wild-only");
    wins(&t, req("y.com", "/"), "both");
}

#[test]
fn best_route_failing_its_method_falls_back_to_the_next_best() {
    let t = table(vec![
        route("fallback", prefix("/")),
        route("post-only", exact("/a"))
            .method("POST")
            .host(host("h.com")),
    ]);
    wins(&t, req("h.com", "/a").method("POST"), "post-only");
    wins(&t, req("h.com", "/a"), "fallback");
}

#[test]
fn lower_priority_exact_host_is_skipped_for_higher_priority_any_host() {
    let t = table(vec![
        route("exact-host", exact("/a")).host(host("h.com")),
        route("any-host", template("/{x}")).priority(5),
    ]);
    wins(&t, req("h.com", "/a"), "any-host");
}

// --- hosts ---

#[test]
fn wildcard_matches_one_or_more_labels_but_not_the_apex() {
    let t = table(vec![route("w", prefix("/")).host(wild("*.example.com"))]);
    wins(&t, req("a.example.com", "/"), "w");
    wins(&t, req("a.b.example.com", "/"), "w");
    misses(&t, req("example.com", "/"));
    misses(&t, req("xexample.com", "/"));
    misses(&t, req(".example.com", "/"));
}

#[test]
fn host_port_case_and_trailing_dot_are_ignored() {
    let t = table(vec![
        route("exact", prefix("/")).host(host("API.Example.com")),
        route("wild", prefix("/")).host(wild("*.Example.COM.")),
    ]);
    for h in [
        "api.example.com",
        "API.EXAMPLE.COM",
        "api.example.com:8080",
        "api.example.com.",
        "Api.Example.Com.:443",
    ] {
        wins(&t, req(h, "/"), "exact");
    }
    wins(&t, req("WWW.example.com.:80", "/"), "wild");
}

#[test]
fn ipv6_literal_host_matches_with_or_without_port() {
    let t = table(vec![route("v6", prefix("/")).host(host("[::1]"))]);
    wins(&t, req("[::1]:8080", "/"), "v6");
    wins(&t, req("[::1]", "/"), "v6");
    misses(&t, req("[::2]:8080", "/"));
}

#[test]
fn missing_or_unknown_host_reaches_only_hostless_routes() {
    let t = table(vec![
        route("hosted", prefix("/")).host(host("h.com")),
        route("hostless", exact("/x")),
        route("explicit-any", exact("/y")).host(HostMatch::Any),
    ]);
    misses(&t, req("", "/"));
    wins(&t, req("", "/x"), "hostless");
    wins(&t, req("other.com", "/x"), "hostless");
    wins(&t, req("other.com", "/y"), "explicit-any");
    misses(&t, req("other.com", "/z"));
}

// --- paths ---

#[test]
fn prefix_matches_at_segment_boundary_only() {
    let t = table(vec![route("api", prefix("/api"))]);
    wins(&t, req("", "/api"), "api");
    wins(&t, req("", "/api/"), "api");
    wins(&t, req("", "/api/x/y"), "api");
    misses(&t, req("", "/apix"));
    misses(&t, req("", "/ap"));
    misses(&t, req("", "/"));
}

#[test]
fn prefix_ending_in_slash_matches_what_starts_with_it() {
    let t = table(vec![route("api/", prefix("/api/"))]);
    wins(&t, req("", "/api/"), "api/");
    wins(&t, req("", "/api/x"), "api/");
    misses(&t, req("", "/api"));
    misses(&t, req("", "/apix"));
}

#[test]
fn root_prefix_matches_every_path_but_not_non_origin_targets() {
    let t = table(vec![route("root", prefix("/"))]);
    wins(&t, req("", "/"), "root");
    wins(&t, req("", "/a/b/c"), "root");
    wins(&t, req("", "//x"), "root");
    misses(&t, req("", "*"));
    misses(&t, req("", "http://h.com/a"));
    misses(&t, req("", ""));
}

#[test]
fn matching_ignores_the_query() {
    let t = table(vec![route("a", exact("/a")), route("b", prefix("/b"))]);
    wins(&t, req("", "/a?x=1"), "a");
    wins(&t, req("", "/b?/c"), "b");
    misses(&t, req("", "/c?/a"));
}

#[test]
fn exact_path_is_byte_exact() {
    let t = table(vec![route("a", exact("/a/b"))]);
    wins(&t, req("", "/a/b"), "a");
    misses(&t, req("", "/a/b/"));
    misses(&t, req("", "/A/b"));
    misses(&t, req("", "/a"));
}

#[test]
fn template_param_is_one_whole_non_empty_segment() {
    let t = table(vec![route("t", template("/users/{id}/orders"))]);
    wins(&t, req("", "/users/42/orders"), "t");
    misses(&t, req("", "/users//orders"));
    misses(&t, req("", "/users/4/2/orders"));
    misses(&t, req("", "/users/42/orders/"));
    misses(&t, req("", "/users/42"));
}

#[test]
fn template_captures_are_ranges_into_the_request_path() {
    let t = table(vec![route("t", template("/users/{id}/orders/{order}"))]);
    let r = req("", "/users/42/orders/7?x=1");
    let m = t.lookup(&r.as_route_request()).unwrap();
    let path = r.target.as_bytes();
    assert_eq!(m.capture_in("id", path), Some(&b"42"[..]));
    assert_eq!(m.capture_in("order", path), Some(&b"7"[..]));
    assert_eq!(m.capture("nope"), None);
    let names: Vec<_> = m.captures().map(|c| (c.name, c.range)).collect();
    assert_eq!(names, [("id", 7..9), ("order", 17..18)]);
}

#[test]
fn catch_all_captures_the_non_empty_rest_of_the_path() {
    let t = table(vec![route("files", template("/files/{*path}"))]);
    let r = req("", "/files/a/b/c.txt");
    let m = t.lookup(&r.as_route_request()).unwrap();
    assert_eq!(
        m.capture_in("path", r.target.as_bytes()),
        Some(&b"a/b/c.txt"[..])
    );
    let r = req("", "/files/a/");
    let m = t.lookup(&r.as_route_request()).unwrap();
    assert_eq!(m.capture_in("path", r.target.as_bytes()), Some(&b"a/"[..]));
    misses(&t, req("", "/files/"));
    misses(&t, req("", "/files"));
    misses(&t, req("", "/filesx/a"));
}

#[test]
fn param_branch_is_tried_when_the_literal_branch_dead_ends() {
    let t = table(vec![
        route("me", exact("/users/me")),
        route("me-tmpl", template("/users/me/profile")),
        route("orders", template("/users/{id}/orders")),
    ]);
    wins(&t, req("", "/users/me/orders"), "orders");
    wins(&t, req("", "/users/me/profile"), "me-tmpl");
    wins(&t, req("", "/users/me"), "me");
}

#[test]
fn a_match_carries_max_captures_spans() {
    let names: Vec<String> = (0..MAX_CAPTURES).map(|i| format!("p{i}")).collect();
    let tmpl: String = names.iter().map(|n| format!("/x/{{{n}}}")).collect();
    let t = table(vec![route("many", template(&tmpl))]);
    let target: String = (0..MAX_CAPTURES).map(|i| format!("/x/v{i}")).collect();
    let r = req("", &target);
    let m = t.lookup(&r.as_route_request()).unwrap();
    for (i, name) in names.iter().enumerate() {
        let want = format!("v{i}");
        assert_eq!(m.capture_in(name, target.as_bytes()), Some(want.as_bytes()));
    }
}

#[test]
fn root_template_matches_only_the_root() {
    let t = table(vec![
        route("root", template("/")),
        route("one", template("/{x}")),
    ]);
    wins(&t, req("", "/"), "root");
    wins(&t, req("", "/a"), "one");
    misses(&t, req("", "/a/b"));
}

// --- methods and headers ---

#[test]
fn methods_restrict_the_route_and_empty_means_any() {
    let t = table(vec![
        route("read", prefix("/")).method("GET").method("head"),
        route("any", prefix("/")).priority(-1),
    ]);
    wins(&t, req("", "/").method("GET"), "read");
    wins(&t, req("", "/").method("HEAD"), "read");
    wins(&t, req("", "/").method("POST"), "any");
    // Methods are case-sensitive on the wire; config is upper-cased.
    wins(&t, req("", "/").method("get"), "any");
}

#[test]
fn header_present_matches_any_value_and_any_name_case() {
    let t = table(vec![
        route("h", prefix("/")).header(HeaderMatch::Present("X-Canary".into()))
    ]);
    wins(&t, req("", "/").header("x-canary", ""), "h");
    wins(&t, req("", "/").header("X-CANARY", "yes"), "h");
    misses(&t, req("", "/").header("x-canar", "yes"));
}

#[test]
fn header_exact_value_is_case_sensitive() {
    let t = table(vec![
        route("h", prefix("/")).header(HeaderMatch::Exact("x-env".into(), "Prod".into()))
    ]);
    wins(&t, req("", "/").header("X-Env", "Prod"), "h");
    misses(&t, req("", "/").header("x-env", "prod"));
    misses(&t, req("", "/").header("x-env", "Prod2"));
    wins(
        &t,
        req("", "/").header("x-env", "dev").header("x-env", "Prod"),
        "h",
    );
}

#[test]
fn header_prefix_matches_value_start() {
    let t =
        table(vec![route("h", prefix("/")).header(HeaderMatch::Prefix(
            "user-agent".into(),
            "curl/".into(),
        ))]);
    wins(&t, req("", "/").header("User-Agent", "curl/8.0"), "h");
    misses(&t, req("", "/").header("User-Agent", "Curl/8.0"));
    misses(&t, req("", "/").header("User-Agent", "curl"));
}

#[test]
fn all_header_matchers_must_hold() {
    let t = table(vec![route("h", prefix("/"))
        .header(HeaderMatch::Present("a".into()))
        .header(HeaderMatch::Exact("b".into(), "1".into()))]);
    wins(&t, req("", "/").header("a", "").header("b", "1"), "h");
    misses(&t, req("", "/").header("a", ""));
    misses(&t, req("", "/").header("b", "1"));
}

// --- rewrites ---

#[test]
fn no_rewrite_keeps_path_and_query() {
    let t = table(vec![route("r", prefix("/api"))]);
    assert_eq!(upstream(&t, "", "/api/x?a=1&b"), "/api/x?a=1&b");
    assert_eq!(upstream(&t, "", "/api/x"), "/api/x");
    assert_eq!(upstream(&t, "", "/api/x?"), "/api/x?");
}

#[test]
fn strip_prefix_removes_the_prefix_keeps_query_and_leaves_at_least_slash() {
    let t = table(vec![
        route("r", prefix("/api")).rewrite(Rewrite::StripPrefix)
    ]);
    assert_eq!(upstream(&t, "", "/api/users/1?x=y"), "/users/1?x=y");
    assert_eq!(upstream(&t, "", "/api"), "/");
    assert_eq!(upstream(&t, "", "/api?x"), "/?x");
    assert_eq!(upstream(&t, "", "/api/"), "/");
}

#[test]
fn replace_prefix_swaps_the_prefix_and_keeps_query() {
    let t = table(vec![
        route("r", prefix("/api/v1/")).rewrite(Rewrite::ReplacePrefix("/v2".into())),
        route("s", prefix("/old")).rewrite(Rewrite::ReplacePrefix("/new/".into())),
    ]);
    assert_eq!(upstream(&t, "", "/api/v1/users?page=2"), "/v2/users?page=2");
    assert_eq!(upstream(&t, "", "/old"), "/new");
    assert_eq!(upstream(&t, "", "/old/x"), "/new/x");
}

#[test]
fn template_rewrite_fills_captures_and_keeps_query() {
    let t = table(vec![route("r", template("/users/{id}/files/{*path}"))
        .rewrite(Rewrite::Template("/v2/{*path}/owner-{id}".into()))]);
    assert_eq!(
        upstream(&t, "", "/users/42/files/a/b.txt?dl=1"),
        "/v2/a/b.txt/owner-42?dl=1"
    );
    assert_eq!(upstream(&t, "", "/users/7/files/x"), "/v2/x/owner-7");
}

// --- building ---

#[test]
fn build_reports_every_error_with_route_index_and_id() {
    let routes = vec![
        route("ok", prefix("/")),
        route("relative", exact("a/b")),
        route("unclosed", template("/a/{id")),
        route("empty-name", template("/a/{}")),
        route("dup-name", template("/{x}/{x}")),
        route("catch-all-mid", template("/{*x}/a")),
        route("ok", exact("/dup")),
        route("strip-on-exact", exact("/a")).rewrite(Rewrite::StripPrefix),
        route("unknown-capture", template("/u/{id}")).rewrite(Rewrite::Template("/{uid}".into())),
        route("bad-host", prefix("/"))
            .host(host("h.com:80"))
            .host(wild("h.com")),
        route("bad-method", prefix("/")).method("GE T"),
        route("bad-header", prefix("/")).header(HeaderMatch::Present("a b".into())),
        route("", prefix("/")),
    ];
    let errors = RouteTable::build(routes).unwrap_err();
    let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.index(), e.id())).collect();
    assert_eq!(
        found,
        [
            (1, "relative"),
            (2, "unclosed"),
            (3, "empty-name"),
            (4, "dup-name"),
            (5, "catch-all-mid"),
            (6, "ok"),
            (7, "strip-on-exact"),
            (8, "unknown-capture"),
            (9, "bad-host"),
            (9, "bad-host"),
            (10, "bad-method"),
            (11, "bad-header"),
            (12, ""),
        ]
    );
    assert!(matches!(
        &errors[1],
        RouteError::BadPath {
            problem: TemplateError::UnclosedBrace,
            ..
        }
    ));
    assert!(matches!(
        &errors[4],
        RouteError::BadPath {
            problem: TemplateError::CatchAllNotLast { .. },
            ..
        }
    ));
    assert!(matches!(
        &errors[5],
        RouteError::DuplicateId { first: 0, .. }
    ));
    assert!(matches!(
        &errors[7],
        RouteError::BadRewrite {
            problem: TemplateError::UnknownCapture { .. },
            ..
        }
    ));
}

#[test]
fn error_messages_name_the_route_and_the_problem() {
    let errors = RouteTable::build(vec![route("users", template("/u/{id"))]).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "route #0 `users`: path `/u/{id`: unclosed '{'"
    );
    let errors =
        RouteTable::build(vec![route("a", prefix("/")), route("a", prefix("/"))]).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "route #1 `a`: duplicate id, first used by route #0"
    );
}

#[test]
fn empty_table_misses_everything() {
    let t: RouteTable<String> = table(vec![]);
    assert!(t.is_empty());
    assert_eq!(t.len(), 0);
    misses(&t, req("h.com", "/"));
}

#[test]
fn match_reports_declaration_index_and_action() {
    let t = table(vec![route("a", exact("/a")), route("b", exact("/b"))]);
    assert_eq!(t.len(), 2);
    let r = req("", "/b");
    let m = t.lookup(&r.as_route_request()).unwrap();
    assert_eq!(m.index(), 1);
    assert_eq!(t.action(&m), "b");
}

#[test]
fn table_and_match_can_be_shared_across_cores() {
    fn shared<T: Send + Sync>() {}
    shared::<RouteTable<String>>();
    shared::<ringgate_policies::routing::RouteMatch<'static>>();
}
