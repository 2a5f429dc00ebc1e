//! Dynamic endpoints: upstreams whose endpoints come from DNS or etcd instead of the config.
//!
//! The seam: a *source* ([`dns`], [`etcd`]; Kubernetes EndpointSlices or Consul would be more)
//! runs on a thread of its own, never on a worker, watches the upstreams given to it as
//! [`Watch`]es, and reports every answer to a [`Sink`]: the full endpoint set of an upstream
//! ([`Sink::update`]), or that asking failed ([`Sink::failed`], the last good set stays). The
//! [`hub`] is the sink: it keeps the latest set of every dynamic upstream (the *overlay*),
//! rebuilds the snapshot from the live config with the overlay when a set really changed, and
//! publishes it by the same epoch swap a reload uses. Workers keep the per-core state of every
//! endpoint that stayed (pools are keyed by address, balancer, EWMA and outlier state are carried
//! by address when the upstream's state is rebuilt).
//!
//! A source knows nothing of snapshots, workers or the admin API; the engine knows nothing of
//! sources.

pub mod dns;
pub mod etcd;
pub mod hub;

use crate::config::discovery::DiscoveryKind;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::SystemTime;

/// One endpoint as a source found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Found {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Its share of traffic (SRV weight, etcd value's weight; 1 otherwise).
    pub weight: u32,
}

/// An upstream's endpoints as of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSet {
    /// The endpoints (order does not matter: the hub sorts them).
    pub endpoints: Vec<Found>,
    /// Which source answered.
    pub source: DiscoveryKind,
    /// The source's version of the answer (etcd's revision; `None` for DNS).
    pub revision: Option<i64>,
    /// When it was answered.
    pub at: SystemTime,
}

/// What a source watches for one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Watch {
    /// The upstream's name (what the sink is told).
    pub upstream: String,
    /// How to read `targets`.
    pub kind: DiscoveryKind,
    /// `host:port` names (`dns`), SRV names (`dns_srv`) or one key prefix (`etcd`).
    pub targets: Vec<String>,
}

/// Where sources report. Called from source threads; never blocks for long.
pub trait Sink: Send + Sync {
    /// `upstream`'s endpoints are now `set` (an empty set is reported as a failure instead: the
    /// last good endpoints stay).
    fn update(&self, upstream: &str, set: EndpointSet);
    /// Asking for `upstream`'s endpoints failed (`why`); its last good endpoints stay.
    fn failed(&self, upstream: &str, source: DiscoveryKind, why: String);
}

/// The latest endpoint set of every dynamic upstream that has one, by upstream name.
pub type Overlay = HashMap<String, EndpointSet>;

/// The source that watches upstreams of `kind` in this build.
pub fn spawner(kind: DiscoveryKind) -> Option<hub::Spawner> {
    match kind {
        DiscoveryKind::Dns | DiscoveryKind::DnsSrv => Some(dns::spawn_source),
        DiscoveryKind::Etcd => Some(etcd::spawn_source),
        DiscoveryKind::Static => None,
    }
}
