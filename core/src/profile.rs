//! The perf profile: how a ringgate process uses its host.
//!
//! The config file says *what* the gateway does and reloads while it runs; the profile says *how*
//! the process spends the machine (workers and CPUs, ring size, buffers, limits, pools, default
//! timeouts) and is read once at start. Keeping the two apart lets an operator tune a host without
//! touching routing, and lets the tuning ship as named presets (`profiles/*.toml`, also built in:
//! `--profile default` or `--profile low-latency`). A missing `--profile` means the built-in
//! defaults, which are the `default` preset.

use crate::duration::serde_text;
use crate::error::CoreError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The text of the `default` preset, shipped in the binary.
pub const PRESET_DEFAULT: &str = include_str!("../../profiles/default.toml");
/// The text of the `low-latency` preset, shipped in the binary.
pub const PRESET_LOW_LATENCY: &str = include_str!("../../profiles/low-latency.toml");

/// The longest timeout accepted anywhere (timer arithmetic stays far from overflow).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Which I/O driver the workers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DriverChoice {
    /// io_uring, falling back to epoll by itself when the host refuses io_uring.
    #[default]
    Auto,
    /// io_uring only: refuse to start without it.
    IoUring,
    /// epoll, even where io_uring works.
    Epoll,
}

/// The whole perf profile.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PerfProfile {
    /// Worker threads and their CPUs.
    pub workers: WorkersProfile,
    /// The I/O driver and buffers.
    pub io: IoProfile,
    /// Per-connection and per-core limits.
    pub limits: LimitsProfile,
    /// Upstream connection pools.
    pub upstream: UpstreamProfile,
    /// Default timeouts.
    pub timeouts: TimeoutsProfile,
    /// HTTP/2 downstream.
    pub http2: Http2Profile,
}

/// `[http2]`: HTTP/2 towards clients (over TLS with ALPN `h2`, or cleartext prior knowledge).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Profile {
    /// Accept cleartext HTTP/2 with prior knowledge (h2c) on cleartext listeners.
    pub cleartext: bool,
    /// Streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Initial flow-control window of each stream (bytes a client may send unread).
    pub stream_window_bytes: u32,
    /// Flow-control window of a whole connection.
    pub connection_window_bytes: u32,
    /// Largest frame payload accepted.
    pub max_frame_bytes: u32,
    /// Response bytes buffered per stream before the gateway waits for the client's window.
    pub max_send_buffer_bytes: u32,
    /// Streams a client may reset before the gateway accepted them (rapid-reset defence);
    /// beyond, the connection is closed with `ENHANCE_YOUR_CALM`.
    pub max_pending_reset_streams: u32,
}

impl Default for Http2Profile {
    fn default() -> Self {
        Self {
            cleartext: true,
            max_concurrent_streams: 128,
            stream_window_bytes: 256 * 1024,
            connection_window_bytes: 1024 * 1024,
            max_frame_bytes: 16 * 1024,
            max_send_buffer_bytes: 256 * 1024,
            max_pending_reset_streams: 32,
        }
    }
}

/// `[workers]`: how many workers and where they run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersProfile {
    /// Number of workers; 0 = one per CPU this process may use. Ignored when `cpus` is set.
    pub count: usize,
    /// Explicit CPU list, one worker per entry (e.g. `[1]` to keep CPU 0 for load and upstreams).
    pub cpus: Vec<usize>,
    /// Pin each worker thread to its CPU (thread-per-core). Off only for debugging.
    pub pin: bool,
}

/// `[io]`: the driver and its buffers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IoProfile {
    /// `auto` (io_uring, epoll fallback), `io_uring` (required) or `epoll` (forced).
    pub driver: DriverChoice,
    /// io_uring submission queue entries per worker (256..=32768, power of two).
    pub uring_entries: u32,
    /// Kernel-side submission polling: saves the submit syscall, spends a kernel thread per worker.
    pub sqpoll: bool,
    /// How long an idle SQPOLL thread spins before sleeping.
    #[serde(with = "serde_text")]
    pub sqpoll_idle: Duration,
    /// Bytes read from a socket at a time (also the body streaming chunk).
    pub read_buffer_bytes: usize,
    /// io_uring task-work mode: `coop` (COOP_TASKRUN + SINGLE_ISSUER: completions are not pushed
    /// to the worker by interrupts), `defer` (DEFER_TASKRUN + SINGLE_ISSUER: completion work runs
    /// only when the worker waits for events), or `default` (the kernel's signalling mode).
    pub taskrun: TaskRun,
    /// A request body of known length up to this many bytes (and within the read buffer) is read
    /// whole before an upstream connection is taken, so a slow small upload holds none. `0`: off.
    pub buffer_body_bytes: usize,
    /// After a response, a cleartext keep-alive connection waits this long for its next request
    /// with its read buffer posted (one receive per request for busy clients); past it, it gives
    /// its buffers back and waits for readability holding none (an extra poll per request).
    /// `0s`: always the readiness wait (least memory, most CPU per request).
    #[serde(with = "serde_text")]
    pub hot_read: Duration,
}

/// How the kernel runs io_uring completion work for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskRun {
    /// The kernel default: task work is signalled to the worker as it arrives.
    Default,
    /// IORING_SETUP_COOP_TASKRUN | SINGLE_ISSUER.
    #[default]
    Coop,
    /// IORING_SETUP_DEFER_TASKRUN | SINGLE_ISSUER.
    Defer,
}

/// `[limits]`: what one connection or one core may take.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsProfile {
    /// Largest request head (request line + headers); beyond it: 431.
    pub max_request_head_bytes: usize,
    /// Longest request-target; beyond it: 414.
    pub max_uri_bytes: usize,
    /// Open client connections per core; more are closed at accept.
    pub max_connections_per_core: usize,
    /// The listen backlog of each core's listener.
    pub listen_backlog: u32,
    /// Open WebSocket (upgraded) tunnels per core; more upgrades are answered 503.
    pub max_tunnels_per_core: usize,
}

/// `[upstream]`: the per-core upstream connection pools.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamProfile {
    /// Idle keep-alive connections kept per endpoint per core (LIFO).
    pub pool_max_idle_per_endpoint: usize,
    /// An idle pooled connection older than this is closed rather than reused.
    #[serde(with = "serde_text")]
    pub pool_idle_timeout: Duration,
    /// Every this long, each HTTP/2 upstream connection is sent a PING; one not answered within
    /// `h2_ping_timeout` (a peer gone without a FIN, a black-holed path) is closed, so the pool
    /// stops offering it. `0s`: off (the default: gRPC servers count pings sent without calls in
    /// flight and may answer GOAWAY `too_many_pings` when they come more often than they allow,
    /// five minutes by default).
    #[serde(with = "serde_text")]
    pub h2_ping_interval: Duration,
    /// How long a PING may go unanswered.
    #[serde(with = "serde_text")]
    pub h2_ping_timeout: Duration,
}

/// `[timeouts]`: defaults that routes may override.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsProfile {
    /// A request head must arrive completely within this (408 otherwise).
    #[serde(with = "serde_text")]
    pub header_read: Duration,
    /// A keep-alive client connection with no request in progress is closed after this.
    #[serde(with = "serde_text")]
    pub idle: Duration,
    /// Connecting to an upstream (502 `upstream_connect_failed` beyond it).
    #[serde(with = "serde_text")]
    pub connect: Duration,
    /// The upstream's response head must arrive within this (504 `upstream_timeout`).
    #[serde(with = "serde_text")]
    pub response: Duration,
    /// A body read or write that makes no progress for this long aborts the exchange.
    #[serde(with = "serde_text")]
    pub body_io: Duration,
    /// The whole request body must arrive within this, counted from its head (408
    /// `request_body_timeout`, the upstream connection closed). `0s`: no total deadline.
    /// Routes may set their own (`body_timeout`).
    #[serde(with = "serde_text")]
    pub body: Duration,
    /// After `body_grace`, a request body must keep arriving at this many bytes per second on
    /// average (408 `request_body_timeout` otherwise), so a client trickling bytes cannot hold
    /// an upstream connection. `0`: no minimum. Routes may set their own (`min_body_rate`).
    pub min_body_rate: u64,
    /// How long a request body may take before `min_body_rate` applies.
    #[serde(with = "serde_text")]
    pub body_grace: Duration,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish.
    #[serde(with = "serde_text")]
    pub drain: Duration,
    /// An upgraded (WebSocket) tunnel with no byte in either direction for this long is closed.
    #[serde(with = "serde_text")]
    pub tunnel_idle: Duration,
}

impl Default for WorkersProfile {
    fn default() -> Self {
        Self {
            count: 0,
            cpus: Vec::new(),
            pin: true,
        }
    }
}

impl Default for IoProfile {
    fn default() -> Self {
        Self {
            driver: DriverChoice::Auto,
            uring_entries: 1024,
            sqpoll: false,
            sqpoll_idle: Duration::from_millis(2),
            read_buffer_bytes: 16 * 1024,
            taskrun: TaskRun::Coop,
            buffer_body_bytes: 16 * 1024,
            hot_read: Duration::from_millis(10),
        }
    }
}

impl Default for LimitsProfile {
    fn default() -> Self {
        Self {
            max_request_head_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_connections_per_core: 10_000,
            listen_backlog: 4096,
            max_tunnels_per_core: 5_000,
        }
    }
}

impl Default for UpstreamProfile {
    fn default() -> Self {
        Self {
            pool_max_idle_per_endpoint: 64,
            pool_idle_timeout: Duration::from_secs(30),
            h2_ping_interval: Duration::ZERO,
            h2_ping_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for TimeoutsProfile {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            connect: Duration::from_secs(2),
            response: Duration::from_secs(30),
            body_io: Duration::from_secs(30),
            body: Duration::from_secs(300),
            min_body_rate: 1024,
            body_grace: Duration::from_secs(10),
            drain: Duration::from_secs(10),
            tunnel_idle: Duration::from_secs(300),
        }
    }
}

impl PerfProfile {
    /// Parses and validates profile text.
    pub fn from_toml(text: &str) -> Result<Self, CoreError> {
        let p: PerfProfile =
            toml::from_str(text).map_err(|e| CoreError::ProfileInvalid(vec![e.to_string()]))?;
        p.validate()?;
        Ok(p)
    }

    /// Loads `--profile ARG`: a file path, or the name of a built-in preset.
    pub fn load(arg: &str) -> Result<Self, CoreError> {
        let path = std::path::Path::new(arg);
        if !path.exists() {
            match arg {
                "default" => return Self::from_toml(PRESET_DEFAULT),
                "low-latency" => return Self::from_toml(PRESET_LOW_LATENCY),
                _ => {}
            }
        }
        let text = std::fs::read_to_string(path).map_err(|source| CoreError::ProfileRead {
            path: arg.to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Every problem, each with the path of its field.
    pub fn validate(&self) -> Result<(), CoreError> {
        let mut errs = Vec::new();
        let io = &self.io;
        if !(256..=32768).contains(&io.uring_entries) || !io.uring_entries.is_power_of_two() {
            errs.push(format!(
                "io.uring_entries: {} is not a power of two in 256..=32768",
                io.uring_entries
            ));
        }
        if !(512..=(4 << 20)).contains(&io.read_buffer_bytes) {
            errs.push(format!(
                "io.read_buffer_bytes: {} is not in 512..=4194304",
                io.read_buffer_bytes
            ));
        }
        let l = &self.limits;
        if !(1024..=(1 << 20)).contains(&l.max_request_head_bytes) {
            errs.push(format!(
                "limits.max_request_head_bytes: {} is not in 1024..=1048576",
                l.max_request_head_bytes
            ));
        }
        if l.max_uri_bytes < 64 || l.max_uri_bytes > l.max_request_head_bytes {
            errs.push(format!(
                "limits.max_uri_bytes: {} must be at least 64 and at most limits.max_request_head_bytes",
                l.max_uri_bytes
            ));
        }
        if l.max_connections_per_core == 0 {
            errs.push("limits.max_connections_per_core: must be at least 1".into());
        }
        let h = &self.http2;
        if h.max_concurrent_streams == 0 {
            errs.push("http2.max_concurrent_streams: must be at least 1".into());
        }
        if !(16_384..=16_777_215).contains(&h.max_frame_bytes) {
            errs.push("http2.max_frame_bytes: must be between 16384 and 16777215".into());
        }
        if !(65_535..=2_147_483_647).contains(&h.stream_window_bytes) {
            errs.push("http2.stream_window_bytes: must be between 65535 and 2^31-1".into());
        }
        if !(65_535..=2_147_483_647).contains(&h.connection_window_bytes) {
            errs.push("http2.connection_window_bytes: must be between 65535 and 2^31-1".into());
        }
        if h.max_send_buffer_bytes < 16_384 {
            errs.push("http2.max_send_buffer_bytes: must be at least 16384".into());
        }
        if l.max_tunnels_per_core == 0 {
            errs.push("limits.max_tunnels_per_core: must be at least 1 (routes can refuse upgrades with websocket = false)".into());
        }
        if l.listen_backlog == 0 {
            errs.push("limits.listen_backlog: must be at least 1".into());
        }
        let t = &self.timeouts;
        for (name, d) in [
            ("timeouts.header_read", t.header_read),
            ("timeouts.idle", t.idle),
            ("timeouts.connect", t.connect),
            ("timeouts.response", t.response),
            ("timeouts.body_io", t.body_io),
            ("timeouts.body_grace", t.body_grace),
            ("timeouts.drain", t.drain),
            ("timeouts.tunnel_idle", t.tunnel_idle),
            (
                "upstream.pool_idle_timeout",
                self.upstream.pool_idle_timeout,
            ),
            ("upstream.h2_ping_timeout", self.upstream.h2_ping_timeout),
            ("io.sqpoll_idle", self.io.sqpoll_idle),
        ] {
            if d < Duration::from_millis(1) || d > MAX_TIMEOUT {
                errs.push(format!("{name}: must be between 1ms and 24h"));
            }
        }
        if t.body > MAX_TIMEOUT {
            errs.push("timeouts.body: must be at most 24h (0s: no total deadline)".into());
        }
        let ping = self.upstream.h2_ping_interval;
        if !ping.is_zero() && (ping < Duration::from_millis(10) || ping > MAX_TIMEOUT) {
            errs.push("upstream.h2_ping_interval: 0s (off) or between 10ms and 24h".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.workers.cpus.iter().enumerate() {
            if !seen.insert(c) {
                errs.push(format!("workers.cpus[{i}]: cpu {c} is listed twice"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(CoreError::ProfileInvalid(errs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_validate() {
        let d = PerfProfile::from_toml(PRESET_DEFAULT).expect("default preset");
        let l = PerfProfile::from_toml(PRESET_LOW_LATENCY).expect("low-latency preset");
        assert_eq!(d.io.uring_entries, PerfProfile::default().io.uring_entries);
        assert!(l.io.uring_entries >= d.io.uring_entries);
    }

    #[test]
    fn empty_profile_is_the_defaults() {
        let p = PerfProfile::from_toml("").expect("empty profile");
        assert_eq!(p.timeouts.connect, Duration::from_secs(2));
        assert!(p.workers.pin);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let e = PerfProfile::from_toml("[io]\nring_size = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ring_size"), "{e}");
    }

    #[test]
    fn every_bad_value_is_listed_with_its_path() {
        let e = PerfProfile::from_toml(
            "[io]\nuring_entries = 1000\n[limits]\nmax_uri_bytes = 10\n[workers]\ncpus = [1, 1]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("io.uring_entries"), "{e}");
        assert!(e.contains("limits.max_uri_bytes"), "{e}");
        assert!(e.contains("workers.cpus[1]"), "{e}");
    }

    #[test]
    fn absurd_timeouts_are_refused() {
        let e = PerfProfile::from_toml("[timeouts]\nidle = \"48h\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("timeouts.idle: must be between 1ms and 24h"),
            "{e}"
        );
    }

    #[test]
    fn durations_need_units() {
        let e = PerfProfile::from_toml("[timeouts]\nidle = \"30\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unit"), "{e}");
    }
}
