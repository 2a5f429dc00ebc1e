//! The README's authentication example runs as written: its `[auth]` TOML block (with only the
//! key and JWKS file names made absolute, a listener and the `orders` upstream added) starts a
//! gateway, and its `ringgate token` command, run by `sh` with a fresh `private.pem` and a
//! `jwks.json` holding its public half as `k1`, mints a token that gateway accepts on `/orders`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ringgate_testkit::client::send;
use ringgate_testkit::gateway::gateway;
use ringgate_testkit::run::succeed;
use ringgate_testkit::scripted::recorder;

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

const JWK: &str = r#"
import sys, json
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jwt.algorithms import RSAAlgorithm
key = load_pem_private_key(open(sys.argv[1], "rb").read(), None)
jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
print(json.dumps({"keys": [jwk]}))
"#;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// The first fenced block of `lang` after the line starting with `after`.
fn block_after(text: &str, after: &str, lang: &str) -> String {
    let start = text.find(after).expect("the README section");
    let rest = &text[start..];
    let open = rest.find(&format!("```{lang}\n")).expect("a fenced block") + lang.len() + 4;
    let len = rest[open..].find("```").expect("its end");
    rest[open..open + len].to_string()
}

/// The `ringgate token` command of the README (continuation lines joined).
fn token_command(text: &str) -> String {
    let start = text
        .find("\nringgate token ")
        .expect("a ringgate token example")
        + 1;
    let mut cmd = String::new();
    for line in text[start..].lines() {
        match line.strip_suffix('\\') {
            Some(head) => cmd.push_str(head),
            None => {
                cmd.push_str(line);
                break;
            }
        }
    }
    cmd
}

#[test]
fn the_readme_token_example_is_accepted_by_the_readme_auth_example() {
    let dir = std::env::temp_dir().join(format!("ringgate-readme-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("private.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = succeed(
        std::process::Command::new("python3")
            .args(["-c", JWK])
            .arg(&pem),
        "the JWK script (python3)",
    );
    std::fs::write(dir.join("jwks.json"), &out.stdout).unwrap();
    std::fs::write(dir.join("keys.toml"), "").unwrap();

    let text = readme();
    let auth = block_after(&text, "Authentication (`[auth]`", "toml");
    let at = |f: &str| format!("\"{}\"", dir.join(f).display());
    let auth = auth
        .replace("\"keys.toml\"", &at("keys.toml"))
        .replace("\"jwks.json\"", &at("jwks.json"));
    let (up, seen) = recorder();
    let config = format!(
        "version = \"readme\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n{auth}\n[[upstreams]]\nname = \"orders\"\nendpoints = [\"{}\"]\n",
        up.addr
    );
    let gw = gateway(&config);

    let cmd = token_command(&text);
    assert!(cmd.starts_with("ringgate token "), "{cmd}");
    let out = succeed(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{BIN}{}", &cmd["ringgate".len()..]))
            .current_dir(&dir),
        &cmd,
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = send(
        gw.addr,
        format!("GET /orders/1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(got.header("x-user-id").as_deref(), Some("alice"));
    let _ = std::fs::remove_dir_all(&dir);
}
