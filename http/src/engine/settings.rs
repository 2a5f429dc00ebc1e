//! The engine's knobs (from the perf profile) and the services a worker shares with the control
//! side.

use super::io::body_deadline;
use crate::accesslog::AccessLog;
use crate::codec::HeadLimits;
use crate::metrics::MetricsHub;
use ringgate_core::profile::PerfProfile;
use std::sync::Arc;
use std::time::Duration;

/// The engine's knobs, taken from the perf profile once at start.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Size of each connection's read buffers.
    pub read_buffer_bytes: usize,
    /// Request head limits (431, 414).
    pub limits: HeadLimits,
    /// Open client connections per worker.
    pub max_connections: usize,
    /// The request head must arrive within this (408).
    pub header_timeout: Duration,
    /// Keep-alive idle time between requests.
    pub idle_timeout: Duration,
    /// Upstream connect timeout (502).
    pub connect_timeout: Duration,
    /// Default upstream response-head timeout (504).
    pub response_timeout: Duration,
    /// A body read or write making no progress this long aborts the exchange.
    pub body_io_timeout: Duration,
    /// The request body's deadlines (see [`body_deadline`]).
    pub body: body_deadline::BodyLimits,
    /// Request bodies of known length up to this size are read whole before connecting.
    pub buffer_body_bytes: usize,
    /// How long a cleartext keep-alive connection keeps its read posted after a response.
    pub hot_read: Duration,
    /// Idle upstream connections per endpoint per worker.
    pub pool_max_idle: usize,
    /// Idle upstream connection lifetime.
    pub pool_idle_timeout: Duration,
    /// PING interval and timeout of HTTP/2 upstream connections (`None`: no pings).
    pub h2_ping: Option<(Duration, Duration)>,
    /// `X-Forwarded-Proto` value of this listener.
    pub proto: &'static str,
    /// Count per-route and per-upstream metrics.
    pub metrics: bool,
    /// Assign request ids and trace context (`X-Request-Id`, `traceparent`).
    pub trace: bool,
    /// How long a stopping worker waits for its connections.
    pub drain_timeout: Duration,
    /// An upgraded tunnel idle in both directions this long is closed.
    pub tunnel_idle: Duration,
    /// Open upgraded tunnels per worker.
    pub max_tunnels: usize,
    /// HTTP/2 settings.
    pub http2: ringgate_core::profile::Http2Profile,
    /// Workers of the process (a cache zone's budget is shared out over them).
    pub workers: usize,
}

impl EngineSettings {
    /// The settings a profile implies.
    pub fn from_profile(p: &PerfProfile) -> Self {
        Self {
            read_buffer_bytes: p.io.read_buffer_bytes,
            limits: HeadLimits {
                max_head_bytes: p.limits.max_request_head_bytes,
                max_uri_bytes: p.limits.max_uri_bytes,
            },
            max_connections: p.limits.max_connections_per_core,
            header_timeout: p.timeouts.header_read,
            idle_timeout: p.timeouts.idle,
            connect_timeout: p.timeouts.connect,
            response_timeout: p.timeouts.response,
            body_io_timeout: p.timeouts.body_io,
            body: body_deadline::BodyLimits {
                total: p.timeouts.body,
                min_rate: p.timeouts.min_body_rate,
                grace: p.timeouts.body_grace,
            },
            buffer_body_bytes: p.io.buffer_body_bytes,
            hot_read: p.io.hot_read,
            pool_max_idle: p.upstream.pool_max_idle_per_endpoint,
            pool_idle_timeout: p.upstream.pool_idle_timeout,
            h2_ping: (!p.upstream.h2_ping_interval.is_zero())
                .then_some((p.upstream.h2_ping_interval, p.upstream.h2_ping_timeout)),
            proto: "http",
            metrics: true,
            trace: true,
            drain_timeout: p.timeouts.drain,
            tunnel_idle: p.timeouts.tunnel_idle,
            max_tunnels: p.limits.max_tunnels_per_core,
            http2: p.http2.clone(),
            workers: p.workers.count.max(1),
        }
    }
}

/// What a worker shares with the control side: where it publishes metrics, where it logs.
#[derive(Clone)]
pub struct EngineServices {
    /// Metrics hub (scrapes).
    pub hub: Arc<MetricsHub>,
    /// The access log, when one is configured.
    pub access_log: Option<Arc<AccessLog>>,
}
