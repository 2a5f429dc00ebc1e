//! Child processes of a comparison: started pinned with `taskset`, found with their
//! descendants (nginx's workers) for CPU accounting, and stopped by PID, politely first.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// A started process tree.
#[derive(Debug)]
pub struct Proc {
    /// Display name.
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `program args` pinned to `cpus` (via `taskset -c`), output to `log`.
    pub fn start(
        name: &str,
        cpus: &str,
        program: &str,
        args: &[String],
        log: &std::path::Path,
    ) -> io::Result<Self> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let mut cmd = if cpus.is_empty() {
            Command::new(program)
        } else {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(program);
            c
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    /// The main PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The main PID and all its descendants.
    pub fn tree(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        pids
    }

    /// True while the main process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after `patience`; waits for the exit.
    pub fn stop(mut self, patience: Duration) {
        let tree = self.tree();
        let _ = sys::signal(self.pid(), libc::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < patience {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // Descendants (nginx workers) normally exit with their master; make sure.
        for pid in tree.into_iter().skip(1) {
            if std::fs::metadata(format!("/proc/{pid}")).is_ok() {
                let _ = sys::signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// Direct children of `pid`, from /proc/PID/task/*/children.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// A loopback port free right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `addr` answers `GET path` with a 2xx, or `timeout` passes.
pub fn wait_http_ok(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<()> {
    use std::io::{Read, Write};
    let t0 = Instant::now();
    let mut last = io::Error::new(io::ErrorKind::TimedOut, "never answered");
    while t0.elapsed() < timeout {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req =
                    format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
                let mut buf = [0u8; 64];
                match s.write_all(req.as_bytes()).and_then(|_| s.read(&mut buf)) {
                    Ok(n) if n >= 12 && buf[9] == b'2' => return Ok(()),
                    Ok(n) => {
                        last = io::Error::other(format!(
                            "answered {:?}",
                            String::from_utf8_lossy(&buf[..n.min(12)])
                        ))
                    }
                    Err(e) => last = e,
                }
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last)
}

/// Writes `ringgate-profile.toml` into `dir`: one worker per CPU of the `taskset -c` list
/// `cpus` (none listed: the profile's default placement); returns its path.
pub fn pinned_profile(dir: &std::path::Path, cpus: &str) -> io::Result<std::path::PathBuf> {
    let profile = dir.join("ringgate-profile.toml");
    let list: Vec<&str> = cpus.split(',').filter(|c| !c.is_empty()).collect();
    std::fs::write(
        &profile,
        format!("[workers]\ncpus = [{}]\n", list.join(", ")),
    )?;
    Ok(profile)
}

/// Finds an executable on PATH (or takes a path as is).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}
