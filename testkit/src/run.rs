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

/// `bin keys create args...`: the secret it printed first and the `[[keys]]` entry after it
/// (checked to be one).
pub fn create_key(bin: &str, args: &[&str]) -> (String, String) {
    let out = succeed(
        Command::new(bin).args(["keys", "create"]).args(args),
        "keys create",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = stdout.lines();
    let secret = lines.next().expect("the secret first").trim().to_owned();
    let entry = lines.collect::<Vec<_>>().join("\n");
    assert!(entry.contains("[[keys]]"), "{stdout}");
    (secret, entry)
}
