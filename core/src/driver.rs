//! The I/O driver of a worker: io_uring by default, epoll when the host refuses io_uring.
//!
//! monoio's `FusionDriver` only falls back when its io_uring probe fails; a ring that probes fine
//! but then cannot be built (a large `uring_entries`, SQPOLL without privilege, a seccomp filter on
//! `io_uring_setup`) makes `build()` fail instead. So we build the io_uring runtime ourselves and,
//! under `driver = "auto"`, catch that failure and build the epoll runtime, remembering why: the
//! start line says which driver runs and, for a fallback, the reason.

use crate::profile::{DriverChoice, IoProfile, TaskRun};
use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder};
use std::future::Future;

/// The driver a worker actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// io_uring.
    IoUring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

impl DriverKind {
    /// `io_uring` or `epoll`, as the start line prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

/// A built runtime of either kind.
pub enum AnyRuntime {
    /// An io_uring runtime with timers.
    Uring(Runtime<TimeDriver<IoUringDriver>>),
    /// An epoll runtime with timers.
    Epoll(Runtime<TimeDriver<LegacyDriver>>),
}

/// A runtime and why it is the kind it is.
pub struct BuiltRuntime {
    /// The runtime.
    pub runtime: AnyRuntime,
    /// Which driver it runs.
    pub kind: DriverKind,
    /// Why io_uring was not used under `auto`, if it was not.
    pub fallback_reason: Option<String>,
}

/// True when the environment forces epoll (`MONOIO_FORCE_LEGACY_DRIVER=1`, as monoio reads it).
fn env_forces_epoll() -> bool {
    std::env::var("MONOIO_FORCE_LEGACY_DRIVER").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Builds the runtime for the calling thread as the profile says.
pub fn build_runtime(io: &IoProfile) -> std::io::Result<BuiltRuntime> {
    let forced = io.driver == DriverChoice::Epoll || env_forces_epoll();
    if forced {
        return Ok(BuiltRuntime {
            runtime: AnyRuntime::Epoll(
                RuntimeBuilder::<LegacyDriver>::new()
                    .enable_timer()
                    .build()?,
            ),
            kind: DriverKind::Epoll,
            fallback_reason: None,
        });
    }
    let mut urb = io_uring::IoUring::builder();
    if io.sqpoll {
        let idle_ms = u32::try_from(io.sqpoll_idle.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        urb.setup_sqpoll(idle_ms);
    }
    match io.taskrun {
        TaskRun::Default => {}
        TaskRun::Coop => {
            urb.setup_coop_taskrun().setup_single_issuer();
        }
        TaskRun::Defer => {
            urb.setup_defer_taskrun().setup_single_issuer();
        }
    }
    let uring = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(io.uring_entries)
        .uring_builder(urb)
        .enable_timer()
        .build();
    match uring {
        Ok(rt) => Ok(BuiltRuntime {
            runtime: AnyRuntime::Uring(rt),
            kind: DriverKind::IoUring,
            fallback_reason: None,
        }),
        Err(e) if io.driver == DriverChoice::Auto => Ok(BuiltRuntime {
            runtime: AnyRuntime::Epoll(
                RuntimeBuilder::<LegacyDriver>::new()
                    .enable_timer()
                    .build()?,
            ),
            kind: DriverKind::Epoll,
            fallback_reason: Some(format!("io_uring unavailable: {e}")),
        }),
        Err(e) => Err(e),
    }
}

impl AnyRuntime {
    /// Runs `make()`'s future to completion on this runtime.
    pub fn block_on<F, Fut>(&mut self, make: F) -> Fut::Output
    where
        F: FnOnce() -> Fut,
        Fut: Future,
    {
        match self {
            AnyRuntime::Uring(rt) => rt.block_on(make()),
            AnyRuntime::Epoll(rt) => rt.block_on(make()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_epoll_builds_the_legacy_driver() {
        let io = IoProfile {
            driver: DriverChoice::Epoll,
            ..IoProfile::default()
        };
        let mut b = build_runtime(&io).expect("epoll runtime");
        assert_eq!(b.kind, DriverKind::Epoll);
        assert_eq!(b.runtime.block_on(|| async { 7 }), 7);
    }

    #[test]
    fn auto_runs_some_driver_and_says_which() {
        let mut b = build_runtime(&IoProfile::default()).expect("auto runtime");
        if b.kind == DriverKind::Epoll && !env_forces_epoll() {
            assert!(b.fallback_reason.is_some(), "a fallback must say why");
        }
        let slept = b.runtime.block_on(|| async {
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            true
        });
        assert!(slept);
    }

    #[test]
    fn an_unbuildable_ring_falls_back_under_auto() {
        // 32768 entries with SQPOLL and a zero idle may or may not build here; what matters is
        // that auto never fails where epoll works.
        let io = IoProfile {
            uring_entries: 32768,
            sqpoll: true,
            ..IoProfile::default()
        };
        let b = build_runtime(&io).expect("auto must fall back rather than fail");
        assert!(matches!(b.kind, DriverKind::IoUring | DriverKind::Epoll));
    }
}
