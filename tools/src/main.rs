//! The `ringgate` binary: parse the command line, load config and profile, start, wait, drain.

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use ringgate::admin::AdminServer;
use ringgate::config::{ListenerConfig, PathConfig, RawConfig, RouteConfig, UpstreamConfig};
use ringgate::contenthash::config_hash;
use ringgate::control::{ConfigSource, Control};
use ringgate::server::{start, start_with, RunningGateway};
use ringgate::snapshot::{text_hash, Snapshot};
use ringgate_core::handoff::{take_over, HandoffServer, ListenerGroup};
use ringgate_core::profile::PerfProfile;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "An io_uring, thread-per-core API gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create an API key: prints the secret once, and the entry for the key file.
    Create {
        /// The client the key belongs to.
        #[arg(long)]
        client_id: String,
        /// Its tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Scopes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Rate-limit tier.
        #[arg(long)]
        tier: Option<String>,
        /// Expiry, unix seconds.
        #[arg(long)]
        expires_at: Option<u64>,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve a config file.
    Serve {
        /// The config file (TOML).
        #[arg(long)]
        config: String,
        /// A perf profile file, or a preset name (`default`, `low-latency`).
        #[arg(long)]
        profile: Option<String>,
        /// Offer the listening sockets to a successor on this Unix socket (zero-downtime
        /// upgrade): a new process started with `--takeover` on the same path takes them, and
        /// this one drains and exits.
        #[arg(long)]
        handoff: Option<PathBuf>,
        /// Take the listening sockets from the process offering them on `--handoff`.
        #[arg(long, requires = "handoff")]
        takeover: bool,
    },
    /// Ask a running gateway to reload its config (through its admin API).
    Reload {
        /// The admin API address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// The admin bearer token, if the gateway has one.
        #[arg(long)]
        token: Option<String>,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Mint a signed JWT (for tests and local development).
    Token {
        /// The private key (PEM file: RSA, EC P-256 or Ed25519).
        #[arg(long)]
        key: String,
        /// The algorithm (RS256, PS256, ES256, EdDSA...).
        #[arg(long, default_value = "RS256")]
        alg: String,
        /// The key id to put in the header.
        #[arg(long)]
        kid: Option<String>,
        /// The claims, as a JSON object.
        #[arg(long, default_value = "{}")]
        claims: String,
        /// Set `exp` this far in the future (e.g. 1h), unless the claims have one.
        #[arg(long, default_value = "1h")]
        expires_in: String,
    },
    /// Validate a config (and profile), print a summary, exit non-zero listing every error.
    Check {
        /// The config file (TOML).
        #[arg(long)]
        config: String,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Run the bundled example config against two built-in demo upstreams.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
    /// A whole reverse proxy from one line: every request on LISTEN goes to the --to endpoints.
    Proxy {
        /// Where to listen (ip:port).
        #[arg(long)]
        listen: SocketAddr,
        /// Upstream endpoints, comma-separated host:port list (round-robin).
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_profile(arg: Option<&str>) -> Result<PerfProfile, Box<dyn std::error::Error>> {
    Ok(match arg {
        Some(p) => PerfProfile::load(p)?,
        None => PerfProfile::default(),
    })
}

fn run(cmd: Cmd) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cmd {
        Cmd::Serve {
            config,
            profile,
            handoff,
            takeover,
        } => {
            let profile = load_profile(profile.as_deref())?;
            let text = std::fs::read_to_string(&config)
                .map_err(|e| format!("cannot read config {config}: {e}"))?;
            let raw = RawConfig::parse(&text)?;
            let snapshot = Snapshot::build(&raw, config_hash(&text, &raw))?;
            // A busy admin port fails the start like a busy listener, before any traffic is
            // taken. (A takeover binds it later: the previous process holds it until then.)
            let admin_listener = if takeover { None } else { bind_admin(&raw)? };
            let (gw, taken) = if takeover {
                let path = handoff.clone().ok_or("--takeover needs --handoff")?;
                let t = take_over(&path, Duration::from_secs(10))?;
                let groups = t
                    .groups
                    .iter()
                    .map(|(a, l)| (*a, l.iter().filter_map(|x| x.try_clone().ok()).collect()))
                    .collect();
                let gw = start_with(snapshot, &profile, Some(groups))?;
                (gw, Some(t))
            } else {
                (start(snapshot, &profile)?, None)
            };
            println!("{}", gw.start_line);
            if let Some(t) = taken {
                // Our workers accept on the inherited sockets: the old process may now drain.
                t.ready()?;
                eprintln!("ringgate: took over the listening sockets; the previous process drains");
            }
            let control = Control::new(ConfigSource::File(config.into()), raw, &gw);
            run_until_stopped(gw, control, admin_listener, handoff, takeover)
        }
        Cmd::Reload { admin, token } => reload(admin, token.as_deref()),
        Cmd::Keys {
            cmd:
                KeysCmd::Create {
                    client_id,
                    tenant,
                    scopes,
                    tier,
                    expires_at,
                },
        } => {
            let (secret, entry) = ringgate_policies::auth::generate_key(
                &client_id,
                tenant.as_deref(),
                &scopes,
                tier.as_deref(),
                expires_at,
            )?;
            eprintln!("API key (shown once; the key file keeps only its salted hash):");
            println!("{secret}");
            eprintln!("\nAdd to the api_keys_file:\n");
            println!("{}", entry.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token {
            key,
            alg,
            kid,
            claims,
            expires_in,
        } => {
            let pem = std::fs::read(&key).map_err(|e| format!("cannot read {key}: {e}"))?;
            let alg: ringgate_policies::auth::Algorithm = alg
                .parse()
                .map_err(|_| format!("unknown algorithm {alg:?}"))?;
            let mut claims: serde_json::Value = serde_json::from_str(&claims)?;
            let ttl = ringgate_core::duration::parse(&expires_in)?;
            if let Some(obj) = claims.as_object_mut() {
                if !obj.contains_key("exp") {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    obj.insert("exp".into(), (now + ttl.as_secs()).into());
                }
            }
            let t = ringgate_policies::auth::mint(&pem, alg, kid.as_deref(), &claims)?;
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { config, profile } => check(&config, profile.as_deref()),
        Cmd::Demo { listen, profile } => {
            let profile = load_profile(profile.as_deref())?;
            let demo = ringgate::demo::start_demo(&profile, listen)?;
            println!("{}", demo.gateway.start_line);
            println!(
                "demo upstreams: {}",
                demo.upstreams
                    .iter()
                    .map(|u| u.addrs()[0].to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!("try:");
            for l in &demo.try_lines {
                println!("  {l}");
            }
            println!("Ctrl-C stops the demo.");
            let upstreams = demo.upstreams;
            let control = Control::new(
                ConfigSource::Inline {
                    label: "demo (built in)".into(),
                    text: demo.config_text,
                },
                demo.config,
                &demo.gateway,
            );
            let code = run_until_stopped(demo.gateway, control, None, None, false);
            drop(upstreams);
            code
        }
        Cmd::Proxy {
            listen,
            to,
            profile,
        } => {
            let profile = load_profile(profile.as_deref())?;
            let raw = proxy_config(listen, to);
            let text = toml::to_string(&raw)?;
            let snapshot = Snapshot::build(&raw, text_hash(&text))?;
            let gw = start(snapshot, &profile)?;
            println!("{}", gw.start_line);
            let control = Control::new(
                ConfigSource::Inline {
                    label: "ringgate proxy".into(),
                    text,
                },
                raw,
                &gw,
            );
            run_until_stopped(gw, control, None, None, false)
        }
    }
}

/// The config `ringgate proxy` stands for: one listener, one upstream, one catch-all route.
fn proxy_config(listen: SocketAddr, to: Vec<String>) -> RawConfig {
    RawConfig {
        version: Some("proxy".into()),
        listeners: vec![ListenerConfig {
            name: Some("proxy".into()),
            ..ListenerConfig::at(listen.to_string())
        }],
        upstreams: vec![UpstreamConfig {
            name: "to".into(),
            endpoints: to,
            ..UpstreamConfig::default()
        }],
        routes: vec![RouteConfig {
            id: "all".into(),
            path: PathConfig {
                prefix: Some("/".into()),
                ..PathConfig::default()
            },
            upstream: "to".into(),
            ..RouteConfig::default()
        }],
        ..RawConfig::default()
    }
}

/// `ringgate reload`: POST /config/reload on the admin API, print the answer.
fn reload(admin: SocketAddr, token: Option<&str>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the admin API at {admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST /config/reload HTTP/1.1\r\nhost: {admin}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status_line = head.lines().next().unwrap_or("");
    if status_line.starts_with("HTTP/1.1 200") {
        print!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("ringgate reload: {}", describe_refusal(status_line, body));
    Ok(ExitCode::FAILURE)
}

/// What a refused reload says, for a person: the status with its reason phrase (as the admin API
/// sent it, or the standard one when it sent none), then the errors of the JSON body one per
/// line (the body as it came when it is not that JSON).
fn describe_refusal(status_line: &str, body: &str) -> String {
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let code = parts.next().unwrap_or("");
    let phrase = match parts.next().map(str::trim) {
        Some(p) if !p.is_empty() && p != "Unknown" => p.to_string(),
        _ => code
            .parse::<u16>()
            .map(|c| ringgate_http::error::reason_phrase(c).to_string())
            .unwrap_or_default(),
    };
    let mut out = format!("{code} {phrase}");
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => {
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                out.push_str(":\n");
                for line in e.lines() {
                    out.push_str("  ");
                    out.push_str(line.trim());
                    out.push('\n');
                }
            }
            if let Some(live) = v.get("live_version").and_then(|x| x.as_str()) {
                out.push_str(&format!("the live config stays: version {live}\n"));
            }
        }
        Err(_) if !body.trim().is_empty() => {
            out.push('\n');
            out.push_str(body.trim_end());
            out.push('\n');
        }
        Err(_) => out.push('\n'),
    }
    out.trim_end().to_string()
}

/// Binds the admin API's address when the config has one; a busy or invalid address is an
/// error that names it.
fn bind_admin(raw: &RawConfig) -> Result<Option<std::net::TcpListener>, String> {
    let Some(cfg) = raw.admin.as_ref() else {
        return Ok(None);
    };
    let addr: SocketAddr = cfg
        .address
        .parse()
        .map_err(|e| format!("admin.address {:?}: {e}", cfg.address))?;
    std::net::TcpListener::bind(addr)
        .map(Some)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!("cannot start the admin API: {addr} is already in use by another process")
            }
            _ => format!("cannot start the admin API on {addr}: {e}"),
        })
}

/// Starts the admin API: on `bound` when the caller bound it already, else binds it now
/// (retrying for a while after a takeover: the previous process frees its admin port once the
/// handoff is done).
fn start_admin(
    control: &Arc<Control>,
    bound: Option<std::net::TcpListener>,
    retry: bool,
) -> Result<Option<AdminServer>, String> {
    let raw = control.state().raw;
    let Some(cfg) = raw.admin.as_ref() else {
        return Ok(None);
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(if retry { 15 } else { 0 });
    let listener = match bound {
        Some(l) => l,
        None => loop {
            match bind_admin(&raw) {
                Ok(Some(l)) => break l,
                Ok(None) => return Ok(None),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        },
    };
    let a = AdminServer::serve(listener, cfg.token.clone(), control.clone())
        .map_err(|e| format!("cannot start the admin API: {e}"))?;
    eprintln!("ringgate: admin API on http://{}", a.addr);
    Ok(Some(a))
}

enum Event {
    Signal(i32),
    HandedOver,
}

/// Runs until a stop signal or a completed handoff: reloads on SIGHUP and file changes, reopens
/// the access log on SIGUSR1, serves the admin API, offers the sockets on `handoff`.
fn run_until_stopped(
    gw: RunningGateway,
    control: Arc<Control>,
    admin_listener: Option<std::net::TcpListener>,
    handoff: Option<PathBuf>,
    took_over: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
    let sig_tx = tx.clone();
    std::thread::Builder::new()
        .name("ringgate-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if sig_tx.send(Event::Signal(s)).is_err() {
                    break;
                }
            }
        })?;
    let admin = match start_admin(&control, admin_listener, took_over) {
        Ok(a) => a,
        // After a takeover the listening sockets are ours alone and the previous process is
        // draining: exiting would leave nobody serving, so the gateway runs on without admin.
        Err(e) if took_over => {
            eprintln!("ringgate: {e}; serving without the admin API");
            None
        }
        Err(e) => {
            gw.stop();
            return Err(e.into());
        }
    };
    let watch = control.watch(Duration::from_millis(500));
    let _handoff_server = match &handoff {
        Some(path) => {
            let groups: Vec<ListenerGroup> = gw
                .listener_dups
                .iter()
                .map(|(addr, ls)| ListenerGroup {
                    addr: *addr,
                    fds: ls
                        .iter()
                        .filter_map(|l| l.try_clone().ok().map(std::os::fd::OwnedFd::from))
                        .collect(),
                })
                .collect();
            // A predecessor removes its socket file once it handed over; wait for that.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let server = loop {
                match HandoffServer::bind(path, groups_clone(&groups)) {
                    Ok(s) => break Some(s),
                    Err(e) if took_over && std::time::Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        eprintln!(
                            "ringgate: handoff socket {} not offered: {e}",
                            path.display()
                        );
                        break None;
                    }
                }
            };
            if let Some(s) = &server {
                let taken = s.taken().clone();
                let tx2 = tx.clone();
                std::thread::spawn(move || {
                    if taken.recv().is_ok() {
                        let _ = tx2.send(Event::HandedOver);
                    }
                });
                eprintln!(
                    "ringgate: offering the listening sockets on {}",
                    path.display()
                );
            }
            server
        }
        None => None,
    };
    let handed_over = loop {
        match rx.recv() {
            Ok(Event::Signal(SIGHUP)) => {
                let _ = control.reload("SIGHUP");
            }
            Ok(Event::Signal(SIGUSR1)) => {
                if let Some(l) = &control.access_log {
                    l.reopen();
                    eprintln!("ringgate: SIGUSR1: access log reopened");
                }
            }
            Ok(Event::Signal(sig)) => {
                eprintln!("ringgate: signal {sig}: draining");
                break false;
            }
            Ok(Event::HandedOver) => {
                eprintln!("ringgate: the listening sockets were taken over: draining");
                break true;
            }
            Err(_) => break false,
        }
    };
    watch.store(true, std::sync::atomic::Ordering::Relaxed);
    let out = if handed_over {
        // The successor serves the admin API from now on: free its port first.
        if let Some(a) = admin {
            a.stop();
        }
        gw.stop_after_handoff()
    } else {
        // The admin API serves through the drain: `/readyz` answers 503 `draining` (what a load
        // balancer must see to stop sending traffic), `/healthz` and `/metrics` still answer.
        let out = gw.stop();
        if let Some(a) = admin {
            a.stop();
        }
        out
    };
    eprintln!(
        "ringgate: stopped: {} in flight at signal, {} drained, {} aborted",
        out.inflight_at_start,
        out.inflight_at_start.saturating_sub(out.aborted),
        out.aborted
    );
    Ok(ExitCode::SUCCESS)
}

fn groups_clone(groups: &[ListenerGroup]) -> Vec<ListenerGroup> {
    groups
        .iter()
        .map(|g| ListenerGroup {
            addr: g.addr,
            fds: g.fds.iter().filter_map(|f| f.try_clone().ok()).collect(),
        })
        .collect()
}

fn check(config: &str, profile: Option<&str>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut failed = false;
    // The same checks `serve` makes before it starts a worker, not only the file's own rules.
    match load_profile(profile).and_then(|p| {
        let pre = ringgate_core::worker::preflight(&p)?;
        Ok((p, pre))
    }) {
        Ok((p, pre)) => println!(
            "profile ok: driver={}{} workers={} cpus=[{}] pin={} uring_entries={} sqpoll={}",
            pre.driver.as_str(),
            pre.fallback_reason
                .map_or(String::new(), |why| format!(" (epoll fallback: {why})")),
            pre.cpus.len(),
            if p.workers.cpus.is_empty() {
                "*".to_string()
            } else {
                p.workers
                    .cpus
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            },
            p.workers.pin,
            p.io.uring_entries,
            p.io.sqpoll
        ),
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    match ringgate::load_snapshot(config) {
        Ok(s) => {
            let endpoints: usize = s.upstreams.iter().map(|u| u.endpoints.len()).sum();
            println!(
                "config ok: version={} listeners={} upstreams={} endpoints={} routes={} rate_limits={} rate_limit_store={}",
                s.version,
                s.listeners.len(),
                s.upstreams.len(),
                endpoints,
                s.table.len(),
                s.limits.limits.len(),
                if s.process.rate_limit.redis.is_some() {
                    "redis"
                } else if !s.process.rate_limit.cluster.is_empty() {
                    "redis-cluster"
                } else {
                    "local"
                }
            );
        }
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
