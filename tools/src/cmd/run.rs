//! Running a started gateway until it is stopped: signals (SIGHUP reloads, SIGUSR1 reopens the
//! access log, SIGUSR2 reports heap allocations, SIGINT/SIGTERM drain), config file watching, the admin API, and offering the
//! listening sockets to a successor. `serve`, `demo` and `proxy` all end here.

use super::{serve::bind_admin, CmdResult};
use ringgate::admin::AdminServer;
use ringgate::control::Control;
use ringgate::server::RunningGateway;
use ringgate_core::handoff::{HandoffServer, ListenerGroup};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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

/// What the main thread waits for.
enum Event {
    /// A signal arrived.
    Signal(i32),
    /// A successor took the listening sockets.
    HandedOver,
}

/// SIGUSR2: the heap allocation total of a `--features count-alloc` build (read by `ringbench
/// tax --alloc-ringgate`); other builds say they do not count.
fn report_allocations() {
    #[cfg(feature = "count-alloc")]
    eprintln!("ringgate: heap allocations {}", crate::GLOBAL.allocations());
    #[cfg(not(feature = "count-alloc"))]
    eprintln!("ringgate: heap allocations not counted (build with --features count-alloc)");
}

/// Runs until a stop signal or a completed handoff: reloads on SIGHUP and file changes, reopens
/// the access log on SIGUSR1, reports heap allocations on SIGUSR2, serves the admin API, offers the sockets on `handoff`.
pub fn run_until_stopped(
    gw: RunningGateway,
    control: Arc<Control>,
    admin_listener: Option<std::net::TcpListener>,
    handoff: Option<PathBuf>,
    took_over: bool,
) -> CmdResult {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
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
    let _handoff_server = handoff
        .as_deref()
        .and_then(|path| offer_handoff(&gw, path, took_over, &tx));
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
            Ok(Event::Signal(SIGUSR2)) => report_allocations(),
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

/// Offers the gateway's listening sockets on the Unix socket `path`; a successor taking them
/// sends [`Event::HandedOver`] on `tx`. After a takeover it waits (up to 10 s) for the
/// predecessor to remove its own socket file. `None` when the socket could not be offered (said
/// on stderr; the gateway serves on).
fn offer_handoff(
    gw: &RunningGateway,
    path: &Path,
    took_over: bool,
    tx: &crossbeam_channel::Sender<Event>,
) -> Option<HandoffServer> {
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

/// The same listener groups over duplicated descriptors (a bind attempt consumes its copy).
fn groups_clone(groups: &[ListenerGroup]) -> Vec<ListenerGroup> {
    groups
        .iter()
        .map(|g| ListenerGroup {
            addr: g.addr,
            fds: g.fds.iter().filter_map(|f| f.try_clone().ok()).collect(),
        })
        .collect()
}
