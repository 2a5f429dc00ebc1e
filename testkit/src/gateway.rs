//! Gateways for tests: in-process (fast, shares the test's process) or as a child process.

use crate::files::TempFile;
use ringgate::server::{start, RunningGateway};
use ringgate_core::profile::PerfProfile;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The profile tests run with: one unpinned worker (CI has 2 cores and runs tests in parallel).
pub fn test_profile() -> PerfProfile {
    let mut p = PerfProfile::default();
    p.workers.count = 1;
    p.workers.pin = false;
    p
}

/// A gateway running in this process; stopped (drained) on drop.
pub struct TestGateway {
    /// Its first listen address.
    pub addr: SocketAddr,
    gw: Option<RunningGateway>,
}

impl TestGateway {
    /// The running gateway (to publish snapshots, read the start line...).
    pub fn inner(&self) -> &RunningGateway {
        self.gw.as_ref().expect("gateway is running until drop")
    }

    /// The value of the first metric sample line starting with `name` (labels included), as
    /// `/metrics` would render it; NaN when there is none.
    pub fn metric(&self, name: &str) -> f64 {
        let workers = self.inner().hub.collect(Duration::from_millis(500));
        let mut out = String::new();
        {
            let reg = ringgate_http::metrics::Registry::global()
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            ringgate_http::metrics::render_prometheus(&mut out, &reg, &workers);
        }
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(gw) = self.gw.take() {
            gw.stop();
        }
    }
}

/// Starts a gateway from config text (listener addresses in it are replaced by 127.0.0.1:0 when
/// they say `AUTO`).
pub fn gateway(config: &str) -> TestGateway {
    gateway_with(config, test_profile())
}

/// Starts a gateway from config text with a given profile.
pub fn gateway_with(config: &str, profile: PerfProfile) -> TestGateway {
    let snapshot = ringgate::snapshot_from_text(config).expect("test config is valid");
    let gw = start(snapshot, &profile).expect("gateway starts");
    TestGateway {
        addr: gw.addrs[0],
        gw: Some(gw),
    }
}

/// Config text: one listener on an ephemeral port, the given upstreams, and the given routes
/// (TOML `[[routes]]` text).
pub fn config(upstreams: &[(&str, &[SocketAddr])], routes: &str) -> String {
    let mut s = String::from("version = \"test\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n");
    for (name, eps) in upstreams {
        let list: Vec<String> = eps.iter().map(|a| format!("\"{a}\"")).collect();
        s.push_str(&format!(
            "[[upstreams]]\nname = \"{name}\"\nendpoints = [{}]\n",
            list.join(", ")
        ));
    }
    s.push_str(routes);
    s
}

/// Config text routing everything to one upstream `up`.
pub fn catch_all(up: SocketAddr) -> String {
    config(
        &[("up", &[up])],
        "[[routes]]\nid = \"all\"\npath = { prefix = \"/\" }\nupstream = \"up\"\n",
    )
}

/// `bin serve` as a child on config text `config`, with a profile of `workers` unpinned workers
/// (files named after `name`); the two files are returned with it and must outlive it.
pub fn serve_child(
    bin: &str,
    name: &str,
    config: &str,
    workers: usize,
) -> (ChildGateway, (TempFile, TempFile)) {
    let cfg = TempFile::new(&format!("{name}.toml"), config);
    let profile = TempFile::new(
        &format!("{name}-profile.toml"),
        &format!("[workers]\ncount = {workers}\npin = false\n"),
    );
    let gw = ChildGateway::spawn(
        bin,
        &["serve", "--config", cfg.arg(), "--profile", profile.arg()],
    );
    (gw, (cfg, profile))
}

/// A loopback address on a [`free_port`] (for an `[admin]` listener the test reads).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A loopback address whose connects are refused every time, for an upstream that is down:
/// port 1 (tcpmux, unused) is below the range the OS hands out, so no test or parallel run takes
/// it the way a released [`free_port`] can be taken between its release and the connect.
pub fn refusing_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

/// A free loopback port (bound then released: a tiny race, fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The `ringgate` binary running as a child process; killed on drop if still running.
pub struct ChildGateway {
    /// The child.
    pub child: Child,
    /// Where it listens (read from its start line).
    pub addr: SocketAddr,
    /// Its start line.
    pub start_line: String,
    /// The rest of its standard output, line by line.
    pub stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl ChildGateway {
    /// Starts `bin args...` (which should listen on port 0) and reads the listen address from
    /// the start line it prints first, so no port is guessed and none can be taken in between.
    pub fn spawn(bin: &str, args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringgate");
        let out = child.stdout.take().expect("piped stdout");
        let mut stdout = std::io::BufReader::new(out).lines();
        let start_line = stdout.next().and_then(Result::ok).unwrap_or_else(|| {
            // The process ended before its start line: what it said on stderr is why.
            let mut why = String::new();
            if let Some(mut err) = child.stderr.take() {
                use std::io::Read;
                let _ = err.read_to_string(&mut why);
            }
            let _ = child.wait();
            panic!("no start line from {bin} {args:?}; stderr: {why}")
        });
        let addr = start_line
            .split("listen=[")
            .nth(1)
            .and_then(|rest| rest.split([',', ']']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen address in {start_line:?}"));
        let t0 = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "gateway child did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ChildGateway {
            child,
            addr,
            start_line,
            stdout,
        }
    }

    /// `bin proxy --listen 127.0.0.1:0 --to UP [extra...]`: the one-line proxy as a child.
    pub fn proxy(bin: &str, up: SocketAddr, extra: &[&str]) -> Self {
        let to = up.to_string();
        let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--to", to.as_str()];
        args.extend_from_slice(extra);
        Self::spawn(bin, &args)
    }

    /// Waits (up to `within`) for the child to exit after a drain and checks it went well: a
    /// successful exit, `in_flight` requests in flight at the signal, all drained, none aborted,
    /// and its port no longer listening.
    pub fn assert_drained(self, in_flight: usize, within: Duration) {
        let addr = self.addr;
        let (status, stderr) = self.wait_exit(within);
        assert!(
            status.is_some_and(|s| s.success()),
            "exit: {status:?} {stderr}"
        );
        let line = format!("{in_flight} in flight at signal, {in_flight} drained, 0 aborted");
        assert!(stderr.contains(&line), "{stderr}");
        assert!(TcpStream::connect(addr).is_err(), "no longer listening");
    }

    /// Peak resident memory of the child so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    /// Current resident memory of the child (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// Sends a signal to the child.
    pub fn signal(&self, sig: i32) {
        // The `kill` command keeps this crate free of unsafe FFI; the pid is our own child's.
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the child to exit (bounded); returns its exit status and stderr.
    pub fn wait_exit(mut self, within: Duration) -> (Option<std::process::ExitStatus>, String) {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return (Some(st), err);
            }
            if t0.elapsed() > within {
                return (None, String::new());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
