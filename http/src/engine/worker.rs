//! One worker's state, shared by its connection tasks through an `Rc`: its settings, its view of
//! the snapshot, its upstream pools, its per-core policy state, its metrics and log writer.

use super::drain::DrainSignal;
use super::io::buffers::BufPool;
use super::settings::EngineSettings;
use super::slots::{RouteSlot, UpstreamSlot};
use super::upstream::h2::H2Clients;
use super::upstream::pool::Pool;
use crate::accesslog::AccessLogWriter;
use crate::gateway::Gateway;
use crate::metrics::{MetricsHub, WorkerMetrics};
use crate::trace::IdGen;
use ringgate_core::shutdown::{Shutdown, WorkerGauges};
use ringgate_core::snapshot::SnapshotView;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// One worker's state, shared by its connection tasks.
pub(crate) struct Worker<G: Gateway> {
    pub(crate) settings: EngineSettings,
    pub(crate) snapshot: RefCell<SnapshotView<G>>,
    pub(crate) pool: RefCell<Pool>,
    pub(crate) upstreams: RefCell<Vec<Option<UpstreamSlot<G::Upstream>>>>,
    pub(crate) routes: RefCell<Vec<Option<RouteSlot<G::Route>>>>,
    pub(crate) auth: RefCell<Option<G::Auth>>,
    pub(crate) limits: RefCell<Option<G::Limits>>,
    pub(crate) gauges: Arc<WorkerGauges>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) index: usize,
    pub(crate) metrics: RefCell<WorkerMetrics>,
    pub(crate) ids: RefCell<IdGen>,
    pub(crate) log: RefCell<Option<AccessLogWriter>>,
    pub(crate) drain: DrainSignal,
    pub(crate) hub: Arc<MetricsHub>,
    /// Upgraded tunnels open now.
    pub(crate) tunnels: std::cell::Cell<usize>,
    /// HTTP/2 connections to upstreams.
    pub(crate) h2up: RefCell<H2Clients>,
    /// Client connections' buffers.
    pub(crate) bufs: Rc<BufPool>,
}
