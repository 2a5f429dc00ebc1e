//! How a phase stops a request short of its plan: a refusal (with whether the connection can
//! stay), a wait for work off the core, or more bytes to read.

use super::wait::OffCore;
use crate::codec::{BodyKind, RequestHead};
use crate::error::Refusal;
use crate::gateway::RouteSettings;
use crate::resilience::Fallback;

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
    Wait(OffCore),
    /// The route's cache answers.
    Cached(Box<crate::engine::cache::state::Cached<'s>>),
    /// Another request is fetching this response for the core: wait for it (at most the
    /// duration), then plan again.
    CacheWait(
        std::rc::Rc<crate::engine::cache::pending::Pending>,
        std::time::Duration,
    ),
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
    pub(crate) fn of(req: &RequestHead<'_, '_>) -> Self {
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
