//! The README's examples run as written: its config and resilience blocks validate with
//! `ringgate check`, and its rate-limit block runs against a real Redis (the authentication
//! example and its `ringgate token` line are run by `readme_auth.rs`).
//!
//! Only what cannot exist on a test machine is replaced: upstream addresses (by a stub) and the
//! Redis address (by a `redis-server` the test starts). A README edit that breaks an example
//! fails here.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::client::Client;
use ringgate_testkit::gateway::gateway;
use ringgate_testkit::redis::RedisServer;
use ringgate_testkit::run::succeed;
use ringgate_testkit::stub::stub;
use std::path::PathBuf;
use std::process::Command;

const README: &str = include_str!("../../README.md");
const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// The README's fenced code blocks of language `lang`, in order.
fn blocks(lang: &str) -> Vec<String> {
    let open = format!("```{lang}");
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in README.lines() {
        let t = line.trim_start();
        match &mut cur {
            None if t == open => cur = Some(String::new()),
            Some(b) if t.starts_with("```") => {
                out.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                // Indented blocks (inside list items) lose the list's indentation.
                b.push_str(
                    line.strip_prefix("  ")
                        .filter(|_| line.starts_with("  "))
                        .unwrap_or(line),
                );
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

/// The one TOML block containing every marker.
fn toml_block(markers: &[&str]) -> String {
    let found: Vec<String> = blocks("toml")
        .into_iter()
        .filter(|b| markers.iter().all(|m| b.contains(m)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "README blocks with {markers:?}: {}",
        found.len()
    );
    found.into_iter().next().unwrap()
}

/// The README's command line starting with `ringgate <sub>` (continuation lines joined).
fn command_line(sub: &str) -> Vec<String> {
    let text = blocks("sh").join("\n").replace("\\\n", " ");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("ringgate {sub}")))
        .unwrap_or_else(|| panic!("no `ringgate {sub}` line in the README"));
    let line = line.split(" # ").next().unwrap();
    shell_words(line)
}

/// Splits a command line the way sh does for the quoting the README uses ('...' and "...").
/// Optional parts in `[...]` (outside quotes) are left out.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    let mut optional = 0usize;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '[') => optional += 1,
            (None, ']') if optional > 0 => optional -= 1,
            (None, _) if optional > 0 => {}
            (None, '\'' | '"') => {
                quote = Some(ch);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut cur));
                }
                started = false;
            }
            (None, c) => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(cur);
    }
    words
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!(
            "ringgate-readme-{tag}-{}-{}",
            std::process::id(),
            ringgate_testkit::gateway::free_port()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `ringgate check` on `config` (written to `dir`): its output when it fails.
fn check(dir: &Dir, config: &str) -> Result<(), String> {
    let file = dir.path("ringgate.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn the_keys_create_line_makes_a_key_file_the_gateway_loads() {
    let dir = Dir::new("keys");
    let args = command_line("keys create");
    let out = succeed(Command::new(BIN).args(&args[1..]), &format!("{args:?}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = stdout.lines();
    let secret = lines.next().unwrap().trim().to_string();
    let entry = lines.collect::<Vec<_>>().join("\n");
    assert!(!secret.is_empty() && !entry.contains(&secret), "{stdout}");
    let keys = dir.path("keys.toml");
    std::fs::write(&keys, entry).unwrap();
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[auth]\napi_keys_file = {keys:?}\n\
         [[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9\"]\n\
         [[routes]]\nid = \"r\"\npath = {{ prefix = \"/\" }}\nupstream = \"u\"\nauth = {{ methods = [\"api_key\"] }}\n"
    );
    check(&dir, &config).unwrap();
}

#[test]
fn the_rate_limit_example_runs_against_redis() {
    let dir = Dir::new("limits");
    let redis = RedisServer::start();
    let up = stub("orders");
    let block = toml_block(&["[rate_limit]", "[[rate_limits]]"]);
    let redis_line = block
        .lines()
        .find(|l| l.trim_start().starts_with("redis = "))
        .expect("the example names its Redis")
        .to_string();
    let block = block.replace(
        &redis_line,
        &format!("redis = \"redis://127.0.0.1:{}/\"", redis.port),
    );
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"orders\"\nendpoints = [\"{}\"]\n{block}",
        up.addr()
    );
    check(&dir, &config).unwrap();
    let gw = gateway(&config);
    let mut c = Client::connect(gw.addr);
    let r = c.get_with("/orders", &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("ratelimit-policy").is_some(), "{}", r.text());
}

#[test]
fn the_config_and_resilience_examples_validate() {
    let dir = Dir::new("config");
    let config = toml_block(&["[[listeners]]", "[[routes]]", "[admin]"]);
    check(&dir, &config).unwrap();
    let resilience = toml_block(&["[upstreams.outlier]", "[upstreams.circuit_breaker]"]);
    let config = format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n{resilience}");
    check(&dir, &config).unwrap();
    let cache = toml_block(&["[[cache_zones]]", "cache = { zone"]);
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"catalog\"\nendpoints = [\"127.0.0.1:9\"]\n{cache}"
    );
    check(&dir, &config).unwrap();
    let discovery = toml_block(&["[discovery.dns]", "discovery = \"dns_srv\""]);
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n{discovery}\n[[routes]]\nid = \"o\"\npath = {{ prefix = \"/\" }}\nupstream = \"orders\"\n"
    );
    check(&dir, &config).unwrap();
    let dns = toml_block(&["[discovery.dns]", "retry = "]);
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n{dns}\n[[routes]]\nid = \"o\"\npath = {{ prefix = \"/\" }}\nupstream = \"orders\"\n"
    );
    check(&dir, &config).unwrap();
}

#[test]
fn the_command_lines_of_this_test_are_read_as_sh_reads_them() {
    assert_eq!(
        shell_words("ringgate keys create --client-id billing [--tenant T] --x 'a b' \"c\""),
        [
            "ringgate",
            "keys",
            "create",
            "--client-id",
            "billing",
            "--x",
            "a b",
            "c"
        ]
    );
}
