//! `ringgate check` judges a perf profile as `serve` does (issue 14, item 8): a profile that
//! parses and validates but cannot run on this host (a CPU outside the process's affinity mask)
//! is refused by both, with the same reason.

use ringgate_testkit::files::TempFile;
use ringgate_testkit::run::succeed;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

const CONFIG: &str = "version = \"check-profile\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9\"]\n[[routes]]\nid = \"all\"\npath = { prefix = \"/\" }\nupstream = \"u\"\n";

/// `ringgate <sub> --config <config> --profile <profile>`, run to completion.
fn with_profile(sub: &str, config: &TempFile, profile: &TempFile) -> std::process::Output {
    Command::new(BIN)
        .args([sub, "--config", config.arg(), "--profile", profile.arg()])
        .output()
        .unwrap_or_else(|e| panic!("run {sub}: {e}"))
}

#[test]
fn check_refuses_a_profile_that_serve_refuses() {
    let config = TempFile::new("check-profile.toml", CONFIG);
    let profile = TempFile::new("cpus.toml", "[workers]\ncpus = [9999]\n");
    let serve = with_profile("serve", &config, &profile);
    let serve_err = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "serve must refuse it: {serve_err}");
    assert!(serve_err.contains("cpu 9999"), "{serve_err}");

    let check = with_profile("check", &config, &profile);
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
    let mut cmd = Command::new(BIN);
    cmd.args([
        "check",
        "--config",
        config.arg(),
        "--profile",
        profile.arg(),
    ]);
    let out = succeed(&mut cmd, "check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("profile ok: driver="), "{stdout}");
    assert!(stdout.contains(" workers=1 "), "{stdout}");
}
