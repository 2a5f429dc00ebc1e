//! curl as a test client (HTTP/2, TLS, client certificates: a real client's behaviour).

use std::process::Command;

/// Runs `curl -sS --max-time 20 args...`; returns (success, stdout, stderr).
pub fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
