//! The `ringgate` library behind the binary: config, snapshot compilation and process start-up.
//!
//! The binary (`main.rs`) only parses arguments and calls in here, so the integration tests start
//! the very same gateway in-process.

pub mod admin;
pub mod auth;
pub mod authfetch;
pub mod config;
pub mod contenthash;
pub mod control;
pub mod demo;
pub mod health;
pub mod httpc;
pub mod introspection;
pub mod ratelimit;
pub mod rlstore;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod verifybudget;

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
