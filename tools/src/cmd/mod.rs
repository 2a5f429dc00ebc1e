//! The bodies of the `ringgate` sub-commands, one module per command; `main.rs` only parses the
//! command line and dispatches here.

pub mod check;
pub mod demo;
pub mod keys;
pub mod proxy;
pub mod reload;
pub mod run;
pub mod serve;
pub mod token;

use ringgate_core::profile::PerfProfile;

/// What a sub-command returns: its exit code, or an error `main` prints.
pub type CmdResult = Result<std::process::ExitCode, Box<dyn std::error::Error>>;

/// The perf profile named on the command line (a file or a preset), or the default one.
pub fn load_profile(arg: Option<&str>) -> Result<PerfProfile, Box<dyn std::error::Error>> {
    Ok(match arg {
        Some(p) => PerfProfile::load(p)?,
        None => PerfProfile::default(),
    })
}
