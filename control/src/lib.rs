//! ringgate's control plane: everything off the request path.
//!
//! Config and its validation, snapshot building, reload, the admin API, health probers, JWKS and
//! introspection fetchers, the rate-limit reconciler and its Redis store, and process start-up.
//! It runs on control threads, never on the workers: a worker only reads the snapshot compiled
//! here and published by epoch swap. Keeping it apart from `http` (the engine) and `policies`
//! (the decisions) keeps blocking clients (Redis, JWKS and introspection fetches, probes) and
//! config parsing out of the crates the request path is built from.
//!
//! The request-path auth adapter lives in `ringgate_policies::auth`; [`auth`] here compiles the
//! config into it and wires in the fetchers ([`authfetch`]).
//!
//! The `ringgate` binary (`tools/`) parses arguments and calls in here, so the integration tests
//! start the very same gateway in-process.

pub mod admin;
pub mod auth;
pub mod authfetch;
pub mod cachepurge;
pub mod config;
pub mod contenthash;
pub mod control;
pub mod discovery;
pub mod etcd;
pub mod health;
pub mod httpc;
pub mod introspection;
pub mod ratelimit;
pub mod rlstore;
pub mod server;
pub mod snapshot;
pub mod tls;

use config::RawConfig;
use snapshot::Snapshot;

/// Loads, validates and compiles a config file.
pub fn load_snapshot(path: &str) -> Result<Snapshot, config::ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| config::ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    snapshot_from_text(&text)
}

/// Validates and compiles config text.
pub fn snapshot_from_text(text: &str) -> Result<Snapshot, config::ConfigError> {
    let raw = RawConfig::parse(text)?;
    Snapshot::build(&raw, contenthash::config_hash(text, &raw))
}
