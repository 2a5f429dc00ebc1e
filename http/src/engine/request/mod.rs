//! The request pipeline: what happens to a request between its buffered bytes and its
//! forwarding, as named phases in one order ([`plan`]):
//!
//! | phase   | file         | what it decides                                                    |
//! |---------|--------------|--------------------------------------------------------------------|
//! | parse   | `parse.rs`   | the head, parsed in place; the request's record (ids, log fields)   |
//! | route   | `route.rs`   | the path normalized, the listener's header policy, the route       |
//! | admit   | `admit.rs`   | the route's policy phases: limits, authentication, client cert     |
//! | choose  | `choose.rs`  | WebSocket, split, breaker and bulkhead, the endpoint               |
//! | prepare | `prepare.rs` | retry eligibility, the upstream head written once: the [`Plan`]    |
//!
//! The connection loop then forwards the plan (`upstream/exchange.rs`: attempts, retries, the
//! body both ways, the relay) and records the request (`observe.rs`). A phase that stops the
//! request returns a [`Stop`]: answer it (`answer.rs`), wait for work off the core and plan
//! again (`wait.rs`), or read more bytes. The head borrows the connection's read buffer, so
//! planning is synchronous and nothing of it lives across an await.

pub(crate) mod admit;
pub(crate) mod answer;
pub(crate) mod choose;
pub(crate) mod observe;
pub(crate) mod parse;
pub(crate) mod prepare;
pub(crate) mod route;
pub(crate) mod state;
pub(crate) mod wait;

use crate::codec::{BodyKind, MAX_HEADERS};
use crate::engine::worker::Worker;
use crate::error::Refusal;
use crate::gateway::{Gateway, RouteSettings};
use crate::resilience::Fallback;
use state::{Conn, Plan};

/// Why planning stopped short of a [`Plan`].
pub(crate) enum Stop<'s> {
    /// The head is not complete yet: read more.
    NeedMore,
    /// Answer with a gateway-made response; when it does not close, `consumed` bytes (the
    /// bodiless request's head) are dropped from the buffer and the connection goes on.
    Refuse {
        r: Refusal,
        consumed: usize,
        /// The request was HTTP/1.0 (a kept connection must then be announced).
        http10: bool,
        /// The route, when the request matched one.
        route: Option<&'s RouteSettings>,
        /// The route's own response to give instead (breaker open).
        fallback: Option<&'s Fallback>,
    },
    /// Work off the core (authentication, or a fail-closed rate limit's store) decides: wait
    /// for it, then plan again.
    Wait(wait::OffCore),
}

/// How a refusal of the current (parsed) request answers: whether the connection can stay, and
/// what is consumed from the buffer if it does.
#[derive(Clone, Copy)]
pub(crate) struct Refuser {
    /// The request had no body to skip and the client wants to keep the connection.
    reusable: bool,
    head_len: usize,
    http10: bool,
}

impl Refuser {
    fn of(req: &crate::codec::RequestHead<'_, '_>) -> Self {
        Refuser {
            reusable: req.body == BodyKind::Empty && req.keep_alive,
            head_len: req.head_len,
            http10: req.minor_version == 0,
        }
    }

    /// The stop that refuses the request with `r` (on `route`, when it matched one).
    pub(crate) fn refuse<'s>(self, r: Refusal, route: Option<&'s RouteSettings>) -> Stop<'s> {
        self.answer(r, route, None)
    }

    /// As [`Refuser::refuse`], answering with the route's `fallback` when it has one.
    pub(crate) fn answer<'s>(
        self,
        r: Refusal,
        route: Option<&'s RouteSettings>,
        fallback: Option<&'s Fallback>,
    ) -> Stop<'s> {
        Stop::Refuse {
            r: if self.reusable { r } else { r.closing() },
            consumed: self.head_len,
            http10: self.http10,
            route,
            fallback,
        }
    }
}

/// Plans the request whose head is buffered: every phase in order, each of which may stop it.
pub(crate) fn plan<'s, G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    snap: &'s G,
) -> Result<Plan<'s>, Stop<'s>> {
    if c.cbuf.is_empty() {
        return Err(Stop::NeedMore);
    }
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Conn {
        cbuf,
        stream,
        peer,
        listener,
        npath,
        mpath,
        trace,
        tally,
        meta,
        meta_split,
        admit: admitted,
        peer_ip,
        wbuf,
        path,
        grpc,
        ..
    } = c;
    let mut record = state::Record {
        tally,
        trace,
        meta,
        meta_split,
        grpc,
    };
    let (req, grpc_timeout) = parse::head(cbuf, &mut hs, w, &mut record)?;
    let refuser = Refuser::of(&req);
    let paths = route::Scratch {
        normalized: npath,
        matching: mpath,
        upstream: path,
    };
    let routed = route::route(snap, *listener, &req, paths, refuser)?;
    let identity = stream.identity();
    let cx = admit::Cx {
        w,
        snap,
        route: routed.route,
        headers: req.headers,
        peer: peer.ip(),
        identity,
        st: admitted,
        tally: record.tally,
    };
    admit::run(cx).stop(refuser, routed.route)?;
    let choice = choose::choose(w, snap, &routed, &req, *peer, admitted.auth.key, refuser)?;
    let fwd = prepare::Forward {
        peer_ip,
        proto: stream.proto(),
        auth: admitted,
        underscores: routed.policy.underscores,
        trace: w.settings.trace.then_some(&*record.trace),
    };
    Ok(prepare::plan(
        snap,
        &req,
        &routed,
        choice,
        fwd,
        (path, wbuf),
        grpc_timeout,
    ))
}
