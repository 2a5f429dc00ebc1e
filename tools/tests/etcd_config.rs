//! A fleet's config from one etcd key, end to end: two `ringgate serve --etcd-endpoints ...`
//! processes start from the key, apply each change (the propagation time is printed, not
//! asserted), both refuse an invalid config (the old routes still served, `/config` showing the
//! old revision), and an etcd outage loses no request and the watch resumes after the restart.

use ringgate_testkit::etcd::{CutProxy, EtcdServer};
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::ChildGateway;
use ringgate_testkit::stub::stub;
use ringgate_testkit::wait::until_named;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "/ringgate/config";
const WAIT: Duration = Duration::from_secs(20);

/// The config: one listener and an admin API on ephemeral ports, routes `/a` and `extra`.
fn config(up: SocketAddr, version: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "version = \"{version}\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"up\"\nendpoints = [\"{up}\"]\n"
    );
    for p in std::iter::once(&"/a").chain(extra) {
        s.push_str(&format!(
            "[[routes]]\nid = \"r{}\"\npath = {{ prefix = \"{p}\" }}\nupstream = \"up\"\n",
            p.trim_start_matches('/')
        ));
    }
    s
}

/// A gateway node following the key, with its admin address and what it says on stderr.
struct Node {
    gw: ChildGateway,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(etcd: &str, profile: &TempFile) -> Node {
        let mut gw = ChildGateway::spawn(
            env!("CARGO_BIN_EXE_ringgate"),
            &[
                "serve",
                "--etcd-endpoints",
                etcd,
                "--etcd-key",
                KEY,
                "--profile",
                profile.arg(),
            ],
        );
        let err = gw.child.stderr.take().expect("piped stderr");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                log2.lock().expect("lock").push(line);
            }
        });
        let mut admin = None;
        until_named("admin address on stderr", WAIT, || {
            admin = log.lock().expect("lock").iter().find_map(|l| {
                l.split("admin API on http://")
                    .nth(1)
                    .and_then(|a| a.trim().parse().ok())
            });
            admin.is_some()
        });
        Node {
            gw,
            admin: admin.expect("admin address"),
            log,
        }
    }

    fn said(&self, what: &str) -> bool {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l.contains(what))
    }

    fn config(&self) -> serde_json::Value {
        let body = http_get(self.admin, "/config").expect("admin /config");
        serde_json::from_str(&body.1).expect("json")
    }

    fn status(&self, path: &str) -> Option<u16> {
        http_get(self.gw.addr, path).map(|r| r.0)
    }
}

/// `GET path` on a new connection: status and body, `None` when there was no answer.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn two_nodes_follow_one_etcd_key_refuse_a_bad_config_and_ride_out_an_outage() {
    let mut etcd = EtcdServer::start();
    let up = stub("s");
    let r1 = etcd.put(KEY, &config(up.addr(), "v1", &[]));
    let profile = TempFile::new("etcd-profile.toml", "[workers]\ncount = 1\npin = false\n");
    let nodes = [
        Node::start(&etcd.url(), &profile),
        Node::start(&etcd.url(), &profile),
    ];
    for n in &nodes {
        assert_eq!(n.config()["source_revision"], r1);
        assert_eq!(
            ringgate_testkit::client::metric(n.admin, "ringgate_config_source_revision"),
            r1 as f64
        );
        assert_eq!(n.status("/a/x"), Some(200));
        assert_eq!(n.status("/b0"), Some(404));
    }

    // Changes reach both nodes; the time from the put to both serving the new route.
    let mut times = Vec::new();
    let mut last_good = r1;
    for i in 0..5 {
        let path = format!("/b{i}");
        let t0 = Instant::now();
        last_good = etcd.put(KEY, &config(up.addr(), &format!("v{}", i + 2), &[&path]));
        let mut seen = [false, false];
        while !seen.iter().all(|s| *s) {
            assert!(t0.elapsed() < WAIT, "change {i} not applied on both nodes");
            for (k, n) in nodes.iter().enumerate() {
                seen[k] = seen[k] || n.status(&path) == Some(200);
            }
        }
        times.push(t0.elapsed());
    }
    println!(
        "etcd config change to both nodes serving it: median {:?} over {} changes (min {:?}, max {:?})",
        median(times.clone()),
        times.len(),
        times.iter().min().expect("some"),
        times.iter().max().expect("some")
    );
    for n in &nodes {
        assert_eq!(n.config()["source_revision"], last_good);
    }

    // Invalid configs (not TOML; a route to an unknown upstream) are refused by both.
    for (bad, failed) in [
        ("this is [[ not toml".to_string(), 1),
        (
            config(up.addr(), "vbad", &["/b4"]).replace("upstream = \"up\"", "upstream = \"nope\""),
            2,
        ),
    ] {
        etcd.put(KEY, &bad);
        for n in &nodes {
            until_named("refusal", WAIT, || {
                n.config()["reloads"]["failed"] == failed
            });
            let c = n.config();
            assert_eq!(c["source_revision"], last_good, "{c}");
            assert!(c["last_error"].is_string(), "{c}");
            assert_eq!(n.status("/b4"), Some(200));
        }
    }

    // An outage: requests keep being served by both nodes, none lost.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (addr, stop, ok, lost) = (n.gw.addr, stop.clone(), ok.clone(), lost.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match http_get(addr, "/a/x") {
                        Some((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => lost.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    etcd.kill();
    for n in &nodes {
        until_named("outage noticed", WAIT, || {
            n.said("the live config stays, retrying")
        });
    }
    etcd.restart();
    let r_final = etcd.put(KEY, &config(up.addr(), "vfinal", &["/c"]));
    for n in &nodes {
        until_named("change after restart", WAIT, || n.status("/c") == Some(200));
        assert_eq!(n.config()["source_revision"], r_final);
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let (ok, lost) = (ok.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    println!("during the etcd outage: {ok} requests served, {lost} lost");
    assert!(ok > 0);
    assert_eq!(lost, 0);
}

/// Who answered `GET /` on `addr` (the stub's `x-upstream`), or the status when nobody did.
fn who(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return "no connection".into();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-upstream")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| format!("status {}", out.get(9..12).unwrap_or("none")))
}

/// Waits until `n` answers in a row on `addr` all come from `names`.
fn until_only(addr: SocketAddr, names: &[&str], n: usize, what: &str) {
    let mut streak = 0;
    until_named(what, WAIT, || {
        if names.contains(&who(addr).as_str()) {
            streak += 1;
        } else {
            streak = 0;
        }
        streak >= n
    });
}

#[test]
fn two_nodes_send_traffic_to_the_endpoints_under_an_etcd_prefix() {
    let etcd = EtcdServer::start();
    let stubs = [stub("a"), stub("b"), stub("c")];
    etcd.put("/svc/api/a", &stubs[0].addr().to_string());
    let text = format!(
        "version = \"e\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [discovery]\ninitial_wait = \"5s\"\n[discovery.etcd]\nendpoints = [\"{}\"]\n\
         [[upstreams]]\nname = \"api\"\ndiscovery = \"etcd\"\netcd_prefix = \"/svc/api/\"\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"api\"\n",
        etcd.url()
    );
    etcd.put(KEY, &text);
    let profile = TempFile::new("etcd-profile.toml", "[workers]\ncount = 1\npin = false\n");
    let nodes = [
        Node::start(&etcd.url(), &profile),
        Node::start(&etcd.url(), &profile),
    ];
    for n in &nodes {
        until_only(n.gw.addr, &["a"], 5, "the first endpoint serves");
    }
    // Each round: an endpoint joins (timed until both nodes sent it a request), then leaves.
    let mut times = Vec::new();
    for i in 0..5 {
        let key = format!("/svc/api/c{i}");
        let t0 = Instant::now();
        etcd.put(&key, &stubs[2].addr().to_string());
        let mut seen = [false, false];
        while !seen.iter().all(|s| *s) {
            assert!(
                t0.elapsed() < WAIT,
                "endpoint {i} got no traffic on both nodes"
            );
            for (k, n) in nodes.iter().enumerate() {
                seen[k] = seen[k] || who(n.gw.addr) == "c";
            }
        }
        times.push(t0.elapsed());
        etcd.delete(&key);
        for n in &nodes {
            until_only(
                n.gw.addr,
                &["a"],
                10,
                "the deleted endpoint gets no more traffic",
            );
        }
    }
    println!(
        "etcd endpoint put to both nodes sending it traffic: median {:?} over {} changes (min {:?}, max {:?})",
        median(times.clone()),
        times.len(),
        times.iter().min().expect("some"),
        times.iter().max().expect("some")
    );
    // Replace the set; both nodes follow, with no reload.
    etcd.put("/svc/api/b", &stubs[1].addr().to_string());
    etcd.delete("/svc/api/a");
    for n in &nodes {
        until_only(n.gw.addr, &["b"], 10, "only b after a left");
        let c = n.config();
        assert_eq!(
            c["reloads"]["ok"], 0,
            "endpoint changes are not reloads: {c}"
        );
        let ups = http_get(n.admin, "/upstreams").expect("/upstreams").1;
        assert!(ups.contains("etcd"), "{ups}");
    }
}

#[test]
fn a_node_cut_off_from_etcd_catches_up_with_a_change_made_meanwhile() {
    let etcd = EtcdServer::start();
    let proxy = CutProxy::start(etcd.client_port);
    let up = stub("s");
    etcd.put(KEY, &config(up.addr(), "v1", &[]));
    let profile = TempFile::new("etcd-profile.toml", "[workers]\ncount = 1\npin = false\n");
    let node = Node::start(&proxy.url(), &profile);
    assert_eq!(node.status("/late"), Some(404));
    proxy.cut();
    until_named("cut noticed", WAIT, || {
        node.said("the live config stays, retrying")
    });
    // Written and compacted while the node cannot see it: no watch replays it.
    let rev = etcd.put(KEY, &config(up.addr(), "v2", &["/late"]));
    etcd.put("/unrelated", "x");
    etcd.compact(rev + 1);
    assert_eq!(node.status("/a/x"), Some(200), "served while cut off");
    proxy.restore();
    until_named("caught up", WAIT, || node.status("/late") == Some(200));
    assert_eq!(node.config()["source_revision"], rev);
}
