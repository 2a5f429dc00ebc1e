//! `ringgate check` judges a perf profile as `serve` does (issue 14, item 8): a profile that
//! parses and validates but cannot run on this host (a CPU outside the process's affinity mask)
//! is refused by both, with the same reason.

use ringgate_testkit::files::TempFile;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

const CONFIG: &str = "version = \"check-profile\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9\"]\n[[routes]]\nid = \"all\"\npath = { prefix = \"/\" }\nupstream = \"u\"\n";

#[test]
fn check_refuses_a_profile_that_serve_refuses() {
    let config = TempFile::new("check-profile.toml", CONFIG);
    let profile = TempFile::new("cpus.toml", "[workers]\ncpus = [9999]\n");
    let serve = Command::new(BIN)
        .args([
            "serve",
            "--config",
            config.arg(),
            "--profile",
            profile.arg(),
        ])
        .output()
        .expect("run serve");
    let serve_err = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "serve must refuse it: {serve_err}");
    assert!(serve_err.contains("cpu 9999"), "{serve_err}");

    let check = Command::new(BIN)
        .args([
            "check",
            "--config",
            config.arg(),
            "--profile",
            profile.arg(),
        ])
        .output()
        .expect("run check");
    let check_err = String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success(),
        "check accepted what serve refuses: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(check_err.contains("cpu 9999"), "{check_err}");
    // The config itself is still judged and reported.
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("config ok: version=check-profile"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn check_reports_the_driver_and_cpus_serve_would_use() {
    let config = TempFile::new("check-ok.toml", CONFIG);
    let profile = TempFile::new("one.toml", "[workers]\ncount = 1\npin = false\n");
    let out = Command::new(BIN)
        .args([
            "check",
            "--config",
            config.arg(),
            "--profile",
            profile.arg(),
        ])
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("profile ok: driver="), "{stdout}");
    assert!(stdout.contains(" workers=1 "), "{stdout}");
}
