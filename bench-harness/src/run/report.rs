//! The run report: one serde structure holding everything measured (the `--json` output), the
//! human table drawn from it, and the merged histograms kept aside for the interval log and the
//! plot. The verdict and its reasons are part of the structure, so no output can omit them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::cpu::WindowCpu;
use super::stats::{ErrorKind, ThreadStats};
use super::verdict::{judge, Evidence, Verdict};
use super::RunConfig;
use crate::units::fmt_nanos;

/// Percentiles of one measured quantity (nanoseconds).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_ns: u64,
    /// Mean.
    pub mean_ns: f64,
    /// Standard deviation.
    pub stddev_ns: f64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// 99.99th percentile.
    pub p9999_ns: u64,
    /// Largest.
    pub max_ns: u64,
}

impl Summary {
    /// Summarises a histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean(),
            stddev_ns: h.stdev(),
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            p9999_ns: h.value_at_quantile(0.9999),
            max_ns: h.max(),
        }
    }
}

/// One point of the percentile spectrum.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpectrumPoint {
    /// Percentile (0..=100).
    pub percentile: f64,
    /// Value at that percentile (ns).
    pub value_ns: u64,
}

/// The full percentile spectrum: 5 points per halving of the tail, up to the maximum.
pub fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let last = 1.0 - 1.0 / h.len() as f64;
    for k in 0..=200 {
        let q = 1.0 - 0.5f64.powf(k as f64 / 5.0);
        if q > last {
            break;
        }
        out.push(SpectrumPoint {
            percentile: q * 100.0,
            value_ns: h.value_at_quantile(q),
        });
    }
    out.push(SpectrumPoint {
        percentile: 100.0,
        value_ns: h.max(),
    });
    out
}

/// Request accounting: `scheduled == completed + errors + timeouts + censored`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Due in the measured window.
    pub scheduled: u64,
    /// Full responses, any status.
    pub completed: u64,
    /// 2xx and 3xx.
    pub success: u64,
    /// Responses completed inside the window, whenever their request was due (a warmup
    /// request answered in the window counts; one answered in the grace period does not).
    #[serde(default)]
    pub in_window: u64,
    /// Of those, 2xx and 3xx.
    #[serde(default)]
    pub in_window_success: u64,
    /// Transport errors.
    pub errors: u64,
    /// Timed out (recorded in the response time at the timeout).
    pub timeouts: u64,
    /// Unfinished when the run ended.
    pub censored: u64,
    /// Responses by status.
    pub statuses: BTreeMap<String, u64>,
    /// Errors by kind.
    pub error_kinds: BTreeMap<String, u64>,
}

impl Counts {
    /// Requests a client saw fail: transport errors, timeouts, unfinished ones and 5xx answers.
    pub fn client_failures(&self) -> u64 {
        let five: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| s.starts_with('5'))
            .map(|(_, n)| *n)
            .sum();
        self.errors + self.timeouts + self.censored + five
    }
}

/// Rates over the measured window (per second).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Rates {
    /// Scheduled.
    pub offered: f64,
    /// Completed inside the window (any status); grace-period completions do not count.
    pub achieved: f64,
    /// Successful, inside the window.
    pub success: f64,
}

/// All latency figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latencies {
    /// Intended send to last byte (the headline).
    pub response: Summary,
    /// Actual send to last byte.
    pub service: Summary,
    /// Intended to actual send.
    pub send_lag: Summary,
    /// Intended to noticed-due (generator lateness).
    pub schedule_lag: Summary,
    /// Waiting for a connection.
    pub queue_wait: Summary,
    /// Actual send to first byte.
    pub ttfb: Summary,
    /// TCP connect.
    pub connect: Summary,
    /// TLS handshake (TCP connected to handshake done), for https targets.
    #[serde(default)]
    pub tls_handshake: Summary,
    /// Generator wake-up lateness.
    pub hiccup: Summary,
}

/// Per request kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KindReport {
    /// Name.
    pub name: String,
    /// Weight.
    pub weight: f64,
    /// Responses by status class: 1xx..5xx.
    pub classes: BTreeMap<String, u64>,
    /// Responses by exact status.
    #[serde(default)]
    pub statuses: BTreeMap<String, u64>,
    /// Transport errors.
    pub errors: u64,
    /// Timeouts.
    pub timeouts: u64,
}

/// Response time of one latency group of the scenario (timeouts included at their timeout).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// Response time, intended send to last byte.
    pub response: Summary,
}

/// One generator thread (one core): its share of the core and its hiccup meter.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ThreadReport {
    /// CPU it was pinned to.
    pub cpu: Option<usize>,
    /// Its CPU time over the window as a share of the window.
    pub cpu_share: f64,
    /// How late its timed wake-ups were.
    pub hiccup: Summary,
    /// Its schedule lag.
    pub schedule_lag: Summary,
}

/// The generator's own cost.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GeneratorReport {
    /// Per thread (per core).
    #[serde(default)]
    pub per_thread: Vec<ThreadReport>,
    /// Threads.
    pub threads: usize,
    /// CPUs they were pinned to.
    pub cpus: Option<Vec<usize>>,
    /// CPU time over the window (s).
    pub cpu_seconds: f64,
    /// Generator CPU microseconds per request scheduled in the window (its cost per request,
    /// to compare with other generators at the same rate).
    #[serde(default)]
    pub us_per_request: f64,
    /// Busiest thread's share of its core.
    pub max_thread_cpu: f64,
    /// Busy share of the generator's cores, all processes.
    pub core_busy: Vec<f64>,
    /// Connections opened.
    pub connections: u64,
    /// Most open at once.
    pub peak_connections: u64,
    /// Responses after which a connection was closed (0: kept alive).
    #[serde(default)]
    pub requests_per_conn: u64,
    /// TLS handshakes completed (whole run, like `connections`).
    #[serde(default)]
    pub tls_handshakes: u64,
    /// Of those, how many resumed a session.
    #[serde(default)]
    pub tls_resumed: u64,
}

/// The TLS settings of an https run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TlsReport {
    /// Versions offered: `1.2`, `1.3` or `any`.
    pub version: String,
    /// Session resumption allowed.
    pub resume: bool,
    /// Certificate verification skipped (`--insecure`).
    pub insecure: bool,
    /// Server name given with `--sni` (else the URL host was used).
    pub sni: Option<String>,
}

/// CPU used by one account of processes (the target, or another like the upstream).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TargetCpuReport {
    /// Account name (`target`, `upstream`, ...).
    #[serde(default)]
    pub name: String,
    /// Processes.
    pub pids: Vec<u32>,
    /// CPU time over the window (s).
    pub cpu_seconds: f64,
    /// Average cores used.
    pub cores: f64,
    /// CPU microseconds per successful request.
    pub us_per_success: f64,
}

/// Everything about one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// "ringbench".
    pub tool: String,
    /// Crate version.
    pub version: String,
    /// valid / generator-limited / target-saturated.
    pub verdict: Verdict,
    /// Why not valid.
    pub reasons: Vec<String>,
    /// Target URL.
    pub target: String,
    /// Wall-clock start of the measured window (seconds since the Unix epoch); the `--hlog`
    /// log's `#[StartTime]`.
    #[serde(default)]
    pub started_unix_s: f64,
    /// TLS settings, for an https target.
    #[serde(default)]
    pub tls: Option<TlsReport>,
    /// Measured window (s).
    pub window_s: f64,
    /// Offered load description (`5000/s fixed` ...).
    pub load: String,
    /// Counts.
    pub counts: Counts,
    /// Rates.
    pub rates: Rates,
    /// Latencies.
    pub latency: Latencies,
    /// Response-time percentile spectrum.
    pub spectrum: Vec<SpectrumPoint>,
    /// Per request kind.
    pub kinds: Vec<KindReport>,
    /// Per latency group the scenario names (empty when it names none).
    #[serde(default)]
    pub groups: Vec<GroupReport>,
    /// Generator cost.
    pub generator: GeneratorReport,
    /// Target CPU, when `--target-pid` was given.
    pub target_cpu: Option<TargetCpuReport>,
    /// Every CPU account, the target's included.
    #[serde(default)]
    pub cpu_accounts: Vec<TargetCpuReport>,
    /// Merged response-time histogram (for plots and logs; not serialized).
    #[serde(skip)]
    pub response_hist: Option<Histogram<u64>>,
    /// Merged per-interval response-time histograms (for `--hlog`).
    #[serde(skip)]
    pub intervals: Vec<Histogram<u64>>,
}

fn counts(s: &ThreadStats) -> Counts {
    Counts {
        scheduled: s.scheduled,
        completed: s.completed,
        success: s.success,
        in_window: s.in_window,
        in_window_success: s.in_window_success,
        errors: s.errors,
        timeouts: s.timeouts,
        censored: s.censored,
        statuses: s
            .statuses
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code.to_string(), *n))
            .collect(),
        error_kinds: ErrorKind::ALL
            .iter()
            .filter(|k| s.error_kinds[**k as usize] > 0)
            .map(|k| (k.name().to_string(), s.error_kinds[*k as usize]))
            .collect(),
    }
}

/// Merges the threads' stats and draws the report and verdict; `started` is the wall-clock time
/// the measured window opened.
pub fn build(
    cfg: &RunConfig,
    threads: Vec<ThreadStats>,
    cpu: WindowCpu,
    started: SystemTime,
) -> RunReport {
    let max_thread_cpu = threads
        .iter()
        .map(|t| t.cpu_ns as f64 / t.wall_ns.max(1) as f64)
        .fold(0.0, f64::max);
    let per_thread = thread_reports(cfg, &threads);
    let mut all = ThreadStats::for_plan(cfg.plan.kinds.len(), cfg.plan.groups.len());
    for t in &threads {
        all.merge(t);
    }
    // Rates are per nominal window (the schedule's), CPU shares per measured wall time.
    let window_s = cfg
        .schedule
        .total()
        .saturating_sub(cfg.warmup)
        .as_secs_f64();
    let per_s = |n: u64| {
        if window_s > 0.0 {
            n as f64 / window_s
        } else {
            0.0
        }
    };
    let core_busy: Vec<(usize, f64)> = cfg
        .cpus
        .iter()
        .flatten()
        .filter_map(|c| cpu.cpu_busy.get(*c).map(|b| (*c, *b)))
        .collect();
    let evidence = evidence_of(cfg, &all, max_thread_cpu, &core_busy);
    let (verdict, reasons) = judge(&evidence, &cfg.thresholds);
    let cpu_accounts = cpu_accounts(&cpu, all.success);
    let target_cpu = cpu_accounts.iter().find(|a| a.name == "target").cloned();
    RunReport {
        tool: "ringbench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        verdict,
        reasons,
        target: cfg.target.url.clone(),
        started_unix_s: started
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
        tls: cfg.tls.as_ref().map(|t| TlsReport {
            version: t.version.name().to_string(),
            resume: t.resume,
            insecure: t.verify == super::tls::Verify::Insecure,
            sni: t.sni.clone(),
        }),
        window_s,
        load: load_label(cfg),
        counts: counts(&all),
        rates: Rates {
            offered: per_s(all.scheduled),
            achieved: per_s(all.in_window),
            success: per_s(all.in_window_success),
        },
        latency: latencies(&all),
        spectrum: spectrum(&all.response),
        kinds: kind_reports(cfg, &all),
        groups: cfg
            .plan
            .groups
            .iter()
            .zip(&all.groups)
            .map(|(name, h)| GroupReport {
                name: name.clone(),
                response: Summary::of(h),
            })
            .collect(),
        generator: generator_report(cfg, &all, per_thread, max_thread_cpu, &core_busy),
        target_cpu,
        cpu_accounts,
        response_hist: Some(all.response.clone()),
        intervals: std::mem::take(&mut all.intervals),
    }
}

/// Each load thread's CPU (pinned core and share of its wall time), hiccups and schedule lag.
fn thread_reports(cfg: &RunConfig, threads: &[ThreadStats]) -> Vec<ThreadReport> {
    threads
        .iter()
        .enumerate()
        .map(|(i, t)| ThreadReport {
            cpu: cfg
                .cpus
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| c[i % c.len()]),
            cpu_share: t.cpu_ns as f64 / t.wall_ns.max(1) as f64,
            hiccup: Summary::of(&t.hiccup),
            schedule_lag: Summary::of(&t.sched_lag),
        })
        .collect()
}

/// What the verdict is judged on: whether the generator kept its schedule and the run is sound.
fn evidence_of(
    cfg: &RunConfig,
    all: &ThreadStats,
    max_thread_cpu: f64,
    core_busy: &[(usize, f64)],
) -> Evidence {
    Evidence {
        lag_p99_ns: all.sched_lag.value_at_quantile(0.99),
        queue_wait_p99_ns: all.queue_wait.value_at_quantile(0.99),
        send_lag_p99_ns: all.send_lag.value_at_quantile(0.99),
        max_conns: cfg.max_conns,
        hiccup_max_ns: all.hiccup.max(),
        generator_cpu: max_thread_cpu,
        core_busy: core_busy.to_vec(),
        scheduled: all.scheduled,
        in_window: all.in_window,
        timeouts: all.timeouts,
        censored: all.censored,
        errors: all.errors,
    }
}

/// The CPU each accounted process group used in the window, also per successful request
/// (`success` of them); groups whose CPU could not be read are left out.
fn cpu_accounts(cpu: &WindowCpu, success: u64) -> Vec<TargetCpuReport> {
    cpu.groups
        .iter()
        .filter_map(|g| {
            g.ns.map(|ns| TargetCpuReport {
                name: g.name.clone(),
                pids: g.pids.clone(),
                cpu_seconds: ns as f64 / 1e9,
                cores: ns as f64 / cpu.wall_ns.max(1) as f64,
                us_per_success: if success > 0 {
                    ns as f64 / 1e3 / success as f64
                } else {
                    0.0
                },
            })
        })
        .collect()
}

/// The offered load in one line: rate, arrival process, duration and warm-up.
fn load_label(cfg: &RunConfig) -> String {
    format!(
        "{:.0}/s {} over {:.1}s (warmup {:.1}s)",
        cfg.schedule.mean_rate(),
        match cfg.process {
            super::ArrivalProcess::Fixed => "fixed",
            super::ArrivalProcess::Poisson => "poisson",
        },
        cfg.schedule.total().as_secs_f64(),
        cfg.warmup.as_secs_f64()
    )
}

/// The percentile summaries of every latency the run measures.
fn latencies(all: &ThreadStats) -> Latencies {
    Latencies {
        response: Summary::of(&all.response),
        service: Summary::of(&all.service),
        send_lag: Summary::of(&all.send_lag),
        schedule_lag: Summary::of(&all.sched_lag),
        queue_wait: Summary::of(&all.queue_wait),
        ttfb: Summary::of(&all.ttfb),
        connect: Summary::of(&all.connect),
        tls_handshake: Summary::of(&all.tls_handshake),
        hiccup: Summary::of(&all.hiccup),
    }
}

/// Per request kind of the plan: its weight, responses by status class, errors and timeouts.
fn kind_reports(cfg: &RunConfig, all: &ThreadStats) -> Vec<KindReport> {
    let class_names = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];
    cfg.plan
        .kinds
        .iter()
        .zip(&all.kinds)
        .map(|(k, c)| KindReport {
            name: k.name.clone(),
            weight: k.weight,
            classes: c
                .classes
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (class_names[i].to_string(), *n))
                .collect(),
            statuses: c
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            errors: c.errors,
            timeouts: c.timeouts,
        })
        .collect()
}

/// The load generator's own side: its threads and cores, CPU cost, connections and TLS.
fn generator_report(
    cfg: &RunConfig,
    all: &ThreadStats,
    per_thread: Vec<ThreadReport>,
    max_thread_cpu: f64,
    core_busy: &[(usize, f64)],
) -> GeneratorReport {
    GeneratorReport {
        per_thread,
        threads: cfg.threads,
        cpus: cfg.cpus.clone(),
        cpu_seconds: all.cpu_ns as f64 / 1e9,
        us_per_request: all.cpu_ns as f64 / 1e3 / all.scheduled.max(1) as f64,
        max_thread_cpu,
        core_busy: core_busy.iter().map(|c| c.1).collect(),
        connections: all.connections,
        peak_connections: all.peak_connections,
        requests_per_conn: cfg.requests_per_conn,
        tls_handshakes: all.tls_handshakes,
        tls_resumed: all.tls_resumed,
    }
}

fn row(out: &mut String, name: &str, s: &Summary) {
    let f = |v: u64| fmt_nanos(v as f64);
    let _ = writeln!(
        out,
        "  {name:<13}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        f(s.p50_ns),
        f(s.p90_ns),
        f(s.p99_ns),
        f(s.p999_ns),
        f(s.p9999_ns),
        f(s.max_ns),
        fmt_nanos(s.mean_ns)
    );
}

impl RunReport {
    /// True when `scheduled == completed + errors + timeouts + censored`.
    pub fn accounted(&self) -> bool {
        let c = &self.counts;
        c.scheduled == c.completed + c.errors + c.timeouts + c.censored
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        self.write_outcome(&mut o);
        self.write_counts(&mut o);
        self.write_latencies(&mut o);
        self.write_costs(&mut o);
        o
    }

    /// The title (target and load), the TLS settings and the verdict with its reasons.
    fn write_outcome(&self, o: &mut String) {
        let _ = writeln!(o, "ringbench run {}  [{}]", self.target, self.load);
        if let Some(t) = &self.tls {
            let _ = writeln!(
                o,
                "  tls          version {}  resume {}  {}{}",
                t.version,
                if t.resume { "on" } else { "off" },
                if t.insecure { "insecure" } else { "verified" },
                t.sni
                    .as_ref()
                    .map_or(String::new(), |s| format!("  sni {s}"))
            );
        }
        let verdict = self.verdict.name().to_uppercase();
        let _ = writeln!(
            o,
            "  verdict      {verdict}{}",
            if self.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", self.reasons.join("; "))
            }
        );
    }

    /// Rates, the request accounting, and responses by status and errors by kind.
    fn write_counts(&self, o: &mut String) {
        let c = &self.counts;
        let _ = writeln!(
            o,
            "  rate         offered {:.1}/s  achieved {:.1}/s  success {:.1}/s  over {:.2}s",
            self.rates.offered, self.rates.achieved, self.rates.success, self.window_s
        );
        let _ = writeln!(
            o,
            "  requests     scheduled {} = completed {} + errors {} + timeouts {} + censored {}",
            c.scheduled, c.completed, c.errors, c.timeouts, c.censored
        );
        let _ = writeln!(
            o,
            "  in window    {} completed before the window closed ({:.2}% of scheduled)",
            c.in_window,
            c.in_window as f64 * 100.0 / c.scheduled.max(1) as f64
        );
        let statuses: Vec<String> = c
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  status       {}",
            if statuses.is_empty() {
                "(none)".into()
            } else {
                statuses.join("  ")
            }
        );
        let errors: Vec<String> = c
            .error_kinds
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  errors       {}",
            if errors.is_empty() {
                "(none)".into()
            } else {
                errors.join("  ")
            }
        );
    }

    /// One row per measured latency, then per request kind when the plan mixes kinds.
    fn write_latencies(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "  latency          p50      p90      p99    p99.9   p99.99      max     mean"
        );
        let l = &self.latency;
        row(o, "response", &l.response);
        row(o, "service", &l.service);
        row(o, "ttfb", &l.ttfb);
        row(o, "send lag", &l.send_lag);
        row(o, "queue wait", &l.queue_wait);
        row(o, "schedule lag", &l.schedule_lag);
        row(o, "hiccup", &l.hiccup);
        if l.connect.count > 0 {
            row(o, "connect", &l.connect);
        }
        if l.tls_handshake.count > 0 {
            row(o, "tls handshake", &l.tls_handshake);
        }
        if self.kinds.len() > 1 {
            for k in &self.kinds {
                let classes: Vec<String> =
                    k.classes.iter().map(|(s, n)| format!("{s} {n}")).collect();
                let _ = writeln!(
                    o,
                    "  kind {:<20} {}  errors {}  timeouts {}",
                    k.name,
                    classes.join(" "),
                    k.errors,
                    k.timeouts
                );
            }
        }
    }

    /// What the run cost: the generator's threads, CPU and connections, and each accounted process group's CPU.
    fn write_costs(&self, o: &mut String) {
        let g = &self.generator;
        let _ = writeln!(
            o,
            "  generator    {} thread(s){}  cpu {:.3}s = {:.1} us CPU per request (busiest thread {:.0}%)  connections {} (peak {}{}){}",
            g.threads,
            g.cpus.as_ref().map_or(String::new(), |c| format!(" on CPU {c:?}")),
            g.cpu_seconds,
            g.us_per_request,
            g.max_thread_cpu * 100.0,
            g.connections,
            g.peak_connections,
            if g.requests_per_conn > 0 {
                format!(", {} request(s) each", g.requests_per_conn)
            } else {
                String::new()
            },
            if self.tls.is_some() {
                format!(
                    "  tls handshakes {} (resumed {})",
                    g.tls_handshakes, g.tls_resumed
                )
            } else {
                String::new()
            }
        );
        for t in &self.cpu_accounts {
            let _ = writeln!(
                o,
                "  {:<12} pids {:?}: {:.3}s = {:.3} cores, {:.1} us CPU per successful request",
                format!("{} cpu", t.name),
                t.pids,
                t.cpu_seconds,
                t.cores,
                t.us_per_success
            );
        }
    }
}
