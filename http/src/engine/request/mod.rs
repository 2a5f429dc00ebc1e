//! The request pipeline: what happens to a request between its buffered bytes and its
//! forwarding, as named phases in one order ([`plan`]):
//!
//! | phase   | file         | what it decides                                                    |
//! |---------|--------------|--------------------------------------------------------------------|
//! | parse   | `parse.rs`   | the head, parsed in place; the request's record (ids, log fields)   |
//! | route   | `route.rs`   | the path normalized, the listener's header policy, the route       |
//! | admit   | `admit.rs`   | the route's policy phases: limits, authentication, client cert     |
//! | cache   | `../cache/`  | a cached route: answer from this core's cache, wait for a fetch, or |
//! |         |              | go on with a ticket to store (or validate) what comes back          |
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
pub(crate) mod stop;
pub(crate) mod wait;

use crate::codec::MAX_HEADERS;
use crate::engine::io::downstream::Downstream;
use crate::engine::worker::Worker;
use crate::gateway::Gateway;
use state::{Conn, Plan};
use stop::{Refuser, Stop};

/// Plans the request whose head is buffered: every phase in order, each of which may stop it.
pub(crate) fn plan<'s, G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    snap: &'s G,
) -> Result<Plan<'s>, Stop<'s>> {
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
        h2_head,
        grpc,
        cache,
        ..
    } = c;
    let mut record = state::Record {
        tally,
        trace,
        meta,
        meta_split,
        grpc,
    };
    // An HTTP/2 stream's head comes typed (until its request ends: a plan made again after a
    // wait finds it again); an HTTP/1.1 head is parsed from the buffer.
    let stream = &*stream;
    let (req, grpc_timeout) = match stream {
        Downstream::H2(s) if s.head_pending() => {
            parse::begin(s.head().view(&mut hs, &w.settings.limits), w, &mut record)?
        }
        _ if cbuf.is_empty() => return Err(Stop::NeedMore),
        _ => parse::head(cbuf, &mut hs, w, &mut record)?,
    };
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
    // A request that waited for another's cache fetch was admitted already (limits counted),
    // unless a reload gave it another route meanwhile.
    let route_id = std::ptr::from_ref(routed.route) as usize;
    if !cache.waited || cache.waited_route != route_id {
        admit::run(cx).stop(refuser, routed.route)?;
    }
    if routed.route.cache.is_some() {
        cache.waited_route = route_id;
        let who = crate::engine::cache::lookup::Asker {
            authenticated: !admitted.auth.identity.is_empty() || identity.is_some(),
            identity: &admitted.auth.identity,
            scheme: stream.proto(),
            upstream_h2: routed.upstream.h2_streams.is_some(),
        };
        crate::engine::cache::lookup::lookup(w, routed.route, &req, npath, &who, cache)?;
    }
    let choice = choose::choose(w, snap, &routed, &req, *peer, admitted.auth.key, refuser)
        .map_err(|stop| crate::engine::cache::stale::instead_of_refusal(stop, cache))?;
    let fwd = prepare::Forward {
        peer_ip,
        proto: stream.proto(),
        auth: admitted,
        underscores: routed.policy.underscores,
        trace: w.settings.trace.then_some(&*record.trace),
        grpc: *record.grpc,
    };
    let out = prepare::UpstreamHead {
        path,
        text: wbuf,
        h2: h2_head,
    };
    let plan = prepare::plan(snap, &req, &routed, choice, fwd, out, grpc_timeout);
    crate::engine::cache::lookup::add_validators(cache, wbuf);
    Ok(plan)
}
