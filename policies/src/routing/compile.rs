//! Checking one [`RouteSpec`] and compiling it into what the index and the lookup use.
//!
//! Every check runs even after one fails, so a single build reports all of a route's
//! problems. Duplicate ids span routes, so the table checks those.

use super::conditions::{ConditionProblem, Conditions};
use super::error::RouteError;
use super::host::{compile_host, HostKey};
use super::path::{compile_path, CaptureSpec, CompiledPath};
use super::rewrite::{compile_rewrite, CompiledRewrite, RewriteProblem};
use super::spec::RouteSpec;

/// What the lookup needs about a route after the index found it (not generic over the
/// action, so the index and [`RouteMatch`](super::RouteMatch) are not either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteMeta {
    /// The configured id.
    pub(crate) id: Box<str>,
    /// Method and header conditions.
    pub(crate) conditions: Conditions,
    /// The path template's captures, in template order (empty for other paths).
    pub(crate) captures: Box<[CaptureSpec]>,
    /// The compiled rewrite.
    pub(crate) rewrite: CompiledRewrite,
}

/// A checked route, ready to be inserted in the index.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRoute {
    /// Kept per route for the lookup.
    pub(crate) meta: RouteMeta,
    /// Distinct hosts in normal form; `[Any]` when none were configured.
    pub(crate) hosts: Vec<HostKey>,
    /// Where the route goes in a path index.
    pub(crate) path: CompiledPath,
    /// The configured priority.
    pub(crate) priority: i32,
}

/// Compiles route number `index`, or pushes every problem found onto `errors`.
pub(crate) fn compile_route<T>(
    index: usize,
    spec: &RouteSpec<T>,
    errors: &mut Vec<RouteError>,
) -> Option<CompiledRoute> {
    let errors_before = errors.len();
    let id = || spec.id.clone();
    if spec.id.is_empty() {
        errors.push(RouteError::EmptyId { index, id: id() });
    }

    let mut hosts: Vec<HostKey> = Vec::with_capacity(spec.hosts.len().max(1));
    for host in &spec.hosts {
        match compile_host(host) {
            Ok(key) if !hosts.contains(&key) => hosts.push(key),
            Ok(_) => {}
            Err(problem) => {
                let (super::HostMatch::Exact(h) | super::HostMatch::Wildcard(h)) = host else {
                    continue; // `Any` cannot fail
                };
                errors.push(RouteError::BadHost {
                    index,
                    id: id(),
                    host: h.clone(),
                    problem,
                });
            }
        }
    }
    if hosts.is_empty() {
        hosts.push(HostKey::Any);
    }

    let path = match compile_path(&spec.path) {
        Ok(compiled) => Some(compiled),
        Err(problem) => {
            let (super::PathMatch::Exact(p)
            | super::PathMatch::Prefix(p)
            | super::PathMatch::Template(p)) = &spec.path;
            errors.push(RouteError::BadPath {
                index,
                id: id(),
                path: p.clone(),
                problem,
            });
            None
        }
    };

    let conditions = Conditions::compile(&spec.methods, &spec.headers).map_err(|problems| {
        errors.extend(problems.into_iter().map(|p| match p {
            ConditionProblem::Method(method) => RouteError::BadMethod {
                index,
                id: id(),
                method,
            },
            ConditionProblem::HeaderName(name) => RouteError::BadHeaderName {
                index,
                id: id(),
                name,
            },
        }));
    });

    // The rewrite is checked against the captures, so only when the path compiled.
    let (path, captures) = path?;
    let rewrite = compile_rewrite(&spec.rewrite, &spec.path, &captures).map_err(|p| {
        errors.push(match p {
            RewriteProblem::NeedsPrefix(rewrite) => RouteError::RewriteNeedsPrefix {
                index,
                id: id(),
                rewrite,
            },
            RewriteProblem::Bad(rewrite, problem) => RouteError::BadRewrite {
                index,
                id: id(),
                rewrite,
                problem,
            },
        });
    });

    if errors.len() != errors_before {
        return None;
    }
    let (Ok(conditions), Ok(rewrite)) = (conditions, rewrite) else {
        return None;
    };
    Some(CompiledRoute {
        meta: RouteMeta {
            id: spec.id.as_str().into(),
            conditions,
            captures: captures.into(),
            rewrite,
        },
        hosts,
        path,
        priority: spec.priority,
    })
}
