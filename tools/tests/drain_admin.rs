//! The admin API around the life of the process (issue 14, item 8): it keeps serving through a
//! drain, so a load balancer sees `/readyz` turn 503 `draining` and `/metrics` can still be
//! scraped until the process exits; and a busy admin port fails the start with a clear error, as
//! a busy listener does, instead of a gateway running without its admin API.

use ringgate_testkit::client::{Client, Response};
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::{free_port, ChildGateway};
use ringgate_testkit::stub::slow_stub;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

fn config(up: SocketAddr, admin: SocketAddr) -> String {
    format!(
        "version = \"drain-admin\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"{admin}\"\n[[upstreams]]\nname = \"slow\"\nendpoints = [\"{up}\"]\n[[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"slow\"\n"
    )
}

/// `GET path` on a new connection; `None` when nothing accepts or answers it.
fn try_get(addr: SocketAddr, path: &str) -> Option<Response> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut c = Client::over(s);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes());
    c.try_response_to("GET")
}

/// Requests in flight over all workers, as `/metrics` says.
fn inflight(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("ringgate_worker_inflight_requests{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `ok()` holds, for at most 15 s.
fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    ringgate_testkit::wait::until_named(what, Duration::from_secs(15), ok);
}

#[test]
fn readyz_says_draining_and_metrics_answer_until_the_process_exits() {
    let slow = slow_stub("slow", 3000);
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let f = TempFile::new("drain-admin.toml", &config(slow.addr(), admin));
    let gw = ChildGateway::spawn(BIN, &["serve", "--config", f.arg()]);
    let addr = gw.addr;
    wait_for("the admin API is ready", || {
        try_get(admin, "/readyz").is_some_and(|r| r.status == 200)
    });
    let request = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
        c.try_response_to("GET")
    });
    wait_for("the request is in flight", || {
        try_get(admin, "/metrics").is_some_and(|r| inflight(&r.text()) >= 1.0)
    });
    gw.signal(15);
    // Until the signal is seen the gateway is ready; from then on the admin API must still
    // answer, saying it drains.
    let drained = loop {
        let r = try_get(admin, "/readyz").expect("the admin API answers during the drain");
        if r.status != 200 {
            break r;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(drained.status, 503, "{}", drained.text());
    let body: serde_json::Value = serde_json::from_slice(&drained.body).expect("json");
    assert_eq!(body["status"], "draining", "{body}");
    let health = try_get(admin, "/healthz").expect("/healthz answers during the drain");
    assert_eq!(health.status, 200);
    let scrape = try_get(admin, "/metrics").expect("/metrics answers during the drain");
    assert_eq!(scrape.status, 200);
    let text = scrape.text();
    assert!(text.contains("ringgate_ready 0"), "{text}");
    let answered = request
        .join()
        .expect("client")
        .expect("the in-flight request is answered");
    assert_eq!(answered.status, 200);
    let (st, err) = gw.wait_exit(Duration::from_secs(20));
    assert!(st.is_some_and(|s| s.success()), "exit: {st:?} {err}");
    assert!(err.contains("1 drained, 0 aborted"), "{err}");
    assert!(
        TcpStream::connect(admin).is_err(),
        "the admin API closes with the process"
    );
}

#[test]
fn a_busy_admin_port_fails_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let f = TempFile::new("busy-admin.toml", &config(up, busy));
    let mut child = Command::new(BIN)
        .args(["serve", "--config", f.arg()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringgate");
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway kept running without its admin API");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("admin API") && stderr.contains(&busy.to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(
        !stdout.contains("ringgate: driver="),
        "it failed before serving: {stdout}"
    );
    drop(taken);
}
