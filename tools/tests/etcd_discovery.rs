//! The etcd discovery source against a real etcd: the keys under a prefix are an upstream's
//! endpoints, listed then watched with revisions; a watch left behind a compaction lists again;
//! an outage is reported and the last set stays; after a restart the watch resumes.

use ringgate::config::discovery::{DiscoveryKind, EtcdSettings};
use ringgate::discovery::{EndpointSet, Sink, Watch};
use ringgate_testkit::etcd::{CutProxy, EtcdServer, EtcdTls};
use ringgate_testkit::files::TempFile;
use ringgate_testkit::pki::Pki;
use ringgate_testkit::wait::until_named;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Remembers what the source said.
#[derive(Default)]
struct Recorder {
    updates: Mutex<Vec<(String, EndpointSet, Instant)>>,
    failures: Mutex<Vec<(String, String)>>,
}

impl Sink for Recorder {
    fn update(&self, upstream: &str, set: EndpointSet) {
        self.updates
            .lock()
            .expect("lock")
            .push((upstream.to_string(), set, Instant::now()));
    }
    fn failed(&self, upstream: &str, source: DiscoveryKind, why: String) {
        assert_eq!(source, DiscoveryKind::Etcd);
        eprintln!("failed: {upstream}: {why}");
        self.failures
            .lock()
            .expect("lock")
            .push((upstream.to_string(), why));
    }
}

impl Recorder {
    /// The last set reported: sorted addresses and the revision.
    fn last(&self) -> Option<(Vec<SocketAddr>, Option<i64>)> {
        self.updates.lock().expect("lock").last().map(|(_, s, _)| {
            let mut a: Vec<SocketAddr> = s.endpoints.iter().map(|f| f.addr).collect();
            a.sort();
            (a, s.revision)
        })
    }
    fn failures(&self) -> usize {
        self.failures.lock().expect("lock").len()
    }
    fn failed_with(&self, what: &str) -> bool {
        self.failures
            .lock()
            .expect("lock")
            .iter()
            .any(|(_, w)| w.contains(what))
    }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = list.iter().map(|a| a.parse().expect("addr")).collect();
    v.sort();
    v
}

fn settings(url: &str) -> EtcdSettings {
    // A dead member first: the source must fail over to the live one.
    EtcdSettings {
        endpoints: vec!["http://127.0.0.1:1".into(), url.to_string()],
        username: None,
        password_file: None,
        ca: None,
        cert: None,
        key: None,
        timeout: Duration::from_secs(2),
    }
}

fn start(url: &str, prefix: &str) -> (Arc<Recorder>, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    start_with(settings(url), prefix)
}

fn start_with(
    settings: EtcdSettings,
    prefix: &str,
) -> (Arc<Recorder>, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let rec = Arc::new(Recorder::default());
    let stop = Arc::new(AtomicBool::new(false));
    let watch = Watch {
        upstream: "api".into(),
        kind: DiscoveryKind::Etcd,
        targets: vec![prefix.into()],
    };
    let h = ringgate::discovery::etcd::spawn(&settings, vec![watch], rec.clone(), stop.clone())
        .expect("spawn");
    (rec, stop, h)
}

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn keys_under_a_prefix_are_listed_then_watched_with_their_revisions() {
    let etcd = EtcdServer::start();
    etcd.put("/svc/api/a", "127.0.0.1:7001");
    etcd.put("/svc/api/b", r#"{"address":"127.0.0.1:7002","weight":5}"#);
    // The revision reported is the cluster's as read, whichever key changed last.
    let r1 = etcd.put("/svc/other/x", "127.0.0.1:9999");
    let (rec, stop, h) = start(&etcd.url(), "/svc/api/");
    until_named("first list", WAIT, || {
        rec.last() == Some((addrs(&["127.0.0.1:7001", "127.0.0.1:7002"]), Some(r1)))
    });
    let weights: Vec<u32> = {
        let u = rec.updates.lock().expect("lock");
        let mut w: Vec<(SocketAddr, u32)> = u[u.len() - 1]
            .1
            .endpoints
            .iter()
            .map(|f| (f.addr, f.weight))
            .collect();
        w.sort();
        w.into_iter().map(|(_, w)| w).collect()
    };
    assert_eq!(weights, vec![1, 5]);
    let mut times = Vec::new();
    for i in 0..5 {
        let t0 = Instant::now();
        let rev = etcd.put(
            &format!("/svc/api/n{i}"),
            &format!("127.0.0.1:{}", 7100 + i),
        );
        until_named("put seen", WAIT, || {
            rec.last().is_some_and(|(_, r)| r == Some(rev))
        });
        // When the sink was told, not when this loop looked.
        let seen = rec
            .updates
            .lock()
            .expect("lock")
            .last()
            .map(|u| u.2)
            .expect("update");
        times.push(seen - t0);
        let rev = etcd.delete(&format!("/svc/api/n{i}"));
        until_named("delete seen", WAIT, || {
            rec.last() == Some((addrs(&["127.0.0.1:7001", "127.0.0.1:7002"]), Some(rev)))
        });
    }
    times.sort();
    println!(
        "etcd endpoint change to source update: median {:?} over {} puts (min {:?}, max {:?})",
        times[times.len() / 2],
        times.len(),
        times[0],
        times[times.len() - 1]
    );
    // A bad value is left out and reported, not fatal; deleting every key is a failure, never
    // an empty set.
    let rev = etcd.put("/svc/api/bad", "not-an-address");
    until_named("bad value reported", WAIT, || {
        rec.failed_with("/svc/api/bad")
    });
    assert_eq!(rec.last().and_then(|l| l.1), Some(rev));
    etcd.delete("/svc/api/bad");
    etcd.delete("/svc/api/a");
    let before = rec.updates.lock().expect("lock").len();
    etcd.delete("/svc/api/b");
    until_named("empty prefix reported", WAIT, || {
        rec.failed_with("no endpoints under /svc/api/")
    });
    assert!(rec
        .updates
        .lock()
        .expect("lock")
        .iter()
        .skip(before)
        .all(|(_, s, _)| !s.endpoints.is_empty()));
    // The thread notices `stop` while its watch is open and idle (reads wake up to check it).
    stop.store(true, Ordering::Relaxed);
    until_named("the source thread ends", Duration::from_secs(5), || {
        h.is_finished()
    });
    h.join().expect("source thread");
}

#[test]
fn a_watch_behind_a_compaction_lists_again() {
    let etcd = EtcdServer::start();
    let proxy = CutProxy::start(etcd.client_port);
    let r1 = etcd.put("/svc/api/a", "127.0.0.1:7001");
    let (rec, stop, h) = start(&proxy.url(), "/svc/api/");
    until_named("first list", WAIT, || {
        rec.last() == Some((addrs(&["127.0.0.1:7001"]), Some(r1)))
    });
    // Cut the source off, change the keys and compact the history it would resume from.
    let failures_before = rec.failures();
    proxy.cut();
    until_named("cut reported", WAIT, || rec.failures() > failures_before);
    etcd.put("/svc/api/b", "127.0.0.1:7002");
    etcd.delete("/svc/api/a");
    let r4 = etcd.put("/svc/api/c", "127.0.0.1:7003");
    etcd.compact(r4);
    proxy.restore();
    until_named("state after compaction", WAIT, || {
        rec.last() == Some((addrs(&["127.0.0.1:7002", "127.0.0.1:7003"]), Some(r4)))
    });
    stop.store(true, Ordering::Relaxed);
    h.join().expect("source thread");
}

#[test]
fn an_outage_keeps_the_last_set_and_the_watch_resumes_after_a_restart() {
    let mut etcd = EtcdServer::start();
    let r1 = etcd.put("/svc/api/a", "127.0.0.1:7001");
    let (rec, stop, h) = start(&etcd.url(), "/svc/api/");
    until_named("first list", WAIT, || {
        rec.last() == Some((addrs(&["127.0.0.1:7001"]), Some(r1)))
    });
    let updates_before = rec.updates.lock().expect("lock").len();
    let failures_before = rec.failures();
    etcd.kill();
    until_named("outage reported", WAIT, || {
        rec.failures() > failures_before + 1
    });
    assert_eq!(
        rec.updates.lock().expect("lock").len(),
        updates_before,
        "no set replaces the last one"
    );
    etcd.restart();
    let r2 = etcd.put("/svc/api/b", "127.0.0.1:7002");
    until_named("change after restart", WAIT, || {
        rec.last() == Some((addrs(&["127.0.0.1:7001", "127.0.0.1:7002"]), Some(r2)))
    });
    stop.store(true, Ordering::Relaxed);
    h.join().expect("source thread");
}

#[test]
fn tls_with_a_client_certificate_and_a_password_reaches_a_locked_cluster() {
    let pki = Pki::new();
    let server = pki.server("etcd", &["127.0.0.1"]);
    // etcd 3.4 refuses gateway requests from a client certificate with a common name when it
    // checks client certificates (it would not use the name for auth): one without a CN.
    let client = pki.client("etcd-client", "", None, true);
    // etcd's gateway calls its own gRPC port with the server certificate as a client one: the
    // CA bundle it trusts for clients must hold the server CA too.
    let bundle = [pki.server_ca_path(), pki.client_ca_path()]
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("ca"))
        .collect::<String>();
    let both_cas = TempFile::new("etcd-cas.pem", &bundle);
    let mut etcd = EtcdServer::start_with(Some(EtcdTls {
        port: 0,
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_ca: both_cas.path().to_path_buf(),
    }));
    etcd.enable_auth("s3cret");
    let rev = etcd.put("/svc/api/a", "127.0.0.1:7001");
    let password = TempFile::new("etcd-password", "s3cret\n");
    let wrong = TempFile::new("etcd-wrong", "guess\n");
    let full = EtcdSettings {
        endpoints: vec![etcd.https_url().expect("https")],
        username: Some("root".into()),
        password_file: Some(password.arg().into()),
        ca: Some(pki.server_ca_path().to_string_lossy().into_owned()),
        cert: Some(client.cert.to_string_lossy().into_owned()),
        key: Some(client.key.to_string_lossy().into_owned()),
        timeout: Duration::from_secs(2),
    };
    let (rec, stop, h) = start_with(full.clone(), "/svc/api/");
    until_named("listed over mTLS with a token", WAIT, || {
        rec.last() == Some((addrs(&["127.0.0.1:7001"]), Some(rev)))
    });
    let rev = etcd.put("/svc/api/b", "127.0.0.1:7002");
    until_named("watched over mTLS with a token", WAIT, || {
        rec.last().is_some_and(|(_, r)| r == Some(rev))
    });
    // Tokens do not survive a restart: the source authenticates again and resumes.
    let failures_before = rec.failures();
    etcd.kill();
    until_named("outage reported", WAIT, || rec.failures() > failures_before);
    etcd.restart();
    let rev = etcd.put("/svc/api/c", "127.0.0.1:7003");
    until_named("a change after the restart, with a new token", WAIT, || {
        rec.last().is_some_and(|(_, r)| r == Some(rev))
    });
    stop.store(true, Ordering::Relaxed);
    h.join().expect("source thread");

    // Without the client certificate, or with a wrong password: failures, never a set.
    for (what, settings) in [
        (
            "no client certificate",
            EtcdSettings {
                cert: None,
                key: None,
                ..full.clone()
            },
        ),
        (
            "wrong password",
            EtcdSettings {
                password_file: Some(wrong.arg().into()),
                ..full.clone()
            },
        ),
    ] {
        let (rec, stop, h) = start_with(settings, "/svc/api/");
        until_named(what, WAIT, || rec.failures() > 0);
        assert!(rec.last().is_none(), "{what}");
        eprintln!("{what}: {:?}", rec.failures.lock().expect("lock")[0].1);
        stop.store(true, Ordering::Relaxed);
        h.join().expect("source thread");
    }
}
