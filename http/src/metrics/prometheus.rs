//! The Prometheus text exposition of the merged worker metrics: one function per group of
//! metric families, in a fixed order, so a family is found (and added) next to its kin. Kept
//! apart from the per-core counting in `metrics`, which is on the request path; this is not.

use super::{
    DurationHist, Registry, TlsStats, UpstreamStats, WorkerMetrics, CLASSES, CLASS_LABELS,
};
use ringgate_core::shutdown::WorkerGauges;
use std::fmt::Write as _;
use std::sync::Arc;

/// Prometheus histogram buckets for request durations, in seconds.
pub const BUCKETS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &DurationHist) {
    for b in BUCKETS_S {
        let le_us = (b * 1e6).round() as u64;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{b}\"}} {}",
            h.count_le(le_us)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_us() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

/// Writes the `# HELP` and `# TYPE` lines of metric family `name` of type `kind`.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes a family with one unlabelled sample, `value`.
fn single(out: &mut String, (name, kind, help): (&str, &str, &str), value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Renders the workers' metrics in the Prometheus text format (version 0.0.4).
pub fn render_prometheus(
    out: &mut String,
    registry: &Registry,
    workers: &[(Option<WorkerMetrics>, Option<Arc<WorkerGauges>>)],
) {
    let mut all = WorkerMetrics::default();
    for m in workers.iter().filter_map(|w| w.0.as_ref()) {
        all.merge(m);
    }
    render_routes(out, registry, &all);
    render_upstream_traffic(out, registry, &all);
    render_upstream_tls(out, registry, &all);
    render_upstream_health(out, registry, &all);
    render_gateway(out, &all);
    render_tls(out, &all.tls);
    render_protocols(out, &all);
    render_cache(out, &all);
    render_workers(out, workers);
}

/// Cache zones: requests by outcome, bytes and objects stored, evictions, purges.
fn render_cache(out: &mut String, all: &WorkerMetrics) {
    if all.cache.is_empty() {
        return;
    }
    let mut zones: Vec<&super::CacheZoneStats> = all.cache.iter().collect();
    zones.sort_by(|a, b| a.zone.cmp(&b.zone));
    family(
        out,
        "ringgate_cache_requests_total",
        "counter",
        "Requests on cached routes, by zone and what the cache did.",
    );
    for z in &zones {
        for (o, n) in super::CACHE_OUTCOMES.iter().zip(z.outcomes) {
            let _ = writeln!(
                out,
                "ringgate_cache_requests_total{{zone=\"{}\",outcome=\"{o}\"}} {n}",
                z.zone
            );
        }
    }
    type Pick = fn(&super::CacheZoneStats) -> u64;
    let series: [(&str, &str, &str, Pick); 5] = [
        (
            "ringgate_cache_bytes",
            "gauge",
            "Bytes stored (all cores).",
            |z| z.bytes,
        ),
        (
            "ringgate_cache_objects",
            "gauge",
            "Responses stored (all cores).",
            |z| z.objects,
        ),
        (
            "ringgate_cache_evictions_total",
            "counter",
            "Keys evicted to stay within the byte budget.",
            |z| z.evictions,
        ),
        (
            "ringgate_cache_purged_total",
            "counter",
            "Responses removed by purges.",
            |z| z.purged,
        ),
        (
            "ringgate_cache_too_large_total",
            "counter",
            "Responses not stored: larger than a core's share of the zone.",
            |z| z.too_large,
        ),
    ];
    for (name, kind, help, pick) in series {
        family(out, name, kind, help);
        for z in &zones {
            let _ = writeln!(out, "{name}{{zone=\"{}\"}} {}", z.zone, pick(z));
        }
    }
    single(
        out,
        (
            "ringgate_cache_refreshes_total",
            "counter",
            "Background refreshes (stale-while-revalidate) run.",
        ),
        all.cache_refreshes,
    );
}

/// Per route: responses by status class, and the request duration histogram.
fn render_routes(out: &mut String, registry: &Registry, all: &WorkerMetrics) {
    let routes = all.routes.iter().enumerate().filter_map(|(i, r)| {
        let r = r.as_ref()?;
        Some((esc(registry.route_name(i)), &r.responses, &r.duration))
    });
    traffic(
        out,
        "route",
        routes,
        (
            "ringgate_requests_total",
            "Requests answered, by route and status class.",
        ),
        (
            "ringgate_request_duration_seconds",
            "Time from request head to last response byte.",
        ),
    );
}

/// Writes, for every item seen (its escaped name, responses by status class and durations),
/// the counter family `counter` (name, help) of its responses by class, then the histogram
/// family `hist` of its durations; `label` is the label naming the item (`route`, `upstream`).
fn traffic<'a>(
    out: &mut String,
    label: &str,
    items: impl Iterator<Item = (String, &'a [u64; CLASSES], &'a DurationHist)> + Clone,
    counter: (&str, &str),
    hist: (&str, &str),
) {
    let (name, help) = counter;
    family(out, name, "counter", help);
    for (item, responses, _) in items.clone() {
        for (c, n) in responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{item}\",code=\"{}\"}} {n}",
                CLASS_LABELS[c]
            );
        }
    }
    let (name, help) = hist;
    family(out, name, "histogram", help);
    for (item, _, duration) in items {
        histogram(out, name, &format!("{label}=\"{item}\""), duration);
    }
}

/// Writes family `name` with one sample per upstream seen, its value `f` of the upstream.
fn per_upstream(
    out: &mut String,
    registry: &Registry,
    all: &WorkerMetrics,
    (name, kind, help): (&str, &str, &str),
    f: fn(&UpstreamStats) -> u64,
) {
    family(out, name, kind, help);
    for (i, u) in all.upstreams.iter().enumerate() {
        if let Some(u) = u {
            let _ = writeln!(
                out,
                "{name}{{upstream=\"{}\"}} {}",
                esc(registry.upstream_name(i)),
                f(u)
            );
        }
    }
}

/// Per upstream: responses by status class, the exchange duration histogram, retries and
/// connection counters.
fn render_upstream_traffic(out: &mut String, registry: &Registry, all: &WorkerMetrics) {
    let upstreams = all.upstreams.iter().enumerate().filter_map(|(i, u)| {
        let u = u.as_ref()?;
        Some((esc(registry.upstream_name(i)), &u.responses, &u.duration))
    });
    traffic(
        out,
        "upstream",
        upstreams,
        (
            "ringgate_upstream_responses_total",
            "Upstream responses, by upstream and status class.",
        ),
        (
            "ringgate_upstream_duration_seconds",
            "Time from sending the request upstream to the end of its response.",
        ),
    );
    type Field = fn(&UpstreamStats) -> u64;
    let counters: [(&str, &str, Field); 5] = [
        (
            "ringgate_upstream_retries_total",
            "Retries sent to the upstream (after a failed attempt, within the route's budget).",
            |u| u.retries,
        ),
        (
            "ringgate_upstream_connections_new_total",
            "Upstream connections opened.",
            |u| u.connects,
        ),
        (
            "ringgate_upstream_connections_reused_total",
            "Upstream requests sent on a reused pooled connection.",
            |u| u.reused,
        ),
        (
            "ringgate_upstream_connect_failures_total",
            "Upstream connect attempts that failed.",
            |u| u.connect_failures,
        ),
        (
            "ringgate_upstream_failures_total",
            "Upstream exchanges that failed after connecting (reset, timeout, bad response).",
            |u| u.failures,
        ),
    ];
    for (name, help, f) in counters {
        per_upstream(out, registry, all, (name, "counter", help), f);
    }
}

/// Per upstream: circuit breaker transitions and open cores, and outlier ejections.
fn render_upstream_health(out: &mut String, registry: &Registry, all: &WorkerMetrics) {
    family(
        out,
        "ringgate_upstream_breaker_transitions_total",
        "counter",
        "Circuit breaker transitions, summed over cores.",
    );
    for (i, u) in all.upstreams.iter().enumerate() {
        let Some(u) = u else { continue };
        let name = esc(registry.upstream_name(i));
        let (o, h, c) = u.breaker_transitions;
        for (to, n) in [("open", o), ("half_open", h), ("closed", c)] {
            let _ = writeln!(
                out,
                "ringgate_upstream_breaker_transitions_total{{upstream=\"{name}\",to=\"{to}\"}} {n}"
            );
        }
    }
    per_upstream(
        out,
        registry,
        all,
        (
            "ringgate_upstream_breaker_open_cores",
            "gauge",
            "Cores whose breaker for the upstream is open now.",
        ),
        |u| u.breaker_open,
    );
    per_upstream(
        out,
        registry,
        all,
        (
            "ringgate_upstream_ejected_endpoints",
            "gauge",
            "Endpoints ejected by outlier detection now, summed over cores.",
        ),
        |u| u.ejected,
    );
}

/// The gateway's own responses by reason, the upstream pool, and client connections accepted
/// and refused.
fn render_gateway(out: &mut String, all: &WorkerMetrics) {
    family(
        out,
        "ringgate_gateway_responses_total",
        "counter",
        "Responses made by the gateway itself, by reason.",
    );
    for (reason, status, n) in &all.gateway {
        let _ = writeln!(
            out,
            "ringgate_gateway_responses_total{{reason=\"{}\",status=\"{status}\"}} {n}",
            esc(reason)
        );
    }
    let families: [((&str, &str, &str), u64); 5] = [
        (
            (
                "ringgate_upstream_h2_connections",
                "gauge",
                "HTTP/2 connections to upstreams open (streams multiplexed on them).",
            ),
            all.h2_upstream_open,
        ),
        (
            (
                "ringgate_upstream_pool_idle_connections",
                "gauge",
                "Idle pooled upstream connections.",
            ),
            all.pool_idle,
        ),
        (
            (
                "ringgate_upstream_pool_evicted_total",
                "counter",
                "Pooled connections closed as stale, dead or over the cap.",
            ),
            all.pool.evicted,
        ),
        (
            (
                "ringgate_connections_accepted_total",
                "counter",
                "Client connections accepted.",
            ),
            all.accepted,
        ),
        (
            (
                "ringgate_connections_refused_total",
                "counter",
                "Client connections closed at accept (per-core cap).",
            ),
            all.accept_refused,
        ),
    ];
    for (f, v) in families {
        single(out, f, v);
    }
}

/// HTTP/2 connections and streams, client connection buffers, and WebSocket tunnels.
fn render_protocols(out: &mut String, all: &WorkerMetrics) {
    let families: [((&str, &str, &str), u64); 6] = [
        (
            (
                "ringgate_http2_connections_total",
                "counter",
                "HTTP/2 client connections.",
            ),
            all.h2_connections,
        ),
        (
            (
                "ringgate_http2_streams_total",
                "counter",
                "HTTP/2 streams accepted.",
            ),
            all.h2_streams,
        ),
        (
            (
                "ringgate_conn_buffers_in_use",
                "gauge",
                "Client connection buffers held by connections with a request on them (an idle connection holds none).",
            ),
            all.conn_buffers.in_use,
        ),
        (
            (
                "ringgate_conn_buffers_free",
                "gauge",
                "Client connection buffers kept free for reuse.",
            ),
            all.conn_buffers.free,
        ),
        (
            (
                "ringgate_websocket_tunnels_total",
                "counter",
                "WebSocket upgrades tunnelled.",
            ),
            all.tunnels.0,
        ),
        (
            (
                "ringgate_websocket_tunnels_open",
                "gauge",
                "WebSocket tunnels open now.",
            ),
            all.tunnels.0.saturating_sub(all.tunnels.1),
        ),
    ];
    for (f, v) in families {
        single(out, f, v);
    }
}

/// Per worker: open connections and requests in flight (live gauges), and event-loop lag
/// (from the worker's last metrics).
fn render_workers(
    out: &mut String,
    workers: &[(Option<WorkerMetrics>, Option<Arc<WorkerGauges>>)],
) {
    let per_worker: [(&str, &str, &str); 4] = [
        (
            "ringgate_worker_connections",
            "gauge",
            "Open client connections per worker.",
        ),
        (
            "ringgate_worker_inflight_requests",
            "gauge",
            "Requests in flight per worker.",
        ),
        (
            "ringgate_worker_loop_lag_seconds",
            "gauge",
            "Event-loop lag at the worker's last tick.",
        ),
        (
            "ringgate_worker_loop_lag_max_seconds",
            "gauge",
            "Largest event-loop lag since the previous scrape.",
        ),
    ];
    for (k, (name, kind, help)) in per_worker.iter().enumerate() {
        family(out, name, kind, help);
        for (i, (m, g)) in workers.iter().enumerate() {
            let v = match k {
                0 => g.as_ref().map(|g| g.connections.get() as f64),
                1 => g.as_ref().map(|g| g.inflight.get() as f64),
                2 => m.as_ref().map(|m| m.loop_lag_last_us as f64 / 1e6),
                _ => m.as_ref().map(|m| m.loop_lag_max_us as f64 / 1e6),
            };
            if let Some(v) = v {
                let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {v}");
            }
        }
    }
}

/// Failed upstream TLS handshakes by upstream and reason (the reasons seen so far).
fn render_upstream_tls(out: &mut String, registry: &Registry, all: &WorkerMetrics) {
    out.push_str("# HELP ringgate_upstream_tls_failures_total Failed TLS handshakes with upstreams, by reason.\n");
    out.push_str("# TYPE ringgate_upstream_tls_failures_total counter\n");
    for (i, u) in all.upstreams.iter().enumerate() {
        let Some(u) = u else { continue };
        let name = esc(registry.upstream_name(i));
        for (r, n) in crate::tls::UpstreamTlsFail::ALL.iter().zip(u.tls_failures) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "ringgate_upstream_tls_failures_total{{upstream=\"{name}\",reason=\"{}\"}} {n}",
                    r.as_str()
                );
            }
        }
    }
}

fn render_tls(out: &mut String, t: &TlsStats) {
    out.push_str("# HELP ringgate_tls_handshakes_total TLS handshakes completed, by version.\n");
    out.push_str("# TYPE ringgate_tls_handshakes_total counter\n");
    let _ = writeln!(
        out,
        "ringgate_tls_handshakes_total{{version=\"1.2\"}} {}",
        t.tls12
    );
    let _ = writeln!(
        out,
        "ringgate_tls_handshakes_total{{version=\"1.3\"}} {}",
        t.tls13
    );
    out.push_str("# HELP ringgate_tls_resumed_total TLS handshakes that resumed a session.\n");
    out.push_str("# TYPE ringgate_tls_resumed_total counter\n");
    let _ = writeln!(out, "ringgate_tls_resumed_total {}", t.resumed);
    out.push_str(
        "# HELP ringgate_tls_handshake_failures_total TLS handshakes that failed, by reason.\n",
    );
    out.push_str("# TYPE ringgate_tls_handshake_failures_total counter\n");
    for (r, n) in crate::tls::stream::FailReason::ALL.iter().zip(t.failures) {
        let _ = writeln!(
            out,
            "ringgate_tls_handshake_failures_total{{reason=\"{}\"}} {n}",
            r.as_str()
        );
    }
}
