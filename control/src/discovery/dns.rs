//! The DNS source: re-resolves `dns` (A/AAAA) and `dns_srv` (SRV) upstreams as their records'
//! TTLs say, off the workers, and reports every answer to the [`Sink`].
//!
//! Why it exists: a `static` upstream's names are resolved once per snapshot build, so a name that
//! moves keeps its old address until the next reload. This source asks again when an answer
//! expires, so endpoint changes reach the workers through the hub without a reload.
//!
//! What it guarantees:
//! - One thread (`ringgate-dns`) for all DNS watches, with a current-thread tokio runtime of its
//!   own that only this thread ever sees; one task per watched upstream, so a slow name never
//!   delays another upstream's re-resolution.
//! - Name servers: the configured `ip:port` list (UDP, then TCP when an answer is truncated), or
//!   the system's `/etc/resolv.conf` (and hosts file) when the list is empty.
//! - An upstream is asked again when the shortest TTL of its answer expires, clamped to
//!   `[min_ttl, max_ttl]`; hickory's own cache is off, so nothing is served beyond that clamp.
//! - Every good answer is reported with [`Sink::update`], endpoints sorted and never empty. A
//!   failed lookup, NXDOMAIN, an empty answer, or a failure of *any* of an upstream's targets is
//!   reported with [`Sink::failed`] instead (a partial answer would drop endpoints on a transient
//!   error): the last good set stays, and the upstream is asked again after `retry`.
//! - An IP-literal target (`10.0.0.5:8080`, `[::1]:80`) is that address, never re-resolved; an
//!   upstream with only literal targets is reported once.
//! - The thread ends within about [`STOP_POLL`] of `stop` becoming true (pending lookups are
//!   cancelled with the runtime).
//!
//! How SRV answers are read is in [`select`].

pub mod select;

use super::{EndpointSet, Found, Sink, Watch};
use crate::config::discovery::{DiscoveryConfig, DiscoveryKind, DnsSettings};
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use select::{clamp, SrvRecord, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// How often the thread looks at its stop flag.
pub const STOP_POLL: Duration = Duration::from_millis(50);

/// Why asking for an upstream's endpoints failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The runtime for the resolver could not be started.
    #[error("cannot start the resolver runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A configured name server is not `ip:port` (config validation should have said so).
    #[error("name server {0:?} is not ip:port")]
    Server(String),
    /// `/etc/resolv.conf` could not be read or parsed.
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(#[source] ResolveError),
    /// A `dns` target is not `host:port`.
    #[error("{0:?} is not host:port")]
    Target(String),
    /// A name in a target is not a valid DNS name.
    #[error("{name:?} is not a DNS name: {why}")]
    Name {
        /// The name as written.
        name: String,
        /// The parser's reason.
        why: String,
    },
    /// The lookup failed: NXDOMAIN, no records, timeout, refused, ...
    #[error("{name}: {source}")]
    Lookup {
        /// The name asked for.
        name: String,
        /// The resolver's error.
        #[source]
        source: ResolveError,
    },
    /// The answer had records, but none that makes an endpoint.
    #[error("{0}: no usable records in the answer")]
    Empty(String),
}

/// Starts the resolver thread for `watches` (only `dns` and `dns_srv` ones; others are ignored).
/// It reports to `sink` until `stop` becomes true.
pub fn spawn(
    settings: &DnsSettings,
    watches: Vec<Watch>,
    sink: Arc<dyn Sink>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let settings = settings.clone();
    let watches: Vec<Watch> = watches
        .into_iter()
        .filter(|w| matches!(w.kind, DiscoveryKind::Dns | DiscoveryKind::DnsSrv))
        .collect();
    std::thread::Builder::new()
        .name("ringgate-dns".into())
        .spawn(move || run(settings, watches, sink, stop))
}

/// [`spawn`] as the hub starts sources ([`super::hub::Spawner`]): with `[discovery.dns]`.
pub fn spawn_source(
    config: &DiscoveryConfig,
    watches: Vec<Watch>,
    sink: Arc<dyn Sink>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    spawn(&config.dns, watches, sink, stop)
}

/// The thread: its runtime, the resolver, one task per watch, until `stop`.
fn run(settings: DnsSettings, watches: Vec<Watch>, sink: Arc<dyn Sink>, stop: Arc<AtomicBool>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail_all(&watches, &*sink, &DnsError::Runtime(e));
            return;
        }
    };
    runtime.block_on(async {
        let resolver = loop {
            match resolver(&settings) {
                Ok(r) => break r,
                Err(e) => {
                    fail_all(&watches, &*sink, &e);
                    if !pause(settings.retry, &stop).await {
                        return;
                    }
                }
            }
        };
        for watch in watches {
            let task = WatchTask {
                resolver: resolver.clone(),
                settings: settings.clone(),
                sink: sink.clone(),
                watch,
            };
            tokio::spawn(task.run());
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(STOP_POLL).await;
        }
    });
    // Dropping the runtime cancels every watch task and pending lookup.
    drop(runtime);
}

fn fail_all(watches: &[Watch], sink: &dyn Sink, why: &DnsError) {
    for w in watches {
        sink.failed(&w.upstream, w.kind, why.to_string());
    }
}

/// Sleeps `total` in steps, returning false as soon as `stop` is set.
async fn pause(total: Duration, stop: &AtomicBool) -> bool {
    let until = tokio::time::Instant::now() + total;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep(STOP_POLL.min(left)).await;
    }
    !stop.load(Ordering::Relaxed)
}

/// The resolver: configured servers (UDP and TCP each) or the system's configuration, with
/// hickory's cache off and its TTL bounds set to ours.
fn resolver(settings: &DnsSettings) -> Result<TokioResolver, DnsError> {
    let (config, mut opts) = if settings.servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().map_err(DnsError::SystemConfig)?
    } else {
        let mut group = NameServerConfigGroup::new();
        for s in &settings.servers {
            let addr: SocketAddr = s.parse().map_err(|_| DnsError::Server(s.clone()))?;
            group.merge(NameServerConfigGroup::from_ips_clear(
                &[addr.ip()],
                addr.port(),
                true,
            ));
        }
        let mut opts = ResolverOpts::default();
        // Only the configured servers answer: no hosts file in between.
        opts.use_hosts_file = ResolveHosts::Never;
        (ResolverConfig::from_parts(None, Vec::new(), group), opts)
    };
    opts.timeout = settings.timeout;
    opts.cache_size = 0;
    opts.positive_min_ttl = Some(settings.min_ttl);
    opts.positive_max_ttl = Some(settings.max_ttl);
    opts.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
    // CNAME records stay in an answer (hickory's default), so their TTLs count in the shortest.
    opts.preserve_intermediates = true;
    let mut builder =
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    *builder.options_mut() = opts;
    Ok(builder.build())
}

/// One upstream's endpoints, as of one answer.
struct Answer {
    endpoints: Vec<Found>,
    /// The shortest TTL of the records used; `None` when every target is an IP literal.
    ttl: Option<Duration>,
}

/// Re-resolves one upstream for as long as the runtime runs.
struct WatchTask {
    resolver: TokioResolver,
    settings: DnsSettings,
    sink: Arc<dyn Sink>,
    watch: Watch,
}

impl WatchTask {
    async fn run(self) {
        let w = &self.watch;
        loop {
            let wait = match self.ask().await {
                Ok(answer) => {
                    let set = EndpointSet {
                        endpoints: answer.endpoints,
                        source: w.kind,
                        revision: None,
                        at: SystemTime::now(),
                    };
                    self.sink.update(&w.upstream, set);
                    match answer.ttl {
                        Some(ttl) => clamp(ttl, self.settings.min_ttl, self.settings.max_ttl),
                        // Only IP literals: nothing will ever change.
                        None => return,
                    }
                }
                Err(e) => {
                    self.sink.failed(&w.upstream, w.kind, e.to_string());
                    self.settings.retry
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Asks for every target of the upstream; any failure fails the whole answer.
    async fn ask(&self) -> Result<Answer, DnsError> {
        let w = &self.watch;
        let mut found = Vec::new();
        let mut ttl: Option<u32> = None;
        let mut shortest = |t: u32| ttl = Some(ttl.map_or(t, |old| old.min(t)));
        for target in &w.targets {
            match w.kind {
                DiscoveryKind::DnsSrv => {
                    let (mut eps, t) = self.srv(target).await?;
                    shortest(t);
                    found.append(&mut eps);
                }
                _ => match Target::parse(target)? {
                    Target::Literal(addr) => found.push(Found { addr, weight: 1 }),
                    Target::Name { host, port } => {
                        let (ips, t) = self.addresses(&to_name(&host)?).await?;
                        shortest(t);
                        found.extend(ips.into_iter().map(|ip| Found {
                            addr: SocketAddr::new(ip, port),
                            weight: 1,
                        }));
                    }
                },
            }
        }
        let endpoints = select::merge(found, w.kind == DiscoveryKind::DnsSrv);
        if endpoints.is_empty() {
            return Err(DnsError::Empty(w.targets.join(", ")));
        }
        Ok(Answer {
            endpoints,
            ttl: ttl.map(|t| Duration::from_secs(u64::from(t))),
        })
    }

    /// A and AAAA records of `name`: the addresses and their shortest TTL.
    async fn addresses(&self, name: &Name) -> Result<(Vec<IpAddr>, u32), DnsError> {
        let lookup = self
            .resolver
            .lookup_ip(name.clone())
            .await
            .map_err(|source| DnsError::Lookup {
                name: name.to_string(),
                source,
            })?;
        let ips: Vec<IpAddr> = lookup.iter().collect::<BTreeSet<_>>().into_iter().collect();
        let ttl = lookup.as_lookup().records().iter().map(|r| r.ttl()).min();
        match ttl {
            Some(ttl) if !ips.is_empty() => Ok((ips, ttl)),
            _ => Err(DnsError::Empty(name.to_string())),
        }
    }

    /// The endpoints of one SRV name (see [`select::srv_group`]) and the shortest TTL of the
    /// records used.
    async fn srv(&self, target: &str) -> Result<(Vec<Found>, u32), DnsError> {
        let name = to_name(target)?;
        let lookup = self
            .resolver
            .srv_lookup(name.clone())
            .await
            .map_err(|source| DnsError::Lookup {
                name: target.to_string(),
                source,
            })?;
        let records = lookup.as_lookup().records();
        let srvs: Vec<SrvRecord<Name>> = records
            .iter()
            .filter_map(|r| match r.data() {
                RData::SRV(s) => Some(SrvRecord {
                    priority: s.priority(),
                    weight: s.weight(),
                    port: s.port(),
                    target: s.target().clone(),
                    ttl: r.ttl(),
                }),
                _ => None,
            })
            .collect();
        let mut ttl = srvs.iter().map(|s| s.ttl).min().unwrap_or(u32::MAX);
        let mut found = Vec::new();
        for rec in select::srv_group(srvs) {
            // Addresses the server put in the additional section, else a lookup of the target.
            // A set: servers may repeat an address record (once per SRV record naming it).
            let extra: BTreeMap<IpAddr, u32> = records
                .iter()
                .filter(|r| r.name().eq_ignore_root(&rec.target))
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some((IpAddr::V4(a.0), r.ttl())),
                    RData::AAAA(a) => Some((IpAddr::V6(a.0), r.ttl())),
                    _ => None,
                })
                .collect();
            let ips = if extra.is_empty() {
                let (ips, t) = self.addresses(&rec.target).await?;
                ttl = ttl.min(t);
                ips
            } else {
                ttl = extra.values().fold(ttl, |m, t| m.min(*t));
                extra.into_keys().collect()
            };
            found.extend(ips.into_iter().map(|ip| Found {
                addr: SocketAddr::new(ip, rec.port),
                weight: rec.weight,
            }));
        }
        if found.is_empty() {
            return Err(DnsError::Empty(target.to_string()));
        }
        Ok((found, ttl))
    }
}

fn to_name(text: &str) -> Result<Name, DnsError> {
    Name::from_ascii(text).map_err(|e| DnsError::Name {
        name: text.to_string(),
        why: e.to_string(),
    })
}
