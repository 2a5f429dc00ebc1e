//! The `ringgate` binary as a user runs it: `check`, `demo`, `proxy`, the epoll driver, and a
//! graceful stop on SIGTERM.

use ringbench::upstream::UpstreamConfig;
use ringgate_testkit::client::get;
use ringgate_testkit::client::{answers, gets_in_flight};
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::ChildGateway;
use ringgate_testkit::run::succeed;
use ringgate_testkit::stub::{slow_stub, stub_with};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

#[test]
fn check_accepts_the_example_config_and_lists_every_error_of_a_bad_one() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/ringgate.toml");
    let out = succeed(
        Command::new(BIN).args(["check", "--config", example, "--profile", "low-latency"]),
        "check",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("config ok: version=example-1"), "{stdout}");
    assert!(stdout.contains("routes=6"), "{stdout}");

    let bad = TempFile::new(
        "bad.toml",
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:2\"]\n[[routes]]\nid = \"a\"\npath = { prefix = \"/\" }\nupstream = \"payments\"\n[[routes]]\nid = \"b\"\npath = { template = \"/x/{\" }\nupstream = \"u\"\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--config", bad.arg()])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0].upstream: no such upstream \"payments\""),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_bad_profile() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/ringgate.toml");
    let p = TempFile::new("p.toml", "[io]\nuring_entries = 1000\n");
    let out = Command::new(BIN)
        .args(["check", "--config", example, "--profile", p.arg()])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("io.uring_entries"));
}

#[test]
fn every_try_line_of_the_demo_answers_2xx() {
    let mut demo = ChildGateway::spawn(BIN, &["demo", "--listen", "127.0.0.1:0"]);
    assert!(
        demo.start_line.starts_with("ringgate: driver="),
        "{}",
        demo.start_line
    );
    assert!(demo.start_line.contains("config=example-1"));
    // The demo printed its lines; run each with curl exactly as a user would.
    let lines: Vec<String> = demo
        .stdout
        .by_ref()
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("Ctrl-C"))
        .collect();
    let tries: Vec<&String> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("curl "))
        .collect();
    assert!(tries.len() >= 5, "{lines:?}");
    for t in tries {
        let cmd = format!(
            "{} -s -o /dev/null -w '%{{http_code}}' --max-time 5",
            t.trim()
                .replacen("curl -iN", "curl -N", 1)
                .replacen("curl -i", "curl", 1)
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .expect("curl runs");
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(code.starts_with('2'), "{t} answered {code}");
    }
}

#[test]
fn proxy_one_liner_with_forced_epoll_says_so_and_proxies() {
    let up = stub_with(UpstreamConfig {
        name: "one".into(),
        ..UpstreamConfig::default()
    });
    let prof = TempFile::new(
        "epoll.toml",
        "[workers]\ncount = 1\npin = false\n[io]\ndriver = \"epoll\"\n",
    );
    let gw = ChildGateway::proxy(BIN, up.addrs()[0], &["--profile", prof.arg()]);
    let r = get(gw.addr, "h", "/anything");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("one"));
    assert!(gw.start_line.contains("driver=epoll"), "{}", gw.start_line);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let up = slow_stub("slow", 500);
    let gw = ChildGateway::proxy(BIN, up.addrs()[0], &[]);
    let addr = gw.addr;
    let clients = gets_in_flight(addr, vec!["/".to_owned(); 4]);
    // Signal only once all four requests reached the upstream, so all four are in flight.
    let t0 = std::time::Instant::now();
    while up.connections_accepted() < 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "requests did not reach the upstream"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    gw.signal(15);
    for r in answers(clients) {
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("connection"),
            Some("close"),
            "the last response on a draining connection says close"
        );
    }
    gw.assert_drained(4, Duration::from_secs(10));
}
