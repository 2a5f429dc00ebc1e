//! Operations (issue 7): admin API, metrics, reloads, access logs, trace context, drain, upgrade.

use ringgate::admin::{metrics_text, AdminServer};
use ringgate::config::RawConfig;
use ringgate::control::{ConfigSource, Control};
use ringgate::server::{start, RunningGateway};
use ringgate::snapshot::{text_hash, Snapshot};
use ringgate_testkit::client::{answers, gets_in_flight};
use ringgate_testkit::client::{get, send, Client};
use ringgate_testkit::config;
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::{test_profile, ChildGateway};
use ringgate_testkit::run::succeed;
use ringgate_testkit::scripted::recorder;
use ringgate_testkit::stub::{slow_stub, stub};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// A gateway with its control plane and admin API, from a config file.
struct Ops {
    gw: Option<RunningGateway>,
    control: Arc<Control>,
    admin: Option<AdminServer>,
    file: TempFile,
}

impl Ops {
    fn start(name: &str, text: &str) -> Self {
        let file = TempFile::new(name, text);
        let raw = RawConfig::parse(text).expect("parse");
        let snap = Snapshot::build(&raw, text_hash(text)).expect("valid");
        let gw = start(snap, &test_profile()).expect("start");
        let control = Control::new(ConfigSource::File(file.path().into()), raw.clone(), &gw);
        let admin = raw.admin.as_ref().map(|a| {
            AdminServer::start(
                a.address.parse().expect("addr"),
                a.token.clone(),
                control.clone(),
            )
            .expect("admin")
        });
        Ops {
            gw: Some(gw),
            control,
            admin,
            file,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.as_ref().expect("running").addrs[0]
    }

    fn admin(&self) -> SocketAddr {
        self.admin.as_ref().expect("admin").addr
    }

    fn rewrite(&self, text: &str) {
        std::fs::write(self.file.path(), text).expect("write config");
    }

    fn admin_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> ringgate_testkit::client::Response {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        send(
            self.admin(),
            format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\n\r\n")
                .as_bytes(),
        )
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        if let Some(gw) = self.gw.take() {
            gw.stop();
        }
    }
}

fn cfg(a: SocketAddr, b: SocketAddr, version: &str, to: &str, extra: &str) -> String {
    [
        config::head(version, ""),
        format!("[admin]\naddress = \"127.0.0.1:0\"\n{extra}\n"),
        config::upstream("a", a),
        config::upstream("b", b),
        config::route("main", "/", to, ""),
    ]
    .concat()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn admin_api_answers_health_readiness_config_routes_and_upstreams() {
    let (a, b) = (stub("A"), stub("B"));
    let ops = Ops::start("ops-admin.toml", &cfg(a.addr(), b.addr(), "v1", "a", ""));
    assert_eq!(get(ops.addr(), "x", "/hello").status, 200);
    let h = ops.admin_call("GET", "/healthz", None);
    assert_eq!((h.status, h.text().contains("ok")), (200, true));
    let r = ops.admin_call("GET", "/readyz", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let c: serde_json::Value =
        serde_json::from_slice(&ops.admin_call("GET", "/config", None).body).expect("json");
    assert_eq!(c["version"], "v1");
    assert_eq!(c["reloads"]["ok"], 0);
    assert!(
        c["source"]
            .as_str()
            .unwrap_or("")
            .ends_with("ops-admin.toml"),
        "{c}"
    );
    let routes: serde_json::Value =
        serde_json::from_slice(&ops.admin_call("GET", "/routes", None).body).expect("json");
    assert_eq!(routes["routes"][0]["id"], "main");
    assert_eq!(routes["routes"][0]["upstream"], "a");
    let ups: serde_json::Value =
        serde_json::from_slice(&ops.admin_call("GET", "/upstreams", None).body).expect("json");
    let ua = &ups["upstreams"][0];
    assert_eq!(ua["name"], "a");
    assert_eq!(ua["endpoints"][0]["address"], a.addr().to_string());
    assert!(ua["connections"]["new"].as_u64().unwrap_or(0) >= 1, "{ups}");
    assert_eq!(ops.admin_call("GET", "/nope", None).status, 404);
    assert_eq!(ops.admin_call("GET", "/config/reload", None).status, 405);
    assert_eq!(ops.admin_call("POST", "/metrics", None).status, 405);
}

#[test]
fn admin_token_is_required_when_configured() {
    let (a, b) = (stub("A"), stub("B"));
    let token = "s3cret-admin-token-0123";
    let ops = Ops::start(
        "ops-token.toml",
        &cfg(
            a.addr(),
            b.addr(),
            "v1",
            "a",
            &format!("token = \"{token}\""),
        ),
    );
    let no = ops.admin_call("GET", "/healthz", None);
    assert_eq!(no.status, 401);
    assert!(no.header("www-authenticate").is_some());
    assert_eq!(
        ops.admin_call("GET", "/healthz", Some("wrong-token-wrong-token"))
            .status,
        401
    );
    assert_eq!(ops.admin_call("GET", "/healthz", Some(token)).status, 200);
}

#[test]
fn metrics_count_exactly_the_requests_sent() {
    let (a, b) = (stub("A"), stub("B"));
    let ops = Ops::start("ops-metrics.toml", &cfg(a.addr(), b.addr(), "v1", "a", ""));
    let mut c = Client::connect(ops.addr());
    for _ in 0..10 {
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 200);
    }
    // A reload that keeps the upstream keeps its pooled connection (per-core state survives).
    ops.rewrite(&cfg(a.addr(), b.addr(), "v1b", "a", ""));
    ops.control.reload("test").expect("reload");
    for _ in 0..3 {
        c.send(b"GET /status/503 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 503);
    }
    // A request that matches no route: swap in a config with a narrower route first.
    let text =
        cfg(a.addr(), b.addr(), "v2", "a", "").replace("prefix = \"/\"", "prefix = \"/only\"");
    ops.rewrite(&text);
    ops.control.reload("test").expect("reload");
    for _ in 0..4 {
        c.send(b"GET /elsewhere HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 404);
    }
    let m = metrics_text(&ops.control);
    assert_eq!(
        metric(&m, "ringgate_requests_total{route=\"main\",code=\"2xx\"}"),
        Some(10.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "ringgate_requests_total{route=\"main\",code=\"5xx\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, "ringgate_requests_total{route=\"-\",code=\"4xx\"}"),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &m,
            "ringgate_gateway_responses_total{reason=\"no_route\",status=\"404\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &m,
            "ringgate_upstream_responses_total{upstream=\"a\",code=\"2xx\"}"
        ),
        Some(10.0)
    );
    assert_eq!(
        metric(
            &m,
            "ringgate_request_duration_seconds_count{route=\"main\"}"
        ),
        Some(13.0)
    );
    let bucket = metric(
        &m,
        "ringgate_request_duration_seconds_bucket{route=\"main\",le=\"+Inf\"}",
    );
    assert_eq!(bucket, Some(13.0));
    // One keep-alive connection upstream, reused for the rest, across the reload.
    assert_eq!(
        metric(
            &m,
            "ringgate_upstream_connections_new_total{upstream=\"a\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "ringgate_upstream_connections_reused_total{upstream=\"a\"}"
        ),
        Some(12.0)
    );
    assert_eq!(
        metric(&m, "ringgate_config_reloads_total{result=\"ok\"}"),
        Some(2.0)
    );
    assert!(
        metric(&m, "ringgate_worker_loop_lag_seconds{worker=\"0\"}").is_some(),
        "{m}"
    );
    // The same text over HTTP, checked by the reference Prometheus parser.
    let scraped = ops.admin_call("GET", "/metrics", None);
    assert_eq!(scraped.status, 200);
    assert!(scraped
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain; version=0.0.4"));
    let f = TempFile::new("ops-metrics.prom", &scraped.text());
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        key = s.name + json.dumps(s.labels, sort_keys=True)
        out[key] = s.value
print(json.dumps(out))
"#;
    let py = succeed(
        std::process::Command::new("python3").args(["-c", script, f.arg()]),
        "prometheus parser (scripts/test.sh installs prometheus-client)",
    );
    let parsed: serde_json::Value = serde_json::from_slice(&py.stdout).expect("json");
    assert_eq!(
        parsed["ringgate_requests_total{\"code\": \"2xx\", \"route\": \"main\"}"].as_f64(),
        Some(10.0),
        "{parsed}"
    );
    assert_eq!(
        parsed["ringgate_upstream_responses_total{\"code\": \"5xx\", \"upstream\": \"a\"}"]
            .as_f64(),
        Some(3.0)
    );
}

#[test]
fn reload_swaps_routes_refuses_bad_configs_and_follows_the_file() {
    let (a, b) = (stub("A"), stub("B"));
    let text = cfg(a.addr(), b.addr(), "v1", "a", "");
    let ops = Ops::start("ops-reload.toml", &text);
    let who = |ops: &Ops| {
        get(ops.addr(), "h", "/x")
            .header("x-upstream")
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(who(&ops), "A");
    // An admin-triggered reload.
    ops.rewrite(&cfg(a.addr(), b.addr(), "v2", "b", ""));
    let r = ops.admin_call("POST", "/config/reload", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"v2\""));
    assert_eq!(who(&ops), "B");
    // An invalid config never goes live; the call says why and traffic is unaffected.
    ops.rewrite(&cfg(a.addr(), b.addr(), "v3", "nowhere", ""));
    let r = ops.admin_call("POST", "/config/reload", None);
    assert_eq!(r.status, 422);
    assert!(r.text().contains("no such upstream"), "{}", r.text());
    assert_eq!(who(&ops), "B");
    ops.rewrite("this is not toml [");
    assert_eq!(ops.admin_call("POST", "/config/reload", None).status, 422);
    // What only a restart can change is refused too.
    ops.rewrite(&cfg(a.addr(), b.addr(), "v4", "a", "").replacen("127.0.0.1:0", "127.0.0.1:1", 1));
    let r = ops.admin_call("POST", "/config/reload", None);
    assert_eq!(r.status, 422);
    assert!(r.text().contains("listeners"), "{}", r.text());
    let c: serde_json::Value =
        serde_json::from_slice(&ops.admin_call("GET", "/config", None).body).expect("json");
    assert_eq!(c["version"], "v2");
    assert_eq!(c["reloads"]["failed"], 3);
    // A change of the file alone is picked up by the watcher.
    let _stop = ops.control.watch(Duration::from_millis(50));
    ops.rewrite(&cfg(a.addr(), b.addr(), "v5", "a", ""));
    let t0 = Instant::now();
    while who(&ops) != "A" {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the watcher never reloaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_under_load_changes_routing_with_no_failed_request() {
    use ringbench::run::{self, Plan, RunConfig, SimpleRequest, Target};
    let (a, b) = (stub("A"), stub("B"));
    let ops = Ops::start(
        "ops-reload-load.toml",
        &cfg(a.addr(), b.addr(), "v1", "a", ""),
    );
    let target = Target::parse(&format!("http://{}/x", ops.addr())).expect("target");
    let plan = Plan::single(&target, &SimpleRequest::default()).expect("plan");
    let mut rc = RunConfig::simple(target, plan, 5000.0, Duration::from_secs(4));
    rc.conns = 16;
    let load = std::thread::spawn(move || run::run(&rc).expect("load runs"));
    std::thread::sleep(Duration::from_millis(1500));
    ops.rewrite(&cfg(a.addr(), b.addr(), "v2", "b", ""));
    let served_by_b_before = b.requests_served();
    let t0 = Instant::now();
    ops.control.reload("test").expect("reload");
    // New requests go to B from now on: B starts serving the load (a generous deadline: how
    // fast is a figure for a report, not for a test on a shared machine).
    while b.requests_served() < served_by_b_before + 100 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "routing did not change within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = load.join().expect("load thread");
    assert_eq!(report.counts.errors, 0, "{:?}", report.counts.error_kinds);
    assert_eq!(report.counts.timeouts, 0);
    let ok = report.counts.statuses.get("200").copied().unwrap_or(0);
    assert_eq!(ok, report.counts.completed, "{:?}", report.counts.statuses);
    // The reload happened under load: A served before it, B after it, nothing failed.
    assert!(a.requests_served() > 0 && b.requests_served() > served_by_b_before);
}

#[test]
fn access_log_lines_are_json_with_the_request_facts_and_no_secrets() {
    let (a, b) = (stub("A"), stub("B"));
    let log = TempFile::new("ops-access.log", "");
    let extra = format!("[access_log]\npath = \"{}\"\n", log.arg());
    let mut ops = Ops::start("ops-log.toml", &cfg(a.addr(), b.addr(), "v1", "a", &extra));
    let mut c = Client::connect(ops.addr());
    c.send(b"GET /users/7?api_key=SEKRET1&x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer SEKRET2\r\nCookie: session=SEKRET3\r\nX-API-Key: SEKRET4\r\nX-Request-Id: req-42\r\n\r\n");
    let r1 = c.response();
    assert_eq!(r1.status, 200);
    assert_eq!(r1.header("x-request-id"), Some("req-42"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.response().status, 200);
    let gw = ops.gw.take().expect("running");
    if let Some(adm) = ops.admin.take() {
        adm.stop();
    }
    gw.stop();
    let text = std::fs::read_to_string(log.path()).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for s in ["SEKRET1", "SEKRET2", "SEKRET3", "SEKRET4"] {
        assert!(!text.contains(s), "{s} leaked into the access log: {text}");
    }
    let l = &lines[0];
    assert_eq!(l["request_id"], "req-42");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/users/7");
    assert_eq!(l["route"], "main");
    assert_eq!(l["upstream"], a.addr().to_string());
    assert_eq!(l["status"], 200);
    assert_eq!(l["client_ip"], "127.0.0.1");
    assert!(
        l["duration_us"].as_u64().is_some() && l["upstream_us"].as_u64().is_some(),
        "{l}"
    );
    assert!(l["time"].as_str().unwrap_or("").ends_with('Z'), "{l}");
    assert_eq!(l["trace_id"].as_str().map(str::len), Some(32));
    let p = &lines[1];
    assert_eq!(p["method"], "POST");
    assert!(p["bytes_in"].as_u64().unwrap_or(0) > 5, "{p}");
    assert!(p["bytes_out"].as_u64().unwrap_or(0) > 0, "{p}");
    assert_eq!(
        p["request_id"].as_str().map(str::len),
        Some(32),
        "generated id"
    );
}

#[test]
fn request_ids_and_trace_context_are_assigned_and_propagated() {
    let (up, seen) = recorder();
    let b = stub("B");
    let text = cfg(up.addr, b.addr(), "v1", "a", "").replace(
        "upstream = \"a\"\n",
        "upstream = \"a\"\nserver_timing = true\n",
    );
    let ops = Ops::start("ops-trace.toml", &text);
    let mut c = Client::connect(ops.addr());
    c.send(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    let id = r
        .header("x-request-id")
        .expect("request id returned")
        .to_string();
    assert_eq!(id.len(), 32);
    let timing = r
        .header("server-timing")
        .expect("server-timing")
        .to_string();
    assert!(
        timing.contains("gateway;dur=") && timing.contains("upstream;dur="),
        "{timing}"
    );
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    c.send(format!("GET /two HTTP/1.1\r\nHost: h\r\ntraceparent: {incoming}\r\ntracestate: vendor=1\r\nX-Request-Id: abc.123\r\n\r\n").as_bytes());
    assert_eq!(c.response().header("x-request-id"), Some("abc.123"));
    let got = seen.lock().expect("lock").clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("x-request-id").as_deref(), Some(id.as_str()));
    let tp0 = got[0].header("traceparent").expect("traceparent generated");
    assert!(
        tp0.starts_with("00-") && tp0.len() == 55 && tp0.ends_with("-00"),
        "{tp0}"
    );
    let tp1 = got[1]
        .header("traceparent")
        .expect("traceparent propagated");
    assert_eq!(&tp1[..36], &incoming[..36], "trace id kept");
    assert_ne!(&tp1[36..52], &incoming[36..52], "a new span per hop");
    assert!(tp1.ends_with("-01"), "sampled flag kept");
    assert_eq!(got[1].header("tracestate").as_deref(), Some("vendor=1"));
    assert_eq!(got[1].header("x-request-id").as_deref(), Some("abc.123"));
}

#[test]
fn sigterm_drains_in_flight_requests_and_closes_idle_connections() {
    let slow = slow_stub("slow", 400);
    let text = cfg(slow.addr(), slow.addr(), "v1", "a", "")
        .replace("[admin]\naddress = \"127.0.0.1:0\"\n", "");
    let f = TempFile::new("ops-drain.toml", &text);
    let gw = ChildGateway::spawn(BIN, &["serve", "--config", f.arg()]);
    let addr = gw.addr;
    // An idle keep-alive connection, and 20 requests in flight.
    let mut idle = Client::connect(addr);
    idle.send(b"GET /warm HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(idle.response().status, 200);
    let inflight = gets_in_flight(addr, (0..20).map(|i| format!("/r{i}")).collect());
    std::thread::sleep(Duration::from_millis(150));
    gw.signal(15);
    for r in answers(inflight) {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert!(
        idle.is_closed_by_peer(),
        "idle keep-alive connections are closed"
    );
    gw.assert_drained(20, Duration::from_secs(15));
}

#[test]
fn sighup_reloads_the_config_file() {
    let (a, b) = (stub("A"), stub("B"));
    let strip = |t: String| t.replace("[admin]\naddress = \"127.0.0.1:0\"\n", "");
    let f = TempFile::new(
        "ops-hup.toml",
        &strip(cfg(a.addr(), b.addr(), "v1", "a", "")),
    );
    let gw = ChildGateway::spawn(BIN, &["serve", "--config", f.arg()]);
    assert_eq!(get(gw.addr, "h", "/").header("x-upstream"), Some("A"));
    // A content change the watcher would also see: check SIGHUP alone by keeping the length and
    // waiting less than the watcher's period is not possible to separate; SIGHUP must suffice.
    std::fs::write(f.path(), strip(cfg(a.addr(), b.addr(), "v2", "b", ""))).expect("write");
    gw.signal(1);
    let t0 = Instant::now();
    while get(gw.addr, "h", "/").header("x-upstream") != Some("B") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no reload after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.signal(15);
    let (st, err) = gw.wait_exit(Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "{err}");
    assert!(err.contains("reload ("), "{err}");
}

#[test]
fn binary_upgrade_hands_the_sockets_over_with_no_connection_error() {
    use ringbench::run::{self, Plan, RunConfig, SimpleRequest, Target};
    let (a, b) = (stub("A"), stub("B"));
    let text =
        cfg(a.addr(), b.addr(), "v1", "a", "").replace("[admin]\naddress = \"127.0.0.1:0\"\n", "");
    let f = TempFile::new("ops-upgrade.toml", &text);
    let sock = std::env::temp_dir().join(format!("ringgate-upgrade-{}.sock", std::process::id()));
    let sock_arg = sock.to_string_lossy().to_string();
    let old = ChildGateway::spawn(BIN, &["serve", "--config", f.arg(), "--handoff", &sock_arg]);
    let addr = old.addr;
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(t0.elapsed() < Duration::from_secs(5), "no handoff socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let target = Target::parse(&format!("http://{addr}/x")).expect("target");
    let plan = Plan::single(&target, &SimpleRequest::default()).expect("plan");
    let mut rc = RunConfig::simple(target, plan, 2000.0, Duration::from_secs(4));
    rc.conns = 8;
    let load = std::thread::spawn(move || run::run(&rc).expect("load"));
    std::thread::sleep(Duration::from_millis(1200));
    let new = ChildGateway::spawn(
        BIN,
        &[
            "serve",
            "--config",
            f.arg(),
            "--handoff",
            &sock_arg,
            "--takeover",
        ],
    );
    assert_eq!(new.addr, addr, "the new process serves the same address");
    let (st, err) = old.wait_exit(Duration::from_secs(20));
    assert!(st.is_some_and(|s| s.success()), "old process: {st:?} {err}");
    assert!(err.contains("taken over"), "{err}");
    let report = load.join().expect("load");
    assert_eq!(report.counts.errors, 0, "{:?}", report.counts.error_kinds);
    assert_eq!(report.counts.timeouts, 0);
    assert_eq!(
        report.counts.statuses.get("200").copied().unwrap_or(0),
        report.counts.completed
    );
    assert_eq!(get(addr, "h", "/").status, 200, "the new process serves");
    new.signal(15);
    let (st, _) = new.wait_exit(Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()));
    let _ = std::fs::remove_file(&sock);
}
