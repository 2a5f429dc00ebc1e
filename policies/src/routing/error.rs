//! Why a route table could not be built.
//!
//! [`RouteTable::build`](super::RouteTable::build) checks every route and returns every problem
//! at once, each naming the route by its position in the list and its id, so one edit of the
//! config can fix them all. Nothing fails after a successful build: lookups return `Option`.

/// A problem with one route; the table was not built.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The route has an empty id.
    #[error("route #{index}: the id is empty")]
    EmptyId {
        /// Position of the route in the list given to `build`.
        index: usize,
        /// The route's id (empty).
        id: String,
    },
    /// Another, earlier route has the same id.
    #[error("route #{index} `{id}`: duplicate id, first used by route #{first}")]
    DuplicateId {
        /// Position of the route in the list given to `build`.
        index: usize,
        /// The route's id.
        id: String,
        /// Position of the first route with this id.
        first: usize,
    },
    /// The path (or prefix, or template) is not one the router can match.
    #[error("route #{index} `{id}`: path `{path}`: {problem}")]
    BadPath {
        /// Position of the route in the list given to `build`.
        index: usize,
        /// The route's id.
        id: String,
        /// The path as configured.
        path: String,
        /// What is wrong with it.
        problem: TemplateError,
    },
    /// A host matcher is malformed.
    #[error("route #{index} `{id}`: host `{host}`: {problem}")]
    BadHost {
        /// Position of the route in the list given to `build`.
        index: usize,
        /// The route's id.
        id: String,
        /// The host as configured.
        host: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A method is not an HTTP token.
    #[error("route #{index} `{id}`: method `{method}` is not an HTTP token")]
    BadMethod {
        /// Position of the route in the list given to `build`.
        index: usize,
        /// The route's id.
        id: String,
        /// The method as configured.
        method: String,
    },
    /// A header matcher's name is not an HTTP token.
    #[error("route #{index} `{id}`: header name `{name}` is not an HTTP token")]
    BadHeaderName {
        /// Position of the route in the list given to `build`.
        index: usize,
        /// The route's id.
        id: String,
        /// The header name as configured.
        name: String,
    },
    /// `StripPrefix` or `ReplacePrefix` on a route whose path is not a `Prefix`.
    #[error("route #{index} `{id}`: rewrite {rewrite} needs a Prefix path")]
    RewriteNeedsPrefix {
        /// Position of the route in the list given to `build`.
        index: usize,
        /// The route's id.
        id: String,
        /// `StripPrefix` or `ReplacePrefix`.
        rewrite: &'static str,
    },
    /// The rewrite's replacement path or template is malformed.
    #[error("route #{index} `{id}`: rewrite `{rewrite}`: {problem}")]
    BadRewrite {
        /// Position of the route in the list given to `build`.
        index: usize,
        /// The route's id.
        id: String,
        /// The replacement or template as configured.
        rewrite: String,
        /// What is wrong with it.
        problem: TemplateError,
    },
}

impl RouteError {
    /// Position of the offending route in the list given to `build`.
    pub fn index(&self) -> usize {
        match self {
            Self::EmptyId { index, .. }
            | Self::DuplicateId { index, .. }
            | Self::BadPath { index, .. }
            | Self::BadHost { index, .. }
            | Self::BadMethod { index, .. }
            | Self::BadHeaderName { index, .. }
            | Self::RewriteNeedsPrefix { index, .. }
            | Self::BadRewrite { index, .. } => *index,
        }
    }

    /// Id of the offending route (may be empty for [`RouteError::EmptyId`]).
    pub fn id(&self) -> &str {
        match self {
            Self::EmptyId { id, .. }
            | Self::DuplicateId { id, .. }
            | Self::BadPath { id, .. }
            | Self::BadHost { id, .. }
            | Self::BadMethod { id, .. }
            | Self::BadHeaderName { id, .. }
            | Self::RewriteNeedsPrefix { id, .. }
            | Self::BadRewrite { id, .. } => id,
        }
    }
}

/// What is wrong with a path, a path template or a rewrite template.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The path does not start with `/`.
    #[error("must start with '/'")]
    NotAbsolute,
    /// The path contains `?`; routes match the path only and rewrites keep the query.
    #[error("must not contain '?': the query is not part of the path")]
    HasQuery,
    /// A `{` has no matching `}`.
    #[error("unclosed '{{'")]
    UnclosedBrace,
    /// A `}` has no matching `{`, or a placeholder contains `{`.
    #[error("stray '}}'")]
    StrayBrace,
    /// A path template placeholder is not a whole segment (such as `/a{id}`).
    #[error("placeholder in `{segment}` must be a whole segment")]
    NotWholeSegment {
        /// The offending segment.
        segment: String,
    },
    /// `{}` or `{*}`.
    #[error("empty placeholder name")]
    EmptyName,
    /// A placeholder name with characters other than ASCII letters, digits and `_`.
    #[error("placeholder name `{name}` must be ASCII letters, digits and '_'")]
    BadName {
        /// The offending name.
        name: String,
    },
    /// Two placeholders with the same name in one path template.
    #[error("placeholder `{name}` appears twice")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A `{*name}` that is not the last segment.
    #[error("catch-all `{{*{name}}}` must be the last segment")]
    CatchAllNotLast {
        /// The catch-all's name.
        name: String,
    },
    /// More placeholders than a match can carry without allocating.
    #[error("more than {max} placeholders")]
    TooManyCaptures {
        /// The limit, [`MAX_CAPTURES`](super::MAX_CAPTURES).
        max: usize,
    },
    /// More segments than the lookup walks (the walk recurses once per segment).
    #[error("more than {max} segments")]
    TooDeep {
        /// The limit, [`MAX_SEGMENTS`](super::MAX_SEGMENTS).
        max: usize,
    },
    /// A rewrite placeholder names no capture of the route's path template.
    #[error("`{{{name}}}` is not a capture of the route's path template")]
    UnknownCapture {
        /// The unknown name.
        name: String,
    },
    /// A rewrite `{*name}` refers to a `{name}` capture, not a catch-all.
    #[error("`{{*{name}}}` refers to a single-segment capture; write `{{{name}}}`")]
    NotCatchAll {
        /// The capture's name.
        name: String,
    },
}
