//! The access log: one JSON line per request, written by one log thread, fed by every worker
//! without a lock, a block or a per-request allocation.
//!
//! Each worker owns an [`AccessLogWriter`]. Logging a request copies its fields into the worker's
//! current batch: fixed-size fields into a `Vec` of records, byte strings into the batch's arena
//! (records keep offsets into it). A full batch (`max_batch` records) is handed to the log thread
//! with a non-blocking send on a bounded queue; the writer carries on with an empty batch that the
//! log thread sent back, so that once warm, batches circulate and nothing is allocated. If the
//! queue is full the log thread is behind: the batch's records are counted as dropped (on a
//! single-writer counter, per worker) and the batch is reused at once. A slow disk costs log
//! lines, never request latency. Workers call [`AccessLogWriter::flush`] from a periodic tick so
//! that a partial batch waits at most one tick.
//!
//! The log thread ([`AccessLog`]) drains its queue every 20 ms (paced, never woken by a worker:
//! no futex call on the request path), formats each record as one JSON object per line into a
//! buffered writer, flushes once per cycle, and returns the emptied batches. Each cycle also acts
//! on [`AccessLog::reopen`] (log rotation: rename the file, then signal; the binary's signal
//! thread calls `reopen`) and on [`AccessLog::stop`].
//!
//! A line's keys, in order: `time` (RFC 3339 UTC with microseconds, when the request started),
//! `request_id`, `trace_id` (omitted when empty), `method`, `path`, `route` (`null` when no route
//! matched), `upstream` (`"ip:port"` or `null`), `status`, `bytes_in`, `bytes_out`, `duration_us`,
//! `upstream_us` (`null` when no upstream answered), `client_ip`, `identity` (omitted when
//! anonymous), `reason` (omitted unless the gateway made the response), `detail` (more about the
//! reason, such as an upstream TLS failure's cause; omitted when none), `cache` (what a cached
//! route's cache did: `hit`, `collapsed`, `stale`, `stale_if_error`, `revalidated`, `miss`,
//! `uncacheable`, `bypass`; omitted elsewhere), `worker`.
//!
//! Request bytes are escaped so that any byte string gives one valid JSON string on one line that
//! cannot drive a terminal: `"` and `\` are backslash-escaped; C0 controls, DEL and C1 controls
//! are written `\u00XX`; other valid UTF-8 is copied; and each byte that is not valid UTF-8 is
//! written `\u00XX` with its own value (a lone `0xff` reads back as U+00FF `ÿ`). That keeps odd
//! bytes visible for forensics where U+FFFD would erase them; the price is that a decoded string
//! cannot tell a lone invalid `0xe9` from a genuine `é` (the raw line can: the genuine one is not
//! escaped).
//!
//! Secrets: an entry has no header fields at all, so `Authorization`, cookies and API keys cannot
//! be logged. The query string is the caller's to strip ([`path_only`]); the writer also cuts the
//! path at its first `?` (or `#`) so a forgotten strip does not leak a query either.
//!
//! Accounting is exact: every record given to [`AccessLogWriter::log`] ends up counted in
//! [`AccessLog::lines_written`] or in [`AccessLog::dropped_total`], except lines that a failed
//! write left in the output buffer (counted only as [`AccessLog::io_errors`]).

mod format;
mod writer;

#[cfg(test)]
mod tests;

pub use writer::{path_only, AccessEntry, AccessLogWriter};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use ringgate_core::counter::SingleWriterCounter;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use writer::{LogBatch, ARENA_PER_RECORD};

/// How often the log thread drains its queue (and looks at the reopen and stop flags).
const POLL_EVERY: Duration = Duration::from_millis(20);

/// The log thread's output buffer.
const OUT_BUFFER: usize = 64 * 1024;

/// A returned batch whose arena grew past this many bytes per record (a burst of very long paths)
/// is shrunk back by the log thread, so that such a burst does not pin memory in every batch for
/// good. The shrink (a reallocation) happens on the log thread, not on a worker.
const ARENA_SHRINK_PER_RECORD: usize = 4 * ARENA_PER_RECORD;

/// Access log files are created readable by owner and group only: they hold client addresses and
/// identities.
const FILE_MODE: u32 = 0o640;

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    /// The process's standard output (reopen does nothing).
    Stdout,
    /// A file, created if missing and appended to; reopened by path on [`AccessLog::reopen`].
    File(PathBuf),
}

/// State shared by the writers, the log thread and the control side.
struct Shared {
    /// Each writer's dropped-records counter, registered when the writer is made.
    dropped: Mutex<Vec<Arc<SingleWriterCounter>>>,
    /// Records lost elsewhere: in a batch dropped unwritten, or whose line could not be written.
    lost: AtomicU64,
    /// Batches ever made (warm-up and bursts); flat once the pipeline is warm.
    batches_allocated: AtomicU64,
    /// Lines handed to the output buffer. Written by the log thread only.
    lines_written: SingleWriterCounter,
    /// Failed writes, flushes and reopens. Written by the log thread only.
    io_errors: SingleWriterCounter,
    reopen: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn dropped_registry(&self) -> MutexGuard<'_, Vec<Arc<SingleWriterCounter>>> {
        // The registry is only pushed to and summed; a panic elsewhere cannot leave it torn.
        self.dropped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The access log's thread and the handles to it. Make one per process with [`start`](Self::start)
/// and give each worker a [`writer`](Self::writer).
///
/// Dropping it stops the thread as [`stop`](Self::stop) does.
pub struct AccessLog {
    shared: Arc<Shared>,
    tx: Sender<LogBatch>,
    spare_rx: Receiver<LogBatch>,
    max_batch: usize,
    thread: Mutex<Option<JoinHandle<io::Result<()>>>>,
}

impl AccessLog {
    /// Opens `dest` and starts the log thread (named `ringgate-accesslog`).
    ///
    /// `queue_batches` is how many full batches may wait for the log thread before workers drop
    /// records; `max_batch` is how many records a batch holds before it is sent. Both are at
    /// least 1. Fails if the file cannot be opened or the thread cannot be spawned.
    pub fn start(dest: LogDest, queue_batches: usize, max_batch: usize) -> io::Result<AccessLog> {
        let queue_batches = queue_batches.max(1);
        let max_batch = max_batch.max(1);
        let (file, path) = match dest {
            // A duplicate of fd 1, written directly: no second line buffer behind ours.
            LogDest::Stdout => (File::from(io::stdout().as_fd().try_clone_to_owned()?), None),
            LogDest::File(path) => (open_log_file(&path)?, Some(path)),
        };
        let shared = Arc::new(Shared {
            dropped: Mutex::new(Vec::new()),
            lost: AtomicU64::new(0),
            batches_allocated: AtomicU64::new(0),
            lines_written: SingleWriterCounter::new(),
            io_errors: SingleWriterCounter::new(),
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = crossbeam_channel::bounded(queue_batches);
        // Batches in existence never exceed writers + queue + 1 (a new one is made only when none
        // came back); this room only bounds the pathological case, where a surplus batch is freed.
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(queue_batches.saturating_mul(2) + 64);
        let sink = Sink {
            out: BufWriter::with_capacity(OUT_BUFFER, file),
            path,
        };
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ringgate-accesslog".into())
            .spawn(move || {
                LogThread {
                    rx,
                    spare_tx,
                    shared: thread_shared,
                    sink,
                    line: Vec::with_capacity(1024),
                    shrink_above: max_batch.saturating_mul(ARENA_SHRINK_PER_RECORD),
                    shrink_to: max_batch.saturating_mul(ARENA_PER_RECORD),
                }
                .run()
            })?;
        Ok(AccessLog {
            shared,
            tx,
            spare_rx,
            max_batch,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A writer for one worker, with its own dropped counter (summed in
    /// [`dropped_total`](Self::dropped_total)). A writer made after [`stop`](Self::stop) counts
    /// everything it is given as dropped.
    pub fn writer(&self) -> AccessLogWriter {
        let dropped = Arc::new(SingleWriterCounter::new());
        self.shared.dropped_registry().push(dropped.clone());
        AccessLogWriter::new(
            self.shared.clone(),
            self.max_batch,
            self.tx.clone(),
            self.spare_rx.clone(),
            dropped,
        )
    }

    /// Asks the log thread to reopen its file by path, within about 100 ms (after logrotate
    /// renamed it). Lines it writes after that go to the new file; a batch sent after `reopen`
    /// returned is always among them. Only sets a flag, so it may be called from any thread. If
    /// the open fails the thread keeps the old file and counts an I/O error.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
    }

    /// A handle that can only [`reopen`](ReopenHandle::reopen), for the signal thread.
    pub fn reopen_handle(&self) -> ReopenHandle {
        ReopenHandle(self.shared.clone())
    }

    /// Lines handed to the output so far.
    pub fn lines_written(&self) -> u64 {
        self.shared.lines_written.get()
    }

    /// Records dropped so far: by every writer because the queue was full (or the log stopped),
    /// plus records lost in a batch discarded unwritten or on a failed line write.
    pub fn dropped_total(&self) -> u64 {
        let by_writers: u64 = self
            .shared
            .dropped_registry()
            .iter()
            .map(|c| c.get())
            .fold(0, u64::wrapping_add);
        by_writers.wrapping_add(self.shared.lost.load(Ordering::Relaxed))
    }

    /// Failed writes, flushes and reopens of the output so far.
    pub fn io_errors(&self) -> u64 {
        self.shared.io_errors.get()
    }

    /// Batches made so far. It stops growing once the pipeline is warm; a steady climb would mean
    /// batches are not coming back for reuse.
    pub fn batches_allocated(&self) -> u64 {
        self.shared.batches_allocated.load(Ordering::Relaxed)
    }

    /// Stops the log thread: it writes what is queued, flushes and exits; this waits for it.
    /// Writers may outlive it: what they send afterwards is counted as dropped. Calling it again
    /// does nothing. Returns the error of the final flush, or an error if the thread panicked.
    pub fn stop(&self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match thread {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("access log thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // Nobody is left to report a final flush error to.
        let _ = self.stop();
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("max_batch", &self.max_batch)
            .field("lines_written", &self.lines_written())
            .field("dropped_total", &self.dropped_total())
            .field("io_errors", &self.io_errors())
            .finish()
    }
}

/// Asks the access log thread to reopen its file; see [`AccessLog::reopen`].
#[derive(Clone)]
pub struct ReopenHandle(Arc<Shared>);

impl ReopenHandle {
    /// Same as [`AccessLog::reopen`].
    pub fn reopen(&self) {
        self.0.reopen.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for ReopenHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReopenHandle")
    }
}

fn open_log_file(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

/// The log thread's output: a buffered file, and the path to reopen it by (none for stdout).
struct Sink {
    out: BufWriter<File>,
    path: Option<PathBuf>,
}

struct LogThread {
    rx: Receiver<LogBatch>,
    spare_tx: Sender<LogBatch>,
    shared: Arc<Shared>,
    sink: Sink,
    line: Vec<u8>,
    shrink_above: usize,
    shrink_to: usize,
}

impl LogThread {
    fn run(mut self) -> io::Result<()> {
        // Paced, not woken: the thread drains the queue every POLL_EVERY and sleeps in between.
        // A worker's `try_send` then never has a sleeping receiver to wake (no futex call on the
        // request path), and the log thread makes one write per cycle instead of spinning and
        // yielding in a blocking receive per batch. Workers flush their batch every tick
        // (50 ms), so a line reaches the file within about 70 ms.
        loop {
            // The flag is read before the drain: a batch sent after `reopen` returned is seen
            // in this cycle or a later one, so it lands in the new file.
            if self.shared.reopen.swap(false, Ordering::AcqRel) {
                self.reopen();
            }
            let mut disconnected = false;
            loop {
                match self.rx.try_recv() {
                    Ok(batch) => self.write_batch(batch),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            self.flush();
            if disconnected || self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(POLL_EVERY);
        }
        while let Ok(batch) = self.rx.try_recv() {
            self.write_batch(batch);
        }
        let flushed = self.sink.out.flush();
        if flushed.is_err() {
            self.shared.io_errors.add(1);
        }
        flushed
    }

    fn write_batch(&mut self, mut batch: LogBatch) {
        for record in &batch.fixed {
            self.line.clear();
            format::push_line(&mut self.line, record, &batch.arena);
            if self.sink.out.write_all(&self.line).is_ok() {
                self.shared.lines_written.add(1);
            } else {
                self.shared.io_errors.add(1);
                self.shared.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        batch.clear();
        if batch.arena.capacity() > self.shrink_above {
            batch.arena.shrink_to(self.shrink_to);
        }
        // Full (more batches than ever needed) or stopped: the batch, now empty, is just freed.
        let _ = self.spare_tx.try_send(batch);
    }

    fn flush(&mut self) {
        if self.sink.out.flush().is_err() {
            self.shared.io_errors.add(1);
        }
    }

    fn reopen(&mut self) {
        let Some(path) = &self.sink.path else {
            return;
        };
        // What is buffered belongs to the old file.
        if self.sink.out.flush().is_err() {
            self.shared.io_errors.add(1);
        }
        match open_log_file(path) {
            Ok(file) => self.sink.out = BufWriter::with_capacity(OUT_BUFFER, file),
            Err(_) => self.shared.io_errors.add(1),
        }
    }
}
