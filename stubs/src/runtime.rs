//! Building a monoio runtime the way ringgate does: io_uring when the kernel allows it, epoll
//! otherwise. `FusionDriver` only falls back when its io_uring *probe* fails; when the probe
//! passes but the real ring cannot be built (memlock limits, a large ring), `build()` errors, so
//! we catch that and build the legacy driver ourselves. `MONOIO_FORCE_LEGACY_DRIVER=1` forces
//! epoll (monoio reads it once per process).

use std::future::Future;
use std::io;

use serde::Serialize;

/// Which I/O driver a runtime ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// io_uring.
    IoUring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        })
    }
}

/// Ring entries: enough for a few hundred connections' reads and writes in flight.
const RING_ENTRIES: u32 = 1024;

/// Builds a runtime on the calling thread, tells `ready` which driver it got (or why none could
/// be built), and runs `make(driver)` to completion on it.
pub fn block_on<F, Fut>(make: F, ready: impl FnOnce(io::Result<Driver>)) -> Option<Fut::Output>
where
    F: FnOnce(Driver) -> Fut,
    Fut: Future,
{
    let fusion = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(RING_ENTRIES)
        .enable_timer()
        .build();
    match fusion {
        Ok(mut rt) => {
            let driver = match &rt {
                monoio::FusionRuntime::Uring(_) => Driver::IoUring,
                monoio::FusionRuntime::Legacy(_) => Driver::Epoll,
            };
            ready(Ok(driver));
            Some(rt.block_on(make(driver)))
        }
        Err(_) => {
            let legacy = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .with_entries(RING_ENTRIES)
                .enable_timer()
                .build();
            match legacy {
                Ok(mut rt) => {
                    ready(Ok(Driver::Epoll));
                    Some(rt.block_on(make(Driver::Epoll)))
                }
                Err(e) => {
                    ready(Err(e));
                    None
                }
            }
        }
    }
}
