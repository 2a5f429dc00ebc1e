//! A throwaway `redis-server` on a free loopback port, for the rate-limit store tests: started
//! without persistence, killed on drop, and restartable on the same port (to test what a node
//! does when Redis restarts and loses its script cache and keys). It can also run as a one-node
//! Redis Cluster owning every slot, to drive the cluster client against a real server.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) `redis-server` child.
pub struct RedisServer {
    /// The loopback port it listens on (kept across restarts).
    pub port: u16,
    child: Option<Child>,
    /// Cluster mode: the node's config file (its slots survive a restart).
    cluster_conf: Option<PathBuf>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        Self::start_mode(false)
    }

    /// Starts a one-node Redis Cluster (the node owns all 16384 slots) and waits until the
    /// cluster says it is ok.
    pub fn start_cluster() -> RedisServer {
        Self::start_mode(true)
    }

    fn start_mode(cluster: bool) -> RedisServer {
        let mut last = String::new();
        // Picking a free port and binding it later races with other tests: try a few ports.
        for _ in 0..5 {
            let port = free_port();
            let cluster_conf = cluster.then(|| {
                std::env::temp_dir().join(format!(
                    "ringgate-redis-{}-{port}-nodes.conf",
                    std::process::id()
                ))
            });
            let mut server = RedisServer {
                port,
                child: None,
                cluster_conf,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Kills the server and starts a fresh one (empty, no scripts) on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        // The old listener may take a moment to be released.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}: {last}", self.port);
    }

    /// Kills the server (if running) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()]);
        if let Some(conf) = &self.cluster_conf {
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &conf.to_string_lossy()])
                .args(["--cluster-announce-ip", "127.0.0.1"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server (is it installed?): {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut slots_added = false;
        loop {
            let ready = if self.cluster_conf.is_none() {
                roundtrip(self.port, &["PING"], b"+PONG\r\n")
            } else if !slots_added {
                // "+OK", or an error if a restarted node still owns them: either way, on.
                slots_added = roundtrip(
                    self.port,
                    &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"],
                    b"\r\n",
                );
                false
            } else {
                roundtrip(self.port, &["CLUSTER", "INFO"], b"cluster_state:ok")
            };
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited: {status}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("not ready in time".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(conf) = &self.cluster_conf {
            let _ = std::fs::remove_file(conf);
        }
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Sends one command to the server on `port` and tells whether its reply contains `expect`
/// (read until it shows up, the connection closes, or half a second passes).
fn roundtrip(port: u16, args: &[&str], expect: &[u8]) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(expect.len()).any(|w| w == expect) {
            return true;
        }
    }
    false
}
