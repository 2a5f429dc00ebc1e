//! `ringgate reload` as an operator reads it (issue 14, item 8): a refused reload prints the
//! status with its reason phrase (`422 Unprocessable Content`, not `422 Unknown`) and the errors
//! of the body one per line, and exits non-zero; an accepted one prints the result.

use ringgate::admin::AdminServer;
use ringgate::config::RawConfig;
use ringgate::control::{ConfigSource, Control};
use ringgate::server::start;
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::test_profile;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

fn config(upstream: &str) -> String {
    format!(
        "version = \"reload-client\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9\"]\n[[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"{upstream}\"\n[[routes]]\nid = \"two\"\npath = {{ prefix = \"/two\" }}\nupstream = \"{upstream}\"\n"
    )
}

#[test]
fn a_refused_reload_prints_422_unprocessable_content_and_every_error() {
    let text = config("u");
    let file = TempFile::new("reload-client.toml", &text);
    let raw = RawConfig::parse(&text).expect("parse");
    let snap = ringgate::snapshot_from_text(&text).expect("valid");
    let gw = start(snap, &test_profile()).expect("start");
    let control = Control::new(ConfigSource::File(file.path().into()), raw, &gw);
    let admin =
        AdminServer::start("127.0.0.1:0".parse().expect("addr"), None, control).expect("admin");
    let run = || {
        Command::new(BIN)
            .args(["reload", "--admin", &admin.addr.to_string()])
            .output()
            .expect("run ringgate reload")
    };
    let ok = run();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"result\": \"ok\""));

    std::fs::write(file.path(), config("nowhere")).expect("write");
    let refused = run();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(err.contains("422 Unprocessable Content"), "{err}");
    assert!(!err.contains("Unknown"), "{err}");
    // Both problems, each on its own line, readable (not JSON-escaped).
    assert!(
        err.lines()
            .any(|l| l.trim() == "routes[0].upstream: no such upstream \"nowhere\""),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.trim() == "routes[1].upstream: no such upstream \"nowhere\""),
        "{err}"
    );
    assert!(err.contains("version reload-client"), "{err}");
    admin.stop();
    gw.stop();
}
