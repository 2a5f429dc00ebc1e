//! What a reload compares: the config text and the contents of every file the config names.
//!
//! Certificates, keys, CA bundles, the API key file and a JWKS file are read when a snapshot is
//! built, so they are as much a part of the live config as its text. Hashing them in makes a
//! reload after a renewed certificate report `"changed": true`, and lets the config-file watcher
//! see a changed certificate or key file as it sees an edited config.

use crate::config::RawConfig;
use crate::snapshot::text_hash;

/// Every input file `raw` names, in a fixed order: listener certificates, keys and client CAs;
/// upstream CAs, client certificates and keys; the auth API key file, JWKS file and CA bundle.
pub fn named_files(raw: &RawConfig) -> Vec<&str> {
    let mut files = Vec::new();
    for l in &raw.listeners {
        if let Some(t) = &l.tls {
            for c in &t.certificates {
                files.push(c.cert.as_str());
                files.push(c.key.as_str());
            }
            files.extend(t.client_ca.as_deref());
        }
    }
    for u in &raw.upstreams {
        if let Some(t) = &u.tls {
            files.extend(t.ca.as_deref());
            files.extend(t.client_cert.as_deref());
            files.extend(t.client_key.as_deref());
        }
    }
    if let Some(a) = &raw.auth {
        files.extend(a.api_keys_file.as_deref());
        files.extend(a.jwks_file.as_deref());
        files.extend(a.ca.as_deref());
    }
    files
}

/// The content hash of a config: its text, then each named file's path and contents (a file
/// that cannot be read counts as its path and the error kind, so its coming back is a change).
pub fn config_hash(text: &str, raw: &RawConfig) -> u64 {
    let mut h = text_hash(text);
    for path in named_files(raw) {
        h = fold(h, b"\0file\0");
        h = fold(h, path.as_bytes());
        h = match std::fs::read(path) {
            Ok(bytes) => fold(fold(h, b"\0ok\0"), &bytes),
            Err(e) => fold(
                fold(h, b"\0unreadable\0"),
                format!("{:?}", e.kind()).as_bytes(),
            ),
        };
    }
    h
}

/// [`config_hash`] of config text that may not parse (then the text alone counts).
pub fn source_hash(text: &str) -> u64 {
    match RawConfig::parse(text) {
        Ok(raw) => config_hash(text, &raw),
        Err(_) => text_hash(text),
    }
}

/// FNV-1a over more bytes, from `h`.
fn fold(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cert: &str, key: &str) -> String {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[listeners.tls]\ncertificates = [{{ cert = \"{cert}\", key = \"{key}\" }}]\n"
        )
    }

    #[test]
    fn a_changed_named_file_changes_the_hash_and_the_same_contents_do_not() {
        let dir = std::env::temp_dir().join(format!("ringgate-ch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let cert = dir.join("c.pem");
        let key = dir.join("k.pem");
        std::fs::write(&cert, "cert one").ok();
        std::fs::write(&key, "key one").ok();
        let text = config(&cert.display().to_string(), &key.display().to_string());
        let first = source_hash(&text);
        assert_eq!(first, source_hash(&text), "stable");
        assert_ne!(first, text_hash(&text), "the files count");
        std::fs::write(&key, "key two").ok();
        let second = source_hash(&text);
        assert_ne!(first, second, "a new key is a change");
        std::fs::remove_file(&cert).ok();
        assert_ne!(second, source_hash(&text), "a vanished file is a change");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(source_hash("not toml ["), text_hash("not toml ["));
    }
}
