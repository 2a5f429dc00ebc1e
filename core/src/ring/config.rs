//! How a worker's ring is built, and what the kernel turned out to support.

/// How the kernel runs completion work for this ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskRun {
    /// Default kernel behaviour (task work may interrupt the thread).
    Plain,
    /// `COOP_TASKRUN` with the task-run flag: no interrupting IPIs; work runs at the next enter.
    Coop,
    /// `SINGLE_ISSUER` + `DEFER_TASKRUN`: completion work runs only when the thread waits for
    /// completions (fewest wakes; every enter must ask for events).
    Defer,
}

/// A ring's build settings.
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    /// Submission queue entries.
    pub sq: u32,
    /// Completion queue entries (at least twice `sq`: many armed multishot receives complete
    /// without a submission each).
    pub cq: u32,
    /// Task-run mode.
    pub taskrun: TaskRun,
    /// Provided receive buffers (a power of two; 0: no buffer ring, no multishot receive).
    pub buffers: u16,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
    /// Register the ring's own fd, so each enter skips the fd lookup.
    pub register_ring_fd: bool,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            sq: 256,
            cq: 1024,
            taskrun: TaskRun::Coop,
            buffers: 256,
            buffer_size: 16 * 1024,
            register_ring_fd: true,
        }
    }
}

/// What the built ring has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// The ring fd is registered (enters use its index).
    pub registered_ring_fd: bool,
    /// The kernel takes `min_wait` on waits (6.12+).
    pub min_wait: bool,
    /// A provided buffer ring is registered (multishot receive works).
    pub buf_ring: bool,
}
