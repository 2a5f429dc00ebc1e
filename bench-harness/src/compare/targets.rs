//! The targets a comparison runs the same load against, each started by the harness with a
//! generated config and pinned with `taskset`: the upstream stub itself (`direct`), ringgate,
//! nginx and HAProxy. Configs are the plain, fair setup of each proxy for this job: one worker,
//! access logs off, HTTP/1.1 keep-alive to the upstream with connection reuse.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::procs::{free_port, wait_http_ok, which, Proc};

/// A kind of target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Straight to the upstream stub.
    Direct,
    /// ringgate (`ringgate proxy`).
    Ringgate,
    /// nginx.
    Nginx,
    /// HAProxy.
    Haproxy,
}

impl Kind {
    /// Parses a target name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(Kind::Direct),
            "ringgate" => Some(Kind::Ringgate),
            "nginx" => Some(Kind::Nginx),
            "haproxy" => Some(Kind::Haproxy),
            _ => None,
        }
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Ringgate => "ringgate",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }
}

/// Where and how targets are started.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Working directory for configs and logs.
    pub dir: PathBuf,
    /// CPUs for the proxies (`taskset -c` list).
    pub cpus: String,
    /// The upstream every proxy forwards to.
    pub upstream: SocketAddr,
    /// The ringgate binary.
    pub ringgate: Option<PathBuf>,
}

/// A running target.
#[derive(Debug)]
pub struct Running {
    /// Which.
    pub kind: Kind,
    /// Where the load goes.
    pub addr: SocketAddr,
    /// The process (none for `direct`).
    pub proc: Option<Proc>,
    /// The version or start line it reported.
    pub info: String,
}

impl Running {
    /// Processes to account as the target's CPU (empty for `direct`: the upstream is accounted
    /// separately).
    pub fn pids(&self) -> Vec<u32> {
        self.proc.as_ref().map(Proc::tree).unwrap_or_default()
    }

    /// Stops it.
    pub fn stop(self) {
        if let Some(p) = self.proc {
            p.stop(Duration::from_secs(5));
        }
    }
}

fn nginx_conf(dir: &Path, listen: SocketAddr, up: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
events {{ worker_connections 16384; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  keepalive_requests 1000000;\n  upstream up {{ server {up}; keepalive 256; keepalive_requests 1000000; }}\n\
  server {{\n    listen {listen} backlog=4096;\n    location / {{\n      proxy_pass http://up;\n\
      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n"
    )
}

fn haproxy_conf(listen: SocketAddr, up: SocketAddr) -> String {
    format!(
        "global\n  nbthread 1\n  maxconn 8000\n\
defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n  timeout connect 5s\n\
  timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 60s\n\
frontend fe\n  bind {listen}\n  default_backend be\n\
backend be\n  server s1 {up}\n"
    )
}

fn version(program: &Path, flag: &str) -> String {
    std::process::Command::new(program)
        .arg(flag)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn io_err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

/// Starts a target and waits until it answers through to the upstream.
pub fn start(kind: Kind, l: &Launch) -> std::io::Result<Running> {
    if kind == Kind::Direct {
        return Ok(Running {
            kind,
            addr: l.upstream,
            proc: None,
            info: "ringbench upstream".into(),
        });
    }
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let log = l.dir.join(format!("{}.log", kind.name()));
    let (proc, info) = match kind {
        Kind::Nginx => {
            let bin = which("nginx").ok_or_else(|| io_err("nginx is not installed".into()))?;
            let conf = l.dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(&l.dir, addr, l.upstream))?;
            let args = vec![
                "-p".into(),
                l.dir.display().to_string(),
                "-e".into(),
                l.dir.join("nginx-error.log").display().to_string(),
                "-c".into(),
                conf.display().to_string(),
            ];
            let p = Proc::start("nginx", &l.cpus, &bin.display().to_string(), &args, &log)?;
            (p, version(&bin, "-v"))
        }
        Kind::Haproxy => {
            let bin = which("haproxy").ok_or_else(|| io_err("haproxy is not installed".into()))?;
            let conf = l.dir.join("haproxy.cfg");
            std::fs::write(&conf, haproxy_conf(addr, l.upstream))?;
            let args = vec!["-f".into(), conf.display().to_string(), "-db".into()];
            let p = Proc::start("haproxy", &l.cpus, &bin.display().to_string(), &args, &log)?;
            (p, version(&bin, "-v"))
        }
        Kind::Ringgate => {
            let bin = l.ringgate.clone().ok_or_else(|| {
                io_err("ringgate binary not found (build it or pass --ringgate)".into())
            })?;
            let profile = super::procs::pinned_profile(&l.dir, &l.cpus)?;
            let args = vec![
                "proxy".into(),
                "--listen".into(),
                addr.to_string(),
                "--to".into(),
                l.upstream.to_string(),
                "--profile".into(),
                profile.display().to_string(),
            ];
            let p = Proc::start("ringgate", &l.cpus, &bin.display().to_string(), &args, &log)?;
            (p, version(&bin, "--version"))
        }
        Kind::Direct => return Err(io_err("direct has no process to start".into())),
    };
    if let Err(e) = wait_http_ok(addr, "/", Duration::from_secs(15)) {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        proc.stop(Duration::from_secs(2));
        return Err(io_err(format!(
            "{} did not come up: {e}; log: {}",
            kind.name(),
            tail.trim()
        )));
    }
    let info = match kind {
        Kind::Ringgate => std::fs::read_to_string(&log)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("ringgate:"))
                    .map(str::to_string)
            })
            .unwrap_or(info),
        _ => info,
    };
    Ok(Running {
        kind,
        addr,
        proc: Some(proc),
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_configs_forward_with_keep_alive() {
        let up: SocketAddr = "127.0.0.1:9000".parse().unwrap_or_else(|_| unreachable!());
        let l: SocketAddr = "127.0.0.1:9001".parse().unwrap_or_else(|_| unreachable!());
        let n = nginx_conf(Path::new("/tmp/x"), l, up);
        assert!(n.contains("server 127.0.0.1:9000; keepalive 256;"));
        assert!(n.contains("proxy_set_header Connection \"\";"));
        assert!(n.contains("access_log off;"));
        let h = haproxy_conf(l, up);
        assert!(h.contains("bind 127.0.0.1:9001"));
        assert!(h.contains("http-reuse always"));
    }
}
