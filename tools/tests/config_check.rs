//! `ringgate check` reports every problem of a config at once, each with its path (issue 15,
//! item 5): TOML-level ones (a wrong type, an unknown field, a bad duration) alongside the
//! semantic ones, so a wrong type in one entry does not hide a bad reference in another. A syntax
//! error is the one problem that stops the reading, and it says where. `serve` and a reload
//! refuse such a config with the same list.

use ringgate::config::RawConfig;
use ringgate::control::{ConfigSource, Control};
use ringgate::server::start;
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::test_profile;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// Five problems of five kinds, in three sections; every other line is fine.
const FIVE_PROBLEMS: &str = r#"version = "five-problems"

[[listeners]]
address = "localhost"

[[upstreams]]
name = "users"
endpoints = ["127.0.0.1:9001"]
retries = 3

[[upstreams]]
name = "orders"
endpoints = ["127.0.0.1:9002"]

[upstreams.health_check]
interval = "5 parsecs"

[[routes]]
id = "users"
path = { prefix = "/users" }
upstream = "users"
timeout = 30

[[routes]]
id = "billing"
path = { prefix = "/billing" }
upstream = "billing"

[[routes]]
id = "orders"
path = { prefix = "/orders" }
upstream = "orders"
"#;

/// The problems of [`FIVE_PROBLEMS`], each the start of its own line of output.
const EXPECTED: [&str; 5] = [
    "routes[0].timeout: invalid type: integer `30`",
    "upstreams[0].retries: unknown field `retries`",
    "upstreams[1].health_check.interval: duration \"5 parsecs\" has unknown unit",
    "listeners[0].address: \"localhost\" is not ip:port",
    "routes[1].upstream: no such upstream \"billing\"",
];

fn check(config: &str) -> Output {
    Command::new(BIN)
        .args(["check", "--config", config])
        .output()
        .expect("run ringgate check")
}

fn assert_lists_all_five(text: &str) {
    for want in EXPECTED {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(want)),
            "missing a line starting {want:?} in:\n{text}"
        );
    }
}

#[test]
fn check_lists_every_problem_with_its_path_and_exits_non_zero() {
    let file = TempFile::new("five-problems.toml", FIVE_PROBLEMS);
    let out = check(file.arg());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted it:\n{stderr}");
    assert!(stderr.contains("invalid config (5 problems):"), "{stderr}");
    assert_lists_all_five(&stderr);
    // TOML-level problems say where they are in the file.
    assert!(stderr.contains("(line 22, column 11)"), "{stderr}");
    assert!(stderr.contains("(line 16, column 12)"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("config ok"),
        "{stderr}"
    );
}

#[test]
fn a_syntax_error_is_one_problem_with_its_line_and_column() {
    let file = TempFile::new(
        "syntax.toml",
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"\n",
    );
    let out = check(file.arg());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("config does not parse:"), "{stderr}");
    assert!(stderr.contains("(line 5, column 27)"), "{stderr}");
}

#[test]
fn the_bundled_examples_pass_check() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let out = check(path.to_str().expect("utf-8 path"));
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("config ok"));
    }
    assert!(seen > 0, "no example config found in {dir}");
}

#[test]
fn serve_refuses_the_config_with_the_same_list() {
    let file = TempFile::new("five-problems-serve.toml", FIVE_PROBLEMS);
    let out = Command::new(BIN)
        .args(["serve", "--config", file.arg()])
        .output()
        .expect("run ringgate serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_lists_all_five(&stderr);
}

#[test]
fn a_reload_refuses_the_config_with_the_same_list() {
    let good = "version = \"good\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"users\"\nendpoints = [\"127.0.0.1:9\"]\n[[routes]]\nid = \"all\"\npath = { prefix = \"/\" }\nupstream = \"users\"\n";
    let file = TempFile::new("five-problems-reload.toml", good);
    let raw = RawConfig::parse(good).expect("parse");
    let gw = start(
        ringgate::snapshot_from_text(good).expect("valid"),
        &test_profile(),
    )
    .expect("start");
    let control = Control::new(ConfigSource::File(file.path().into()), raw, &gw);
    std::fs::write(file.path(), FIVE_PROBLEMS).expect("write");
    let Err(e) = control.reload("test") else {
        panic!("a config with five problems was reloaded");
    };
    assert_lists_all_five(&e);
    assert_eq!(control.state().version, "good");
    gw.stop();
}

#[test]
fn what_only_compiling_finds_is_listed_with_the_rest() {
    // An unknown upstream (validation), a bad path template and a TLS listener without
    // certificates (found while compiling): all three at once, none twice.
    let file = TempFile::new(
        "compile-problems.toml",
        "[[listeners]]\naddress = \"127.0.0.1:0\"\ntls = { certificates = [] }\n\
         [[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:2\"]\n\
         [[routes]]\nid = \"a\"\npath = { prefix = \"/\" }\nupstream = \"payments\"\n\
         [[routes]]\nid = \"b\"\npath = { template = \"/x/{\" }\nupstream = \"u\"\n",
    );
    let out = check(file.arg());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("invalid config (3 problems):"), "{stderr}");
    for want in [
        "routes[0].upstream: no such upstream \"payments\"",
        "listeners[0].tls.certificates: at least one certificate is needed",
        "routes[1]: route #1 `b`: path `/x/{`",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}
