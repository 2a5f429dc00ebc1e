//! The worker side: copy an entry into the current batch, hand full batches to the log thread.

use super::Shared;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use ringgate_core::counter::SingleWriterCounter;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What one finished request puts in the access log. Everything is borrowed:
/// [`AccessLogWriter::log`] copies it into the worker's current batch.
///
/// There is deliberately no field for headers: an `Authorization` header, a cookie or an API key
/// cannot reach the log, whatever a caller does. A query string can carry secrets too
/// (`?api_key=…`): `path` must be the path alone. Strip the query with [`path_only`]; as a second
/// line of defence, `log` itself stores the path only up to its first `?` or `#`.
#[derive(Debug, Clone, Copy)]
pub struct AccessEntry<'a> {
    /// When the request started (its first byte read), in microseconds since the Unix epoch.
    pub start_unix_micros: u64,
    /// The request id the gateway assigned or accepted.
    pub request_id: &'a [u8],
    /// The trace id (W3C trace context), or empty when there is none.
    pub trace_id: &'a [u8],
    /// The request method, as received.
    pub method: &'a [u8],
    /// The request path, without its query (see [`path_only`]).
    pub path: &'a [u8],
    /// The name of the route that matched, or empty when none did.
    pub route: &'a [u8],
    /// The upstream the request was sent to, if any.
    pub upstream: Option<SocketAddr>,
    /// The status sent to the client.
    pub status: u16,
    /// Bytes read from the client for this request (head and body).
    pub bytes_in: u64,
    /// Bytes written to the client for this request (head and body).
    pub bytes_out: u64,
    /// Time from the request's start to the end of its response, in microseconds.
    pub total_micros: u64,
    /// Time spent waiting on the upstream, in microseconds, if one answered.
    pub upstream_micros: Option<u64>,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The authenticated identity (a key name, a subject), or empty when anonymous. Never the
    /// credential itself.
    pub identity: &'a [u8],
    /// Why the gateway made the response itself (`"no_route"`, `"upstream_timeout"`, …), or
    /// empty when the upstream's response was relayed.
    pub reason: &'static str,
    /// More about `reason` (an upstream TLS failure's cause: `"name_mismatch"`...), or empty.
    pub detail: &'static str,
    /// What the route's cache did (`hit`, `miss`, `stale`...), or empty off cached routes.
    pub cache: &'static str,
    /// The index of the worker that served the request.
    pub worker: u16,
}

/// The path part of a request target: everything before the first `?` (the query) or `#`.
///
/// An origin-form target cannot hold a raw `?` in its path, so the first one always starts the
/// query. The query is left out of the access log because it may carry credentials.
pub fn path_only(target: &[u8]) -> &[u8] {
    match memchr::memchr2(b'?', b'#', target) {
        Some(end) => target.get(..end).unwrap_or(target),
        None => target,
    }
}

/// Where a string of a record sits in its batch's arena.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) len: usize,
}

/// The fixed-size part of a record; its strings live in the batch's arena.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fixed {
    pub(super) start_unix_micros: u64,
    pub(super) request_id: Span,
    pub(super) trace_id: Span,
    pub(super) method: Span,
    pub(super) path: Span,
    pub(super) route: Span,
    pub(super) identity: Span,
    pub(super) upstream: Option<SocketAddr>,
    pub(super) status: u16,
    pub(super) worker: u16,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) total_micros: u64,
    pub(super) upstream_micros: Option<u64>,
    pub(super) client_ip: IpAddr,
    pub(super) reason: &'static str,
    pub(super) detail: &'static str,
    pub(super) cache: &'static str,
}

/// Arena bytes reserved per record in a new batch: room for typical ids, paths and routes, so that
/// a batch rarely grows.
pub(super) const ARENA_PER_RECORD: usize = 256;

/// Records moving between a worker and the log thread, and back again empty for reuse.
///
/// A batch dropped while it still holds records (in the queue when the log thread stopped, or in
/// a writer dropped unflushed) counts them as dropped, so every logged record ends up either
/// written or counted.
pub(super) struct LogBatch {
    pub(super) fixed: Vec<Fixed>,
    pub(super) arena: Vec<u8>,
    shared: Arc<Shared>,
}

impl LogBatch {
    /// A batch with room for `records` records. Counted in [`Shared::batches_allocated`].
    pub(super) fn new(shared: &Arc<Shared>, records: usize) -> Self {
        shared.batches_allocated.fetch_add(1, Ordering::Relaxed);
        Self {
            fixed: Vec::with_capacity(records),
            arena: Vec::with_capacity(records.saturating_mul(ARENA_PER_RECORD)),
            shared: shared.clone(),
        }
    }

    /// A batch with no storage at all (allocates nothing): a stand-in while the real one is away.
    fn placeholder(shared: &Arc<Shared>) -> Self {
        Self {
            fixed: Vec::new(),
            arena: Vec::new(),
            shared: shared.clone(),
        }
    }

    /// Empties the batch, keeping its capacity.
    pub(super) fn clear(&mut self) {
        self.fixed.clear();
        self.arena.clear();
    }

    fn push_str(&mut self, s: &[u8]) -> Span {
        let start = self.arena.len();
        self.arena.extend_from_slice(s);
        Span {
            start,
            len: s.len(),
        }
    }
}

impl Drop for LogBatch {
    fn drop(&mut self) {
        if !self.fixed.is_empty() {
            self.shared
                .lost
                .fetch_add(self.fixed.len() as u64, Ordering::Relaxed);
        }
    }
}

/// One worker's access log handle, from [`AccessLog::writer`](super::AccessLog::writer).
///
/// [`log`](Self::log) copies an entry into the current batch; a full batch goes to the log thread
/// with a non-blocking send, and is replaced by an empty one the log thread returned. In steady
/// state a worker neither blocks, nor formats, nor allocates. When the log thread falls behind and
/// its queue is full, the batch's records are counted as dropped and the batch is reused at once.
///
/// Call [`flush`](Self::flush) from a periodic tick (every 50–100 ms) so that a quiet worker's
/// records do not wait for a full batch. Dropping the writer flushes it.
pub struct AccessLogWriter {
    batch: LogBatch,
    max_batch: usize,
    tx: Sender<LogBatch>,
    spare: Receiver<LogBatch>,
    dropped: Arc<SingleWriterCounter>,
    shared: Arc<Shared>,
}

impl AccessLogWriter {
    pub(super) fn new(
        shared: Arc<Shared>,
        max_batch: usize,
        tx: Sender<LogBatch>,
        spare: Receiver<LogBatch>,
        dropped: Arc<SingleWriterCounter>,
    ) -> Self {
        Self {
            batch: LogBatch::new(&shared, max_batch),
            max_batch,
            tx,
            spare,
            dropped,
            shared,
        }
    }

    /// Records one finished request. Never blocks; sends the batch when it is full.
    ///
    /// The path is stored up to its first `?` or `#` (see [`path_only`]), so a query string
    /// never reaches the log even when the caller forgot to strip it.
    pub fn log(&mut self, e: &AccessEntry<'_>) {
        let b = &mut self.batch;
        let fixed = Fixed {
            start_unix_micros: e.start_unix_micros,
            request_id: b.push_str(e.request_id),
            trace_id: b.push_str(e.trace_id),
            method: b.push_str(e.method),
            path: b.push_str(path_only(e.path)),
            route: b.push_str(e.route),
            identity: b.push_str(e.identity),
            upstream: e.upstream,
            status: e.status,
            worker: e.worker,
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
            total_micros: e.total_micros,
            upstream_micros: e.upstream_micros,
            client_ip: e.client_ip,
            reason: e.reason,
            detail: e.detail,
            cache: e.cache,
        };
        b.fixed.push(fixed);
        if b.fixed.len() >= self.max_batch {
            self.send();
        }
    }

    /// Sends the current batch, however few records it holds. Never blocks.
    pub fn flush(&mut self) {
        if !self.batch.fixed.is_empty() {
            self.send();
        }
    }

    /// How many of this writer's records were dropped because the log thread's queue was full
    /// (or the log had stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Records waiting in the current batch.
    pub fn pending(&self) -> usize {
        self.batch.fixed.len()
    }

    fn send(&mut self) {
        if self.hand_off() {
            self.batch = match self.spare.try_recv() {
                Ok(spare) => spare,
                Err(_) => LogBatch::new(&self.shared, self.max_batch),
            };
        }
    }

    /// Sends the current batch, leaving the storage-less placeholder in its place when the send
    /// succeeded (and returning true), or the emptied batch itself when the records were dropped.
    fn hand_off(&mut self) -> bool {
        let batch = std::mem::replace(&mut self.batch, LogBatch::placeholder(&self.shared));
        match self.tx.try_send(batch) {
            Ok(()) => true,
            Err(TrySendError::Full(mut batch) | TrySendError::Disconnected(mut batch)) => {
                self.dropped.add(batch.fixed.len() as u64);
                batch.clear();
                self.batch = batch;
                false
            }
        }
    }
}

impl Drop for AccessLogWriter {
    fn drop(&mut self) {
        // No replacement batch is needed any more.
        if !self.batch.fixed.is_empty() {
            self.hand_off();
        }
    }
}

impl std::fmt::Debug for AccessLogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogWriter")
            .field("pending", &self.batch.fixed.len())
            .field("max_batch", &self.max_batch)
            .field("dropped", &self.dropped.get())
            .finish()
    }
}
