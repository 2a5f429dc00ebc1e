//! Fuzzes path normalization: any bytes after a `/`, under every policy. Besides "never
//! panics", it checks what routing relies on: the normal form is a fixed point, starts with `/`,
//! has no dot segment and no backslash, merged slashes when asked, and its matching form (without
//! `;parameters`) is normal too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringgate_http::codec::{normalize_path, strip_parameters, EscapedSeparators, PathPolicy};

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let policy = PathPolicy {
        merge_slashes: mode & 1 == 0,
        escaped_separators: if mode & 2 == 0 {
            EscapedSeparators::Reject
        } else {
            EscapedSeparators::Keep
        },
    };
    let mut raw = Vec::with_capacity(rest.len() + 1);
    raw.push(b'/');
    raw.extend_from_slice(rest);
    let mut once = Vec::new();
    if normalize_path(&raw, &policy, &mut once).is_err() {
        return;
    }
    assert_eq!(once.first(), Some(&b'/'));
    assert!(!once.contains(&b'\\'));
    assert!(!once.split(|&b| b == b'/').any(|s| s == b"." || s == b".."));
    if policy.merge_slashes {
        assert!(!once.windows(2).any(|w| w == b"//"));
    }
    let mut twice = Vec::new();
    assert!(normalize_path(&once, &policy, &mut twice).is_ok());
    assert_eq!(once, twice);
    let mut matching = Vec::new();
    if strip_parameters(&once, policy.merge_slashes, &mut matching) {
        assert!(!matching.contains(&b';'));
        assert_eq!(matching.first(), Some(&b'/'));
    }
});
