//! A client connection's state and the current request's: the buffers lent to the ring, what the
//! request did so far (its tally), what admission gave it, and the plan the exchange runs.
//!
//! Every phase of the pipeline reads and writes these, so they live apart from the phases: the
//! connection loops (`h1/`, `h2/`), the phases (`request/`) and forwarding (`upstream/`) all
//! depend on this file and on none of each other's.

use crate::authn::AuthOutput;
use crate::codec::BodyKind;
use crate::engine::io::buffers::{self, BufPool};
use crate::engine::io::downstream::Downstream;
use crate::gateway::{RouteSettings, UpstreamSet};
use crate::resilience::Admission;
use crate::trace::RequestTrace;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What one request did, for metrics and the access log (reset per request).
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    /// Status sent to the client (0: none).
    pub(crate) status: u16,
    /// Why the gateway answered itself (empty when the upstream answered).
    pub(crate) reason: &'static str,
    /// Request bytes read from the client (head and body).
    pub(crate) bytes_in: u64,
    /// Response bytes written to the client.
    pub(crate) bytes_out: u64,
    /// The endpoint the request went to.
    pub(crate) upstream: Option<SocketAddr>,
    /// When the request was sent upstream.
    pub(crate) upstream_start: Option<Instant>,
    /// Time from sending the request upstream to the end of its response.
    pub(crate) upstream_us: Option<u64>,
    /// Why authentication refused the request (empty otherwise).
    pub(crate) auth_reason: &'static str,
    /// More about `reason` for the access log (an upstream TLS failure's cause), or empty.
    pub(crate) detail: &'static str,
    /// How the upstream did on the last attempt (`None`: never reached), for the breaker.
    pub(crate) upstream_ok: Option<bool>,
}

/// A client connection and its reused buffers.
///
/// `cbuf`, `ubuf` and `wbuf` come from the core's [`BufPool`] while a request is on the
/// connection, and go back to it when the connection waits with nothing buffered (and when it
/// is dropped): an idle connection holds none of them.
pub(crate) struct Conn {
    /// Where the connection's buffers come from.
    pub(crate) bufs: Rc<BufPool>,
    pub(crate) stream: Downstream,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The listener the connection came in on (its position in the config).
    pub(crate) listener: usize,
    /// The current request's path, normalized.
    pub(crate) npath: Vec<u8>,
    /// The normalized path without `;parameters` (what routes match), when it had some.
    pub(crate) mpath: Vec<u8>,
    /// The current request's ids.
    pub(crate) trace: RequestTrace,
    /// What the current request did.
    pub(crate) tally: Tally,
    /// Method then path of the current request (for the access log), split at `meta_split`.
    pub(crate) meta: Vec<u8>,
    pub(crate) meta_split: usize,
    /// Header lines the gateway adds to the current response.
    pub(crate) extra: Vec<u8>,
    /// A copy of the upstream request (head and inline body) for response-status retries.
    pub(crate) req_copy: Vec<u8>,
    /// What admission gave the current request and where it stands.
    pub(crate) admit: AdmitState,
    /// The client's IP as text, for `X-Forwarded-For`.
    pub(crate) peer_ip: Box<[u8]>,
    /// Bytes read from the client and not yet consumed (the head, body bytes, pipelined requests).
    pub(crate) cbuf: Vec<u8>,
    /// Heads the gateway writes (upstream request head, client response head).
    pub(crate) wbuf: Vec<u8>,
    /// Bytes read from the upstream.
    pub(crate) ubuf: Vec<u8>,
    /// The rewritten upstream path of the current request.
    pub(crate) path: Vec<u8>,
    /// The upstream head of the current request when its upstream speaks HTTP/2 (else the
    /// head is HTTP/1.1 text in `wbuf`).
    pub(crate) h2_head: Option<http::Request<()>>,
    /// The client opened with the HTTP/2 preface.
    pub(crate) h2c: bool,
    /// The current request is a gRPC call (refusals then carry `grpc-status`).
    pub(crate) grpc: bool,
    /// What the route's cache did for the current request.
    pub(crate) cache: crate::engine::cache::state::CacheReq,
}

impl Conn {
    /// A connection from `peer` on the listener at position `listener`, holding no buffer yet
    /// (they are taken from `bufs` when the client's bytes arrive: see `hold_buffers`).
    pub(crate) fn new(
        stream: Downstream,
        peer: SocketAddr,
        listener: usize,
        bufs: Rc<BufPool>,
    ) -> Self {
        Conn {
            bufs,
            stream,
            peer,
            listener,
            npath: Vec::new(),
            mpath: Vec::new(),
            trace: RequestTrace::default(),
            tally: Tally::default(),
            meta: Vec::new(),
            meta_split: 0,
            extra: Vec::new(),
            req_copy: Vec::new(),
            admit: AdmitState::default(),
            peer_ip: peer.ip().to_string().into_bytes().into_boxed_slice(),
            cbuf: Vec::new(),
            wbuf: Vec::new(),
            ubuf: Vec::new(),
            path: Vec::new(),
            h2_head: None,
            h2c: false,
            grpc: false,
            cache: Default::default(),
        }
    }

    /// Takes the read buffer from the pool (when not held).
    pub(crate) fn hold_read_buffer(&mut self) {
        if self.cbuf.capacity() == 0 {
            self.cbuf = self.bufs.take();
        }
    }

    /// Takes the connection's buffers from the pool (those it does not hold).
    pub(crate) fn hold_buffers(&mut self) {
        buffers::hold(&self.bufs, [&mut self.cbuf, &mut self.ubuf, &mut self.wbuf]);
    }

    /// Gives the buffers back to the pool while the connection waits with nothing buffered, and
    /// lets go of what per-request scratch grew past its usual size.
    pub(crate) fn release_buffers(&mut self) {
        buffers::release(&self.bufs, [&mut self.cbuf, &mut self.ubuf, &mut self.wbuf]);
        self.req_copy = Vec::new();
        for v in [
            &mut self.path,
            &mut self.extra,
            &mut self.meta,
            &mut self.admit.policy_headers,
        ] {
            v.clear();
            v.shrink_to(SCRATCH_KEPT);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        buffers::release(&self.bufs, [&mut self.cbuf, &mut self.ubuf, &mut self.wbuf]);
    }
}

/// Bytes of per-request scratch (path, extra header lines) an idle connection keeps.
pub(crate) const SCRATCH_KEPT: usize = 256;

/// What the admission phases gave the current request, and where it stands across the waits a
/// plan can make (a plan is made again after each wait).
#[derive(Default)]
pub(crate) struct AdmitState {
    /// What authentication gave the request.
    pub(crate) auth: AuthOutput,
    /// Header lines policies add to the response: the `WWW-Authenticate` challenge of a
    /// refusal, the `RateLimit-*` fields (empty when none).
    pub(crate) policy_headers: Vec<u8>,
    /// The request already waited for authentication once.
    pub(crate) auth_waited: bool,
    /// The request already waited for a fail-closed rate limit's store once.
    pub(crate) limit_waited: bool,
    /// The request passed the limits judged before authentication (a plan made again after a
    /// wait does not count it twice).
    pub(crate) limits_before_done: bool,
}

impl AdmitState {
    /// Forgets the waits of the request that was just planned (the next request starts fresh).
    pub(crate) fn next_request(&mut self) {
        self.auth_waited = false;
        self.limit_waited = false;
        self.limits_before_done = false;
    }
}

/// What the exchange needs to know about the current request.
pub(crate) struct Plan<'s> {
    pub(crate) head_len: usize,
    pub(crate) body: BodyKind,
    pub(crate) keep_alive: bool,
    pub(crate) http10: bool,
    pub(crate) expect_continue: bool,
    pub(crate) idempotent: bool,
    pub(crate) is_head: bool,
    pub(crate) route: &'s RouteSettings,
    pub(crate) endpoint: SocketAddr,
    /// Index of `endpoint` in the upstream's endpoints.
    pub(crate) endpoint_index: usize,
    /// The upstream (the route's, or the split backend chosen).
    pub(crate) upstream: &'s UpstreamSet,
    /// The upstream's admission of this request (breaker).
    pub(crate) admission: Admission,
    /// The request's consistent-hash key.
    pub(crate) key: Option<u64>,
    /// The request may be retried on another endpoint (idempotent, or carries the route's
    /// idempotency key header).
    pub(crate) retry_ok: bool,
    /// Metric id of the upstream.
    pub(crate) upstream_metric: u32,
    /// When the head was parsed.
    pub(crate) start: Instant,
    /// A WebSocket upgrade the upstream is asked for.
    pub(crate) websocket: bool,
    /// The client's `grpc-timeout`, if it sent one.
    pub(crate) grpc_timeout: Option<Duration>,
}

/// The connection's record of the current request (its fields, borrowed apart from the buffer
/// the head borrows).
pub(crate) struct Record<'a> {
    pub(crate) tally: &'a mut Tally,
    pub(crate) trace: &'a mut RequestTrace,
    /// Method then path, for the access log, split at `meta_split`.
    pub(crate) meta: &'a mut Vec<u8>,
    pub(crate) meta_split: &'a mut usize,
    /// The request is a gRPC call (refusals then carry `grpc-status`).
    pub(crate) grpc: &'a mut bool,
}

impl Conn {
    /// The connection's record of the current request, borrowed apart from its buffers.
    pub(crate) fn record(&mut self) -> Record<'_> {
        Record {
            tally: &mut self.tally,
            trace: &mut self.trace,
            meta: &mut self.meta,
            meta_split: &mut self.meta_split,
            grpc: &mut self.grpc,
        }
    }
}

/// Whether the client connection goes on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    KeepAlive,
    Close,
}
