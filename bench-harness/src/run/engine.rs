//! The per-core generator loop: an open-model request scheduler on a plain epoll event loop.
//!
//! # Why not glommio or monoio here
//! Pacing needs wake-ups on time to the microsecond: monoio's timer wheel rounds to 1 ms, and a
//! spin loop inside a monoio task would starve its I/O. glommio's timers are precise but it needs
//! io_uring with locked memory, warms up its first sleep for tens of ms, and brings a large
//! dependency tree; its ring buys little for a client that writes one small request and reads one
//! small response per wake-up. (That is argued, not measured: perf-reports/0007-harness-verdict
//! measures this loop against wrk and says what an io_uring generator was not measured for.)
//!
//! A single thread per core on epoll with a timerfd for the next arrival ([`super::pacer`], 1 ns
//! timer slack) wakes within a few microseconds of the schedule: per request one timer wake-up,
//! one I/O wake-up, and its lateness is measured anyway (the hiccup meter and the schedule lag),
//! so any imprecision shows in the verdict instead of hiding in the figures.
//!
//! # The loop
//! 1. every request due by now is queued with its *intended* time (never the time it is sent);
//! 2. queued requests go to idle keep-alive connections, oldest first; when none is idle, new
//!    connections are opened up to the cap, and the wait counts in the request's latency;
//! 3. timeouts are swept every fiftieth of the timeout, 5 to 50 ms (recorded at their elapsed
//!    time, not dropped);
//! 4. wait on epoll until the next arrival, then handle readiness.
//!
//! After the schedule ends, in-flight requests get a grace period; whatever is left is censored.
//!
//! Over `https://` a connection goes Connecting -> Handshaking -> Idle: it joins the idle pool
//! only once its TLS handshake is done (driven here on the same readiness events, never
//! blocking), so requests wait for it exactly as they wait for a TCP connect. With
//! `requests_per_conn` set, a connection is closed after that many responses and later requests
//! open new ones (each paying a connect, and over TLS a handshake).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Conn, InFlight, State, READ_TURN};
use super::pacer::{self, Pacer};
use super::plan::Plan;
use super::schedule::{ArrivalProcess, Arrivals, Schedule};
use super::stats::{new_interval_hist, record, ErrorKind, ThreadStats};
use super::tls::{self, TlsClient};
use crate::rng::Rng;
use crate::sys::{self, Epoll, Event, Interest};

/// How often in-flight requests are checked against the timeout: a fiftieth of it (a timeout is
/// recorded at most 2% late), within these bounds. Each check is a wake-up, and a wake-up is
/// most of what a request costs the generator.
const SWEEP_MIN: Duration = Duration::from_millis(5);
const SWEEP_MAX: Duration = Duration::from_millis(50);

/// One generator thread's orders.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Thread index.
    pub index: usize,
    /// Number of generator threads (each takes 1/threads of the rate).
    pub threads: usize,
    /// CPU to pin to.
    pub cpu: Option<usize>,
    /// Target addresses: new connections go to each in turn.
    pub addrs: Vec<SocketAddr>,
    /// Requests to send.
    pub plan: Arc<Plan>,
    /// Arrival schedule (the whole rate; this thread takes its share).
    pub schedule: Schedule,
    /// Arrival spacing.
    pub process: ArrivalProcess,
    /// Seed for arrivals, kinds and pool draws.
    pub seed: u64,
    /// Time zero of the schedule (common to all threads).
    pub start: Instant,
    /// Requests due before `start + warmup` are sent but not measured.
    pub warmup: Duration,
    /// A request unanswered this long after its intended time is a timeout.
    pub timeout: Duration,
    /// After the schedule ends, how long in-flight requests may still finish.
    pub grace: Duration,
    /// Connections opened before the start.
    pub conns: usize,
    /// Most connections this thread may have open.
    pub max_conns: usize,
    /// Interval of the response-time log, if one is kept.
    pub interval: Option<Duration>,
    /// TLS client for `https://` targets (its configuration is shared by all threads).
    pub tls: Option<TlsClient>,
    /// Close a connection after this many responses (0: keep it alive).
    pub requests_per_conn: u64,
}

struct Pending {
    intended: Instant,
    noticed: Instant,
    kind: u16,
    measured: bool,
}

/// The generator thread state.
pub struct Engine {
    cfg: EngineConfig,
    epoll: Epoll,
    pacer: Pacer,
    sweep_every: Duration,
    events: Vec<Event>,
    conns: Vec<Option<Conn>>,
    free_slots: Vec<usize>,
    idle: Vec<usize>,
    pending: VecDeque<Pending>,
    arrivals: Arrivals,
    next_due: Option<Instant>,
    rng: Rng,
    stats: ThreadStats,
    open: usize,
    connecting: usize,
    in_flight: usize,
    window_start: Instant,
    window_end: Instant,
    cpu_start: Option<Duration>,
    cpu_done: bool,
}

fn since(later: Instant, earlier: Instant) -> u64 {
    later.saturating_duration_since(earlier).as_nanos() as u64
}

fn error_kind(e: &io::Error) -> ErrorKind {
    if tls::is_tls_error(e) {
        return ErrorKind::Tls;
    }
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => ErrorKind::Reset,
        io::ErrorKind::InvalidData => ErrorKind::Protocol,
        _ => ErrorKind::Closed,
    }
}

impl Engine {
    /// Prepares the thread state (call on the generator thread).
    pub fn new(cfg: EngineConfig) -> io::Result<Self> {
        let arrivals = Arrivals::new(
            cfg.schedule.clone(),
            cfg.process,
            cfg.index,
            cfg.threads,
            cfg.seed,
        );
        let window_start = cfg.start + cfg.warmup;
        let window_end = cfg.start + cfg.schedule.total();
        let kinds = cfg.plan.kinds.len();
        let epoll = Epoll::new(256)?;
        let pacer = Pacer::new(&epoll)?;
        let sweep_every = (cfg.timeout / 50).clamp(SWEEP_MIN, SWEEP_MAX);
        let mut e = Self {
            epoll,
            pacer,
            sweep_every,
            events: Vec::with_capacity(256),
            conns: Vec::new(),
            free_slots: Vec::new(),
            idle: Vec::new(),
            pending: VecDeque::with_capacity(1024),
            next_due: None,
            rng: Rng::derive(cfg.seed, 0x005E_ED0F_4EC5, cfg.index as u64),
            stats: ThreadStats::for_plan(kinds, cfg.plan.groups.len()),
            open: 0,
            connecting: 0,
            in_flight: 0,
            window_start,
            window_end,
            cpu_start: None,
            cpu_done: false,
            arrivals,
            cfg,
        };
        e.next_due = e.due_instant();
        Ok(e)
    }

    fn due_instant(&self) -> Option<Instant> {
        self.arrivals
            .peek()
            .map(|t| self.cfg.start + Duration::from_secs_f64(t))
    }

    /// Runs the schedule to its end and returns what was measured.
    pub fn run(mut self) -> ThreadStats {
        if let Some(id) = self.cfg.cpu {
            core_affinity::set_for_current(core_affinity::CoreId { id });
        }
        sys::set_timer_slack(Duration::from_nanos(1));
        let now = Instant::now();
        for _ in 0..self.cfg.conns.min(self.cfg.max_conns) {
            self.start_connect(now);
        }
        let hard_end = self.window_end + self.cfg.grace;
        let mut next_sweep = now + self.sweep_every;
        loop {
            let now = Instant::now();
            self.window_marks(now);
            self.issue_due(now);
            self.dispatch(now);
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + self.sweep_every;
            }
            let mut wake = self.next_due;
            if self.next_due.is_none() {
                if self.pending.is_empty() && self.in_flight == 0 {
                    break;
                }
                if now >= hard_end {
                    self.censor_all();
                    break;
                }
                wake = Some(hard_end);
            }
            if self.in_flight + self.pending.len() + self.connecting > 0 {
                wake = Some(wake.map_or(next_sweep, |w| w.min(next_sweep)));
            }
            self.wait(wake);
        }
        // Everything finished early: the window still ends at its end, for the CPU figures too.
        let now = Instant::now();
        if now < self.window_end {
            std::thread::sleep(self.window_end - now);
        }
        self.window_marks(self.window_end.max(Instant::now()));
        self.stats
    }

    /// Sleeps until `wake` (on the pacing timer) or I/O.
    fn wait(&mut self, wake: Option<Instant>) {
        self.pacer.set(wake);
        self.events.clear();
        let mut events = std::mem::take(&mut self.events);
        let _ = self.epoll.wait(None, &mut events);
        let after = Instant::now();
        for ev in &events {
            if ev.token == pacer::TOKEN {
                if let Some(w) = self.pacer.on_fire() {
                    record(&mut self.stats.hiccup, since(after, w));
                }
                continue;
            }
            self.on_event(*ev, after);
        }
        self.events = events;
    }

    /// Notes CPU time when the measured window opens and closes.
    fn window_marks(&mut self, now: Instant) {
        if self.cpu_start.is_none() && now >= self.window_start {
            self.cpu_start = Some(sys::thread_cpu_time());
        }
        if !self.cpu_done && now >= self.window_end {
            self.cpu_done = true;
            let start = self.cpu_start.unwrap_or_default();
            self.stats.cpu_ns = sys::thread_cpu_time().saturating_sub(start).as_nanos() as u64;
            self.stats.wall_ns = since(self.window_end, self.window_start);
        }
    }

    fn issue_due(&mut self, now: Instant) {
        while let Some(intended) = self.next_due {
            if intended > now {
                break;
            }
            self.arrivals.pop();
            self.next_due = self.due_instant();
            let measured = intended >= self.window_start;
            if measured {
                self.stats.scheduled += 1;
                record(&mut self.stats.sched_lag, since(now, intended));
            }
            let kind = self.cfg.plan.pick(&mut self.rng) as u16;
            self.pending.push_back(Pending {
                intended,
                noticed: now,
                kind,
                measured,
            });
        }
    }

    fn pop_idle(&mut self) -> Option<usize> {
        while let Some(slot) = self.idle.pop() {
            if matches!(
                self.conns[slot].as_ref().map(|c| c.state),
                Some(State::Idle)
            ) {
                return Some(slot);
            }
        }
        None
    }

    fn dispatch(&mut self, now: Instant) {
        while !self.pending.is_empty() {
            if let Some(slot) = self.pop_idle() {
                if let Some(p) = self.pending.pop_front() {
                    self.send(slot, p, now);
                }
                continue;
            }
            let need = self.pending.len().saturating_sub(self.connecting);
            for _ in 0..need {
                if self.open >= self.cfg.max_conns {
                    break;
                }
                self.start_connect(now);
            }
            break;
        }
    }

    fn send(&mut self, slot: usize, p: Pending, now: Instant) {
        let plan = Arc::clone(&self.cfg.plan);
        let Some(conn) = self.conns[slot].as_mut() else {
            self.pending.push_front(p);
            return;
        };
        plan.render(p.kind as usize, &mut self.rng, &mut conn.wbuf);
        conn.wpos = 0;
        conn.body = plan.kinds[p.kind as usize].large_body.clone();
        conn.bpos = 0;
        let reused = conn.served > 0;
        match conn.write_pending() {
            Ok(done) => {
                conn.state = State::Busy(InFlight {
                    intended: p.intended,
                    sent: now,
                    first_byte: None,
                    kind: p.kind,
                    measured: p.measured,
                    head_only: plan.kinds[p.kind as usize].head_only,
                });
                if !done {
                    let _ = self
                        .epoll
                        .modify(conn.fd(), Interest::ReadWrite, slot as u64);
                }
                self.in_flight += 1;
                if p.measured {
                    // A connection opened after the request was queued was set up for it: that
                    // set-up is the target's (connect, handshake; reported on its own), not a
                    // wait for ringbench's pool.
                    let setup = u64::from(conn.opened >= p.noticed) * conn.setup_ns;
                    let (queued, late) = (since(now, p.noticed), since(now, p.intended));
                    record(&mut self.stats.queue_wait, queued.saturating_sub(setup));
                    record(&mut self.stats.send_lag, late.saturating_sub(setup));
                }
            }
            Err(_) if reused => {
                // A kept-alive connection the server already closed: retry on another one; the
                // extra wait stays in the request's latency.
                self.close(slot);
                self.pending.push_front(p);
            }
            Err(_) => {
                self.close(slot);
                self.fail_pending(p, ErrorKind::Write);
            }
        }
    }

    fn start_connect(&mut self, now: Instant) {
        let turn = self.cfg.index + self.stats.connections as usize;
        match Conn::connect(self.cfg.addrs[turn % self.cfg.addrs.len()], now) {
            Ok(conn) => {
                let slot = self.free_slots.pop().unwrap_or_else(|| {
                    self.conns.push(None);
                    self.conns.len() - 1
                });
                if self
                    .epoll
                    .add(conn.fd(), Interest::ReadWrite, slot as u64)
                    .is_err()
                {
                    self.free_slots.push(slot);
                    self.fail_oldest(ErrorKind::Connect);
                    return;
                }
                self.conns[slot] = Some(conn);
                self.open += 1;
                self.connecting += 1;
                self.stats.connections += 1;
                self.stats.peak_connections = self.stats.peak_connections.max(self.open as u64);
            }
            Err(_) => self.fail_oldest(ErrorKind::Connect),
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].take() {
            match conn.state {
                State::Connecting(_) | State::Handshaking { .. } => self.connecting -= 1,
                State::Busy(_) => self.in_flight -= 1,
                State::Idle => {}
            }
            self.open -= 1;
            self.free_slots.push(slot);
            // Dropping the socket closes it, which also removes it from the epoll set.
        }
    }

    fn count_error(&mut self, measured: bool, kind: u16, e: ErrorKind) {
        if measured {
            self.stats.errors += 1;
            self.stats.error_kinds[e as usize] += 1;
            self.stats.kinds[kind as usize].errors += 1;
        }
    }

    fn fail_pending(&mut self, p: Pending, e: ErrorKind) {
        self.count_error(p.measured, p.kind, e);
    }

    /// A connection attempt failed: the oldest waiting request fails with it, as it would for a
    /// real client that opened the connection for it.
    fn fail_oldest(&mut self, e: ErrorKind) {
        if let Some(p) = self.pending.pop_front() {
            self.fail_pending(p, e);
        }
    }

    /// Ends the request on `slot` with a transport error and closes the connection.
    fn fail_in_flight(&mut self, slot: usize, e: ErrorKind) {
        if let Some(State::Busy(f)) = self.conns[slot].as_ref().map(|c| c.state) {
            self.count_error(f.measured, f.kind, e);
        }
        self.close(slot);
    }

    fn on_event(&mut self, ev: Event, now: Instant) {
        let slot = ev.token as usize;
        let Some(state) = self
            .conns
            .get(slot)
            .and_then(|c| c.as_ref())
            .map(|c| c.state)
        else {
            return;
        };
        match state {
            State::Connecting(started) => self.on_connected(slot, started, now),
            State::Handshaking { tcp_done, .. } => self.drive_handshake(slot, tcp_done, now),
            State::Busy(_) | State::Idle => {
                if ev.writable {
                    self.on_writable(slot);
                }
                if ev.readable {
                    self.on_readable(slot, now);
                }
            }
        }
    }

    fn on_connected(&mut self, slot: usize, started: Instant, now: Instant) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.connect_result().is_err() {
            self.close(slot);
            self.fail_oldest(ErrorKind::Connect);
            return;
        }
        if let Some(client) = &self.cfg.tls {
            match client.connection() {
                Ok(t) => conn.tls = Some(Box::new(t)),
                Err(_) => {
                    self.close(slot);
                    return self.fail_oldest(ErrorKind::Tls);
                }
            }
            conn.state = State::Handshaking {
                started,
                tcp_done: now,
            };
            if now >= self.window_start {
                record(&mut self.stats.connect, since(now, started));
            }
            return self.drive_handshake(slot, now, now);
        }
        conn.state = State::Idle;
        conn.setup_ns = since(now, started);
        let _ = self.epoll.modify(conn.fd(), Interest::Read, slot as u64);
        self.connecting -= 1;
        if now >= self.window_start {
            record(&mut self.stats.connect, since(now, started));
        }
        self.idle.push(slot);
    }

    /// Moves a TLS handshake on; when done, the connection joins the idle pool.
    fn drive_handshake(&mut self, slot: usize, tcp_done: Instant, now: Instant) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let Some(t) = conn.tls.as_deref_mut() else {
            return;
        };
        match tls::handshake(t, &conn.sock) {
            Ok(true) => {
                let resumed = tls::resumed(t);
                conn.state = State::Idle;
                conn.setup_ns = since(now, conn.opened);
                let _ = self.epoll.modify(conn.fd(), Interest::Read, slot as u64);
                self.connecting -= 1;
                self.stats.tls_handshakes += 1;
                self.stats.tls_resumed += u64::from(resumed);
                if now >= self.window_start {
                    record(&mut self.stats.tls_handshake, since(now, tcp_done));
                }
                self.idle.push(slot);
            }
            Ok(false) => {
                // Write interest only while records wait for the socket: level-triggered EPOLLOUT
                // would otherwise wake the loop until the server's flight arrives.
                let interest = if t.wants_write() {
                    Interest::ReadWrite
                } else {
                    Interest::Read
                };
                let _ = self.epoll.modify(conn.fd(), interest, slot as u64);
            }
            Err(_) => {
                self.close(slot);
                self.fail_oldest(ErrorKind::Tls);
            }
        }
    }

    fn on_writable(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if !conn.has_unsent() {
            return;
        }
        match conn.write_pending() {
            Ok(true) => {
                let _ = self.epoll.modify(conn.fd(), Interest::Read, slot as u64);
            }
            Ok(false) => {}
            Err(_) => self.fail_in_flight(slot, ErrorKind::Write),
        }
    }

    fn on_readable(&mut self, slot: usize, now: Instant) {
        let mut turn = 0;
        loop {
            let Some(conn) = self.conns[slot].as_mut() else {
                return;
            };
            if turn >= READ_TURN && conn.short_read_drains() {
                // Enough for this turn: level-triggered EPOLLIN brings the rest on the next one,
                // after the schedule had its say (a 10 MiB download must not hold the loop).
                return;
            }
            let n = match conn.read_some() {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => return self.fail_in_flight(slot, error_kind(&e)),
            };
            if n == 0 {
                return self.on_eof(slot, now);
            }
            turn += n;
            let State::Busy(mut f) = conn.state else {
                // Bytes nobody asked for (or a close notice on an idle connection): drop it.
                return self.close(slot);
            };
            if f.first_byte.is_none() {
                f.first_byte = Some(now);
                conn.state = State::Busy(f);
            }
            let (used, done) = match conn.reader.feed(&conn.rbuf[..conn.rlen], f.head_only) {
                Ok(r) => r,
                Err(_) => return self.fail_in_flight(slot, ErrorKind::Protocol),
            };
            conn.consume(used);
            if let Some(done) = done {
                let leftover = conn.has_leftover();
                self.complete(slot, done.status, done.close || leftover, now);
                return;
            }
            if conn.short_read_drains() && conn.rlen < conn.rbuf.len() && n < conn.rbuf.len() / 2 {
                // A short read drained the socket; epoll will say when more arrives.
                return;
            }
        }
    }

    fn on_eof(&mut self, slot: usize, now: Instant) {
        let done = self.conns[slot].as_mut().and_then(|c| c.reader.eof());
        match done {
            Some(d) => self.complete(slot, d.status, true, now),
            None => self.fail_in_flight(slot, ErrorKind::Closed),
        }
    }

    fn complete(&mut self, slot: usize, status: u16, close: bool, now: Instant) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let State::Busy(f) = conn.state else {
            return;
        };
        conn.state = State::Idle;
        conn.served += 1;
        self.in_flight -= 1;
        let limit = self.cfg.requests_per_conn;
        let retire = limit > 0 && conn.served >= limit;
        if retire && !close {
            conn.say_goodbye();
        }
        let close = close || retire;
        if now >= self.window_start && now < self.window_end {
            self.stats.in_window += 1;
            self.stats.in_window_success += u64::from((200..400).contains(&status));
        }
        if f.measured {
            let s = &mut self.stats;
            let rt = since(now, f.intended);
            s.record_response(self.cfg.plan.kinds[f.kind as usize].group, rt);
            record(&mut s.service, since(now, f.sent));
            record(&mut s.ttfb, since(f.first_byte.unwrap_or(now), f.sent));
            s.completed += 1;
            s.statuses[(status as usize).min(599)] += 1;
            s.kinds[f.kind as usize].count_status(status);
            if (200..400).contains(&status) {
                s.success += 1;
            }
            self.record_interval(now, rt);
        }
        if close {
            self.close(slot);
        } else {
            self.idle.push(slot);
        }
    }

    fn record_interval(&mut self, now: Instant, rt: u64) {
        let Some(iv) = self.cfg.interval else {
            return;
        };
        let idx = (since(now, self.window_start) / iv.as_nanos().max(1) as u64) as usize;
        let idx = idx.min(100_000);
        if self.stats.intervals.len() <= idx {
            self.stats.intervals.resize_with(idx + 1, new_interval_hist);
        }
        record(&mut self.stats.intervals[idx], rt);
    }

    fn count_timeout(&mut self, measured: bool, kind: u16, intended: Instant, now: Instant) {
        if measured {
            self.stats.timeouts += 1;
            self.stats.kinds[kind as usize].timeouts += 1;
            let rt = since(now, intended);
            let group = self.cfg.plan.kinds[kind as usize].group;
            self.stats.record_response(group, rt);
            self.record_interval(now, rt);
        }
    }

    /// Times out in-flight and queued requests past the timeout, and stuck connects.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.cfg.timeout;
        for slot in 0..self.conns.len() {
            let Some(state) = self.conns[slot].as_ref().map(|c| c.state) else {
                continue;
            };
            match state {
                State::Busy(f) if now.saturating_duration_since(f.intended) >= timeout => {
                    self.count_timeout(f.measured, f.kind, f.intended, now);
                    self.close(slot);
                }
                State::Connecting(t) | State::Handshaking { started: t, .. }
                    if now.saturating_duration_since(t) >= timeout =>
                {
                    self.close(slot);
                    self.fail_oldest(ErrorKind::ConnectTimeout);
                }
                _ => {}
            }
        }
        while let Some(p) = self.pending.front() {
            if now.saturating_duration_since(p.intended) < timeout {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                self.count_timeout(p.measured, p.kind, p.intended, now);
            }
        }
    }

    /// The grace period is over: whatever is unfinished is censored.
    fn censor_all(&mut self) {
        let queued = self.pending.drain(..).filter(|p| p.measured).count() as u64;
        let flying = self
            .conns
            .iter()
            .flatten()
            .filter(|c| matches!(c.state, State::Busy(f) if f.measured))
            .count() as u64;
        self.stats.censored += queued + flying;
    }
}
