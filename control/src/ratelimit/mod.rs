//! Rate limits in the running gateway: the config sections ([`config`]), their compilation into
//! the snapshot's [`ringgate_policies::ratelimit::spec::LimitSet`], and the reconciler thread
//! with its store ([`service`]): in-process by default, Redis when configured.

pub mod config;
pub mod service;
