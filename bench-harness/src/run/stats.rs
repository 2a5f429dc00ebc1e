//! What each generator thread records, and how threads' records merge. All times are
//! nanoseconds in HDR histograms (3 significant digits, up to one hour; larger values saturate
//! rather than being lost). Every measured request ends in exactly one of completed / error /
//! timeout / censored, so the counts always add up to what was scheduled.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest value histograms track (1 hour in ns); larger values are clamped to it.
pub const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// A fresh nanosecond histogram.
pub fn new_hist() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts (low 1, high > 2*low, 3 digits).
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).unwrap()
}

/// A fresh histogram for one interval of the `--hlog` log: two significant digits (1%), so a
/// long run's per-second histograms stay small (~36 KB each instead of ~260 KB).
pub fn new_interval_hist() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts.
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, HIST_MAX_NS, 2).unwrap()
}

/// Why a request failed below HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The connection could not be opened (refused, unreachable).
    Connect,
    /// The connection did not open within the timeout.
    ConnectTimeout,
    /// The server reset the connection.
    Reset,
    /// The server closed the connection before the response ended.
    Closed,
    /// The response could not be parsed.
    Protocol,
    /// Writing the request failed.
    Write,
    /// The TLS handshake failed (or the server broke the TLS protocol).
    Tls,
}

impl ErrorKind {
    /// All kinds, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::ConnectTimeout,
        ErrorKind::Reset,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::Write,
        ErrorKind::Tls,
    ];

    /// Stable name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Write => "write",
            ErrorKind::Tls => "tls",
        }
    }
}

/// Per request kind: how each ended.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindCounts {
    /// Responses by status class 1xx..5xx (index 1..=5; 0 for anything else).
    pub classes: [u64; 6],
    /// Transport errors.
    pub errors: u64,
    /// Timeouts.
    pub timeouts: u64,
}

/// Everything one generator thread measured (measured window only, except `hiccup`).
#[derive(Debug)]
pub struct ThreadStats {
    /// Intended send to last byte: the latency a user sees (no coordinated omission).
    pub response: Histogram<u64>,
    /// Actual send to last byte.
    pub service: Histogram<u64>,
    /// Intended send to actual send.
    pub send_lag: Histogram<u64>,
    /// Intended send to when the generator noticed the request was due (its own lateness).
    pub sched_lag: Histogram<u64>,
    /// Waiting for a free or new connection.
    pub queue_wait: Histogram<u64>,
    /// Actual send to first response byte.
    pub ttfb: Histogram<u64>,
    /// TCP connect duration (connections opened during the window).
    pub connect: Histogram<u64>,
    /// TLS handshake duration, TCP connected to handshake done (handshakes done in the window).
    pub tls_handshake: Histogram<u64>,
    /// How late the generator's timed wake-ups were (the whole run).
    pub hiccup: Histogram<u64>,
    /// Requests due in the window.
    pub scheduled: u64,
    /// Full responses (any status).
    pub completed: u64,
    /// 2xx and 3xx responses.
    pub success: u64,
    /// Responses completed inside the window, whenever their request was due (warmup included):
    /// the throughput the target sustained, without what the grace period drained.
    pub in_window: u64,
    /// Of those, 2xx and 3xx.
    pub in_window_success: u64,
    /// Transport errors.
    pub errors: u64,
    /// Requests that passed the timeout (recorded in `response` at the timeout).
    pub timeouts: u64,
    /// Requests unfinished at the end (never sent or still in flight).
    pub censored: u64,
    /// Responses by status code.
    pub statuses: Vec<u64>,
    /// Errors by kind (`ErrorKind::ALL` order).
    pub error_kinds: [u64; ErrorKind::ALL.len()],
    /// Per request kind.
    pub kinds: Vec<KindCounts>,
    /// Connections opened (whole run).
    pub connections: u64,
    /// Most connections open at once.
    pub peak_connections: u64,
    /// TLS handshakes completed (whole run).
    pub tls_handshakes: u64,
    /// Of those, how many resumed a session.
    pub tls_resumed: u64,
    /// Thread CPU time over the window (ns).
    pub cpu_ns: u64,
    /// Window wall time as seen by this thread (ns).
    pub wall_ns: u64,
    /// Response-time histograms per log interval, when an interval log was asked for.
    pub intervals: Vec<Histogram<u64>>,
    /// Response time per latency group of the plan (empty when it names none).
    pub groups: Vec<Histogram<u64>>,
}

impl ThreadStats {
    /// Empty stats for `kinds` request kinds.
    pub fn new(kinds: usize) -> Self {
        Self {
            response: new_hist(),
            service: new_hist(),
            send_lag: new_hist(),
            sched_lag: new_hist(),
            queue_wait: new_hist(),
            ttfb: new_hist(),
            connect: new_hist(),
            tls_handshake: new_hist(),
            hiccup: new_hist(),
            scheduled: 0,
            completed: 0,
            success: 0,
            in_window: 0,
            in_window_success: 0,
            errors: 0,
            timeouts: 0,
            censored: 0,
            statuses: vec![0; 600],
            error_kinds: [0; ErrorKind::ALL.len()],
            kinds: vec![KindCounts::default(); kinds],
            connections: 0,
            peak_connections: 0,
            tls_handshakes: 0,
            tls_resumed: 0,
            cpu_ns: 0,
            wall_ns: 0,
            intervals: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Empty stats for a plan's kinds and latency groups.
    pub fn for_plan(kinds: usize, groups: usize) -> Self {
        let mut s = Self::new(kinds);
        s.groups = (0..groups).map(|_| new_hist()).collect();
        s
    }

    /// Records a measured response time of a request of latency group `group`.
    #[inline]
    pub fn record_response(&mut self, group: u16, ns: u64) {
        record(&mut self.response, ns);
        if let Some(h) = self.groups.get_mut(group as usize) {
            record(h, ns);
        }
    }

    /// Adds another thread's stats into this one.
    pub fn merge(&mut self, o: &ThreadStats) {
        for (a, b) in [
            (&mut self.response, &o.response),
            (&mut self.service, &o.service),
            (&mut self.send_lag, &o.send_lag),
            (&mut self.sched_lag, &o.sched_lag),
            (&mut self.queue_wait, &o.queue_wait),
            (&mut self.ttfb, &o.ttfb),
            (&mut self.connect, &o.connect),
            (&mut self.tls_handshake, &o.tls_handshake),
            (&mut self.hiccup, &o.hiccup),
        ] {
            // Same bounds on both sides: add cannot fail.
            let _ = a.add(b);
        }
        self.scheduled += o.scheduled;
        self.completed += o.completed;
        self.success += o.success;
        self.in_window += o.in_window;
        self.in_window_success += o.in_window_success;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.censored += o.censored;
        for (a, b) in self.statuses.iter_mut().zip(&o.statuses) {
            *a += b;
        }
        for (a, b) in self.error_kinds.iter_mut().zip(&o.error_kinds) {
            *a += b;
        }
        for (a, b) in self.kinds.iter_mut().zip(&o.kinds) {
            for (x, y) in a.classes.iter_mut().zip(&b.classes) {
                *x += y;
            }
            a.errors += b.errors;
            a.timeouts += b.timeouts;
        }
        self.connections += o.connections;
        self.peak_connections += o.peak_connections;
        self.tls_handshakes += o.tls_handshakes;
        self.tls_resumed += o.tls_resumed;
        self.cpu_ns += o.cpu_ns;
        self.wall_ns = self.wall_ns.max(o.wall_ns);
        if self.intervals.len() < o.intervals.len() {
            self.intervals
                .resize_with(o.intervals.len(), new_interval_hist);
        }
        for (a, b) in self.intervals.iter_mut().zip(&o.intervals) {
            let _ = a.add(b);
        }
        if self.groups.len() < o.groups.len() {
            self.groups.resize_with(o.groups.len(), new_hist);
        }
        for (a, b) in self.groups.iter_mut().zip(&o.groups) {
            let _ = a.add(b);
        }
    }
}

/// Records `ns` into `h`, clamped to the histogram's range.
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1, HIST_MAX_NS));
}
