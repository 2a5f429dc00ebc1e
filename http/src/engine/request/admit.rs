//! The admit phase: the route's policy phases, run in the order its [`AdmitPlan`] (compiled
//! into the snapshot per route) gives.
//!
//! Every policy phase has one shape: it reads the request and the route, may add to what the
//! request carries upstream or to the response's headers, and returns a [`Flow`]: go on, refuse,
//! or wait for work off the core. Dispatch is a `match` on the phase (no boxing, no allocation
//! per request). A new admission policy (overload control, a transform that must run before the
//! upstream is chosen) is a new [`AdmitPhase`] variant, its function here, and its place in
//! [`AdmitPlan::compile`]; the other phases are not edited.
//!
//! [`AdmitPlan`]: crate::gateway::AdmitPlan
//! [`AdmitPlan::compile`]: crate::gateway::AdmitPlan::compile

use super::state::{AdmitState, Tally};
use super::stop::{Refuser, Stop};
use super::wait::OffCore;
use crate::authn::{AuthOutput, AuthVerdict, LimitStage, LimitVerdict};
use crate::engine::worker::Worker;
use crate::error::Refusal;
use crate::gateway::{AdmitPhase, Gateway, RouteSettings};
use crate::hygiene::push_header;
use crate::resilience::key_hash;
use crate::tls::CertIdentity;
use std::net::IpAddr;
use std::time::Duration;

/// What a policy phase decided.
pub(crate) enum Flow {
    /// The request goes on to the next phase.
    Continue,
    /// The request is answered with this refusal.
    Refuse(Refusal),
    /// Work off the core decides; the plan is made again when it is done.
    Wait(OffCore),
}

impl Flow {
    /// The plan's stop for this decision (`Ok` to go on).
    pub(crate) fn stop<'s>(
        self,
        refuser: Refuser,
        route: &'s RouteSettings,
    ) -> Result<(), Stop<'s>> {
        match self {
            Flow::Continue => Ok(()),
            Flow::Refuse(r) => Err(refuser.refuse(r, Some(route))),
            Flow::Wait(o) => Err(Stop::Wait(o)),
        }
    }

    fn wait(ticket: u64, within: Duration, limits: bool) -> Flow {
        Flow::Wait(OffCore {
            ticket,
            within,
            limits,
        })
    }
}

/// What a policy phase sees of the request and may change.
pub(crate) struct Cx<'a, 's, G: Gateway> {
    pub(crate) w: &'a Worker<G>,
    pub(crate) snap: &'s G,
    pub(crate) route: &'s RouteSettings,
    pub(crate) headers: &'a [httparse::Header<'a>],
    pub(crate) peer: IpAddr,
    /// The verified client certificate of the connection, if any.
    pub(crate) identity: Option<&'a CertIdentity>,
    /// What admission gave the request so far, and its waits.
    pub(crate) st: &'a mut AdmitState,
    pub(crate) tally: &'a mut Tally,
}

/// Runs the route's admission phases in order, until one does not continue.
pub(crate) fn run<G: Gateway>(mut cx: Cx<'_, '_, G>) -> Flow {
    if !cx.st.limits_before_done {
        // A fresh plan (not one made again after a wait): nothing carried from the last request.
        cx.st.policy_headers.clear();
    }
    cx.st.auth.clear();
    for phase in cx.route.admit.phases() {
        let flow = match phase {
            AdmitPhase::LimitsBeforeAuth => limits_before_auth(&mut cx),
            AdmitPhase::Authenticate => authenticate(&mut cx),
            AdmitPhase::ClientCertificate => client_certificate(&mut cx),
            AdmitPhase::LimitsAfterAuth => limits(&mut cx, LimitStage::AfterAuth),
        };
        if !matches!(flow, Flow::Continue) {
            return flow;
        }
    }
    Flow::Continue
}

/// Limits keyed without identity, judged once per request (not again after a wait for
/// authentication), so that refused credentials spend them.
fn limits_before_auth<G: Gateway>(cx: &mut Cx<'_, '_, G>) -> Flow {
    if cx.st.limits_before_done {
        return Flow::Continue;
    }
    let flow = limits(cx, LimitStage::BeforeAuth);
    if matches!(flow, Flow::Continue) {
        cx.st.limits_before_done = true;
    }
    flow
}

/// The route's rate limits of `stage`; their `RateLimit-*` fields go to the response.
fn limits<G: Gateway>(cx: &mut Cx<'_, '_, G>, stage: LimitStage) -> Flow {
    let mut slot = cx.w.limits.borrow_mut();
    let state = slot.get_or_insert_with(|| cx.snap.limits_runtime(cx.w.index));
    let st = &mut *cx.st;
    let verdict = cx.snap.rate_limit(
        state,
        cx.route,
        stage,
        st.limit_waited,
        cx.headers,
        cx.peer,
        &st.auth,
        &mut st.policy_headers,
    );
    match verdict {
        LimitVerdict::Pass => Flow::Continue,
        LimitVerdict::Refuse { status, code } => Flow::Refuse(Refusal::new(status, code)),
        LimitVerdict::Wait { ticket, within } => Flow::wait(ticket, within, true),
    }
}

/// The route's authentication rule; a refusal carries its challenge and its reason for the log.
fn authenticate<G: Gateway>(cx: &mut Cx<'_, '_, G>) -> Flow {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verdict = {
        let mut slot = cx.w.auth.borrow_mut();
        let state = slot.get_or_insert_with(|| cx.snap.auth_runtime());
        cx.snap.authenticate(
            state,
            cx.route,
            cx.headers,
            cx.peer,
            now_unix,
            cx.st.auth_waited,
            &mut cx.st.auth,
        )
    };
    match verdict {
        AuthVerdict::Wait { ticket, within } => Flow::wait(ticket, within, false),
        AuthVerdict::Refuse {
            status,
            code,
            reason,
            challenge,
        } => {
            cx.tally.auth_reason = reason;
            if let Some(ch) = challenge {
                push_header(
                    &mut cx.st.policy_headers,
                    b"www-authenticate",
                    ch.as_bytes(),
                );
            }
            Flow::Refuse(Refusal::new(status, code))
        }
        _ => Flow::Continue,
    }
}

/// A verified client certificate names the client (for limits, splits, the log and the
/// `x-client-cert-*` headers upstream); a route that requires one refuses a request without.
fn client_certificate<G: Gateway>(cx: &mut Cx<'_, '_, G>) -> Flow {
    match cx.identity {
        Some(id) => {
            client_cert_identity(&mut cx.st.auth, id);
            Flow::Continue
        }
        None if cx.route.require_client_cert => {
            Flow::Refuse(Refusal::new(403, "client_certificate_required"))
        }
        None => Flow::Continue,
    }
}

/// Adds what a verified client certificate says to the request's identity: the id for rate
/// limits, splits and the access log (unless a credential already named one), and the
/// `x-client-cert-*` headers upstream.
fn client_cert_identity(auth: &mut AuthOutput, id: &CertIdentity) {
    if auth.client_id.is_empty() {
        auth.client_id.extend_from_slice(id.id.as_bytes());
    }
    if auth.identity.is_empty() {
        auth.identity.extend_from_slice(id.id.as_bytes());
    }
    if auth.key.is_none() {
        auth.key = Some(key_hash(id.id.as_bytes()));
    }
    push_header(&mut auth.headers, b"x-client-cert-id", id.id.as_bytes());
    push_header(
        &mut auth.headers,
        b"x-client-cert-subject",
        id.subject.as_bytes(),
    );
    if !id.san_list.is_empty() {
        push_header(
            &mut auth.headers,
            b"x-client-cert-san",
            id.san_list.as_bytes(),
        );
    }
}
