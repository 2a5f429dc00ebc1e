//! A throwaway one-member etcd (`/usr/bin/etcd`, v3.4) on free loopback ports with a temporary
//! data directory, for the discovery and config-source tests: started and waited for with a
//! deadline, killed and restarted on the same ports and data (an outage), stopped on drop.
//!
//! The helpers that change keys (put, delete, compact) talk to etcd's HTTP/JSON gateway with a
//! plain socket of their own, not with the gateway's etcd client under test.

use crate::gateway::free_port;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh member may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// TLS for an extra client listener: `https://127.0.0.1:{port}`, a server certificate, and
/// the CA client certificates must chain to (etcd's `--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The https client port.
    pub port: u16,
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA of accepted client certificates.
    pub client_ca: PathBuf,
}

/// A running (or killed) etcd member.
pub struct EtcdServer {
    /// The client port (kept across restarts), cleartext.
    pub client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    tls: Option<EtcdTls>,
    /// The token the helpers send once authentication is on.
    token: Option<String>,
    password: Option<String>,
}

impl EtcdServer {
    /// Starts etcd on free ports and waits until it answers.
    pub fn start() -> EtcdServer {
        Self::start_with(None)
    }

    /// Starts etcd with, besides its cleartext client port, an https one (`tls`; its port is
    /// picked here).
    pub fn start_with(tls: Option<EtcdTls>) -> EtcdServer {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut last = String::new();
        // A free port can be taken between picking and binding: try a few.
        for _ in 0..5 {
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let dir =
                std::env::temp_dir().join(format!("ringgate-etcd-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut s = EtcdServer {
                client_port: free_port(),
                peer_port: free_port(),
                dir,
                child: None,
                tls: tls.clone().map(|t| EtcdTls {
                    port: free_port(),
                    ..t
                }),
                token: None,
                password: None,
            };
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => last = e,
            }
        }
        panic!("etcd did not start: {last}");
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The https client URL (with [`start_with`](Self::start_with) TLS).
    pub fn https_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|t| format!("https://127.0.0.1:{}", t.port))
    }

    /// Turns authentication on with a `root` user whose password is `password`; the helpers
    /// authenticate from then on.
    pub fn enable_auth(&mut self, password: &str) {
        let user = format!(r#"{{"name":"root","password":"{password}"}}"#);
        for (path, body) in [
            ("/v3/auth/role/add", r#"{"name":"root"}"#.to_string()),
            ("/v3/auth/user/add", user.clone()),
            (
                "/v3/auth/user/grant",
                r#"{"user":"root","role":"root"}"#.to_string(),
            ),
            ("/v3/auth/enable", "{}".to_string()),
        ] {
            self.post(path, &body)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        self.password = Some(password.to_string());
        self.authenticate();
    }

    fn authenticate(&mut self) {
        let Some(password) = &self.password else {
            return;
        };
        let user = format!(r#"{{"name":"root","password":"{password}"}}"#);
        self.token = None;
        let answer = self
            .post("/v3/auth/authenticate", &user)
            .expect("authenticate");
        let token = answer
            .split("\"token\":\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .expect("a token");
        self.token = Some(token.to_string());
    }

    /// Kills the member (SIGKILL: an outage, not a clean stop) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data (the keys and revisions survive).
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => {
                    self.authenticate();
                    return;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd did not restart on port {}: {last}", self.client_port);
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut client = self.url();
        if let Some(t) = &self.tls {
            client.push_str(&format!(",https://127.0.0.1:{}", t.port));
        }
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut child = Command::new("/usr/bin/etcd")
            .args(["--name", "t"])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--log-level", "error", "--logger", "zap"])
            .args(self.tls.iter().flat_map(|t| {
                [
                    "--cert-file".into(),
                    t.cert.clone().into_os_string(),
                    "--key-file".into(),
                    t.key.clone().into_os_string(),
                    "--trusted-ca-file".into(),
                    t.client_ca.clone().into_os_string(),
                    "--client-cert-auth".into(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn /usr/bin/etcd (is etcd-server installed?): {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Up: it reads, or says the (old) token is no longer valid.
            let answer = self.post("/v3/kv/range", r#"{"key":"AA=="}"#);
            if answer.is_ok() || answer.is_err_and(|o| o.starts_with("HTTP/1.1 401")) {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("etcd exited: {st}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("etcd did not answer in time".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// POSTs `body` to `path`; the response body of a 200 answer.
    pub fn post(&self, path: &str, body: &str) -> Result<String, String> {
        let mut s =
            TcpStream::connect(("127.0.0.1", self.client_port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let auth = self
            .token
            .as_ref()
            .map_or(String::new(), |t| format!("authorization: {t}\r\n"));
        write!(
            s,
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        let ok = out.starts_with("HTTP/1.1 200");
        let body = out
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        if ok {
            Ok(body)
        } else {
            Err(out)
        }
    }

    /// Sets `key` to `value`; returns the new revision.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            B64.encode(key),
            B64.encode(value)
        );
        revision(&self.post("/v3/kv/put", &body).expect("etcd put"))
    }

    /// Deletes `key`; returns the new revision.
    pub fn delete(&self, key: &str) -> i64 {
        let body = format!(r#"{{"key":"{}"}}"#, B64.encode(key));
        revision(&self.post("/v3/kv/deleterange", &body).expect("etcd delete"))
    }

    /// Compacts the history up to `revision` (a watch resuming before it is cancelled).
    pub fn compact(&self, revision: i64) {
        self.post(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )
        .expect("etcd compact");
    }
}

/// The `header.revision` of an answer (etcd writes it as a JSON string).
fn revision(body: &str) -> i64 {
    body.split("\"revision\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {body:?}"))
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP relay in front of etcd that a test can cut (every connection closed, new ones
/// refused) and restore, to leave a client behind while etcd itself keeps running (so the test
/// can write and compact meanwhile).
pub struct CutProxy {
    /// Where clients connect.
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl CutProxy {
    /// Relays a free loopback port to `target_port`.
    pub fn start(target_port: u16) -> CutProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, stop2, open2) = (cut.clone(), stop.clone(), open.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if cut2.load(Ordering::Relaxed) {
                    continue; // dropped: the client sees the connection closed
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let mut list = open2.lock().unwrap_or_else(|p| p.into_inner());
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        list.push(c);
                    }
                }
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| a.ok().zip(b.ok()))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CutProxy {
            port,
            cut,
            stop,
            open,
        }
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes every relayed connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut list = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for s in list.drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Relays again.
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
