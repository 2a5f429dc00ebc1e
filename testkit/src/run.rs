//! Running a command a test depends on (the binary's sub-commands, the Python helpers) and
//! failing the test with what the command said when it does not succeed.

use std::process::{Command, Output};

/// Runs `cmd` to completion and returns its output; panics (naming `what`, with the command's
/// standard output and error) when it cannot start or exits unsuccessfully.
pub fn succeed(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}): {} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
