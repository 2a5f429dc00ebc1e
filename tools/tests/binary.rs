//! The `ringgate` binary as a user runs it: `check`, `demo`, `proxy`, the epoll driver, and a
//! graceful stop on SIGTERM.

use ringbench::upstream::{LatencyDist, UpstreamConfig};
use ringgate_testkit::client::{get, Client};
use ringgate_testkit::gateway::{free_port, ChildGateway};
use ringgate_testkit::stub::stub_with;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

fn listen_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().expect("addr")
}

#[test]
fn check_accepts_the_example_config_and_lists_every_error_of_a_bad_one() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/ringgate.toml");
    let out = Command::new(BIN)
        .args(["check", "--config", example, "--profile", "low-latency"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("config ok: version=example-1"), "{stdout}");
    assert!(stdout.contains("routes=6"), "{stdout}");

    let dir = std::env::temp_dir().join(format!("ringgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:2\"]\n[[routes]]\nid = \"a\"\npath = { prefix = \"/\" }\nupstream = \"payments\"\n[[routes]]\nid = \"b\"\npath = { template = \"/x/{\" }\nupstream = \"u\"\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["check", "--config", bad.to_str().expect("path")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0].upstream: no such upstream \"payments\""),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_a_bad_profile() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/ringgate.toml");
    let dir = std::env::temp_dir().join(format!("ringgate-prof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("p.toml");
    std::fs::write(&p, "[io]\nuring_entries = 1000\n").expect("write");
    let out = Command::new(BIN)
        .args([
            "check",
            "--config",
            example,
            "--profile",
            p.to_str().expect("path"),
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("io.uring_entries"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_try_line_of_the_demo_answers_2xx() {
    let addr = listen_addr();
    let mut demo = ChildGateway::spawn(BIN, &["demo", "--listen", &addr.to_string()], addr);
    std::thread::sleep(Duration::from_millis(200));
    // The demo printed its lines; run each with curl exactly as a user would.
    let stdout = demo.child.stdout.take().expect("stdout");
    let lines: Vec<String> = {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.starts_with("Ctrl-C"))
            .collect()
    };
    assert!(
        lines[0].starts_with("ringgate: driver="),
        "start line first: {lines:?}"
    );
    assert!(lines[0].contains("config=example-1"));
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
    let addr = listen_addr();
    let dir = std::env::temp_dir().join(format!("ringgate-epoll-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let prof = dir.join("epoll.toml");
    std::fs::write(
        &prof,
        "[workers]\ncount = 1\npin = false\n[io]\ndriver = \"epoll\"\n",
    )
    .expect("write");
    let mut gw = ChildGateway::spawn(
        BIN,
        &[
            "proxy",
            "--listen",
            &addr.to_string(),
            "--to",
            &up.addrs()[0].to_string(),
            "--profile",
            prof.to_str().expect("p"),
        ],
        addr,
    );
    let r = get(addr, "h", "/anything");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("one"));
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(gw.child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("start line");
    assert!(line.contains("driver=epoll"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let up = stub_with(UpstreamConfig {
        name: "slow".into(),
        latency: LatencyDist::Fixed(Duration::from_millis(500)),
        ..UpstreamConfig::default()
    });
    let addr = listen_addr();
    let gw = ChildGateway::spawn(
        BIN,
        &[
            "proxy",
            "--listen",
            &addr.to_string(),
            "--to",
            &up.addrs()[0].to_string(),
        ],
        addr,
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
                c.try_response_to("GET")
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    gw.signal(15);
    for t in clients {
        let r = t
            .join()
            .expect("client")
            .expect("in-flight request answered");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("connection"),
            Some("close"),
            "the last response on a draining connection says close"
        );
    }
    let (status, stderr) = gw.wait_exit(Duration::from_secs(10));
    assert!(status.expect("exited").success(), "{stderr}");
    assert!(
        stderr.contains("4 drained, 0 aborted") || stderr.contains("0 aborted"),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
}
