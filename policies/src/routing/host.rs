//! Host matching: normalising hosts (config and request alike) and the first level of the
//! index, which picks the path indexes a request's host can reach.
//!
//! Normal form: ASCII lower case, one trailing dot removed, port removed (requests only; a
//! config host with a port is an error). A request host is lowered into a stack buffer of
//! [`MAX_HOST_LEN`] bytes, so nothing is allocated; a longer host (DNS allows 253) reaches
//! only host-less routes.
//!
//! Index: exact hosts in a hash map; wildcards `*.example.com` in a second map keyed by the
//! suffix `.example.com`, probed once per dot of the request host (so the cost is the number
//! of labels, not the number of wildcards); host-less routes in one more index. Probing goes
//! from the most specific host to the least, which lets the lookup skip an index whose best
//! priority cannot beat what it has already found.

use super::hasher::FastMap;
use super::spec::HostMatch;

/// Longest host, in bytes, that exact and wildcard matchers can see.
pub const MAX_HOST_LEN: usize = 255;

/// A config host in normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKey {
    /// No host condition.
    Any,
    /// A lower-case host name.
    Exact(Box<[u8]>),
    /// A lower-case suffix starting with `.`, and its number of labels.
    Wildcard(Box<[u8]>, u16),
}

impl HostKey {
    /// The host part of the precedence key: exact > wildcard with more labels > any.
    pub(crate) fn specificity(&self) -> u16 {
        match self {
            Self::Any => 0,
            Self::Wildcard(_, labels) => *labels,
            Self::Exact(_) => u16::MAX,
        }
    }
}

/// Checks a config host and puts it in normal form.
pub(crate) fn compile_host(host: &HostMatch) -> Result<HostKey, &'static str> {
    match host {
        HostMatch::Any => Ok(HostKey::Any),
        HostMatch::Exact(name) => {
            if name.contains('*') {
                return Err("'*' is only allowed as `*.` in a Wildcard host");
            }
            normal_name(name).map(HostKey::Exact)
        }
        HostMatch::Wildcard(pattern) => {
            let Some(rest) = pattern.strip_prefix("*.") else {
                return Err("a wildcard host is written `*.example.com`");
            };
            if rest.contains('*') {
                return Err("only one leading `*.` is allowed");
            }
            if rest.starts_with('[') {
                return Err("an IP literal cannot have a wildcard");
            }
            let name = normal_name(rest)?;
            let mut suffix = Vec::with_capacity(name.len() + 1);
            suffix.push(b'.');
            suffix.extend_from_slice(&name);
            let labels = suffix.iter().filter(|&&b| b == b'.').count();
            // normal_name caps the length at MAX_HOST_LEN, so this fits.
            let labels = u16::try_from(labels).unwrap_or(u16::MAX - 1);
            Ok(HostKey::Wildcard(suffix.into_boxed_slice(), labels))
        }
    }
}

/// Lower-cases a config host name and drops one trailing dot, checking its characters.
fn normal_name(name: &str) -> Result<Box<[u8]>, &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty host");
    }
    if name.len() > MAX_HOST_LEN {
        return Err("longer than 255 bytes");
    }
    let bytes = name.as_bytes();
    if let Some(inner) = name.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err("an IP literal must be `[address]`, without a port");
        };
        let ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'%'));
        if !ok {
            return Err("not an IPv6 literal");
        }
    } else if bytes.contains(&b':') {
        return Err("must not carry a port (request ports are ignored)");
    } else if name.starts_with('.') || name.contains("..") {
        return Err("empty label");
    } else if !bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(name.to_ascii_lowercase().into_bytes().into_boxed_slice())
}

/// Puts a request's `Host` value in normal form inside `buf`: surrounding whitespace and the
/// port (`host:8080`, `[::1]:8080`) removed, one trailing dot removed, lower-cased. `None` when
/// nothing is left or the host is longer than [`MAX_HOST_LEN`].
pub(crate) fn normalize_request_host<'b>(
    raw: &[u8],
    buf: &'b mut [u8; MAX_HOST_LEN],
) -> Option<&'b [u8]> {
    let raw = raw.trim_ascii();
    let host = if raw.first() == Some(&b'[') {
        let close = raw.iter().position(|&b| b == b']')?;
        &raw[..=close]
    } else {
        match raw.iter().position(|&b| b == b':') {
            Some(colon) => &raw[..colon],
            None => raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host);
    out.make_ascii_lowercase();
    Some(out)
}

/// Path indexes (or anything else) keyed by host, probed from the most specific host down.
#[derive(Debug, Default)]
pub(crate) struct HostIndex<V> {
    exact: FastMap<Box<[u8]>, V>,
    wildcard: FastMap<Box<[u8]>, V>,
    any: V,
}

impl<V: Default> HostIndex<V> {
    /// The value for one config host, created empty if new.
    pub(crate) fn entry(&mut self, key: &HostKey) -> &mut V {
        match key {
            HostKey::Any => &mut self.any,
            HostKey::Exact(name) => self.exact.entry(name.clone()).or_default(),
            HostKey::Wildcard(suffix, _) => self.wildcard.entry(suffix.clone()).or_default(),
        }
    }
}

impl<V> HostIndex<V> {
    /// Every value, for finishing the build.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.exact
            .values_mut()
            .chain(self.wildcard.values_mut())
            .chain(std::iter::once(&mut self.any))
    }

    /// The values a normalised request host reaches, most specific first: the exact host,
    /// wildcard suffixes from most labels to fewest, then the host-less index.
    pub(crate) fn probe<'s>(&'s self, host: Option<&'s [u8]>) -> impl Iterator<Item = &'s V> + 's {
        let host = host.unwrap_or_default();
        let exact = if host.is_empty() || self.exact.is_empty() {
            None
        } else {
            self.exact.get(host)
        };
        let suffixes = if self.wildcard.is_empty() {
            &[][..]
        } else {
            host
        };
        // A dot at position 0 would leave no label before the suffix: skip it.
        let wildcards = suffixes
            .iter()
            .enumerate()
            .skip(1)
            .filter(|&(_, &b)| b == b'.')
            .filter_map(move |(dot, _)| self.wildcard.get(&host[dot..]));
        exact
            .into_iter()
            .chain(wildcards)
            .chain(std::iter::once(&self.any))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Option<String> {
        let mut buf = [0u8; MAX_HOST_LEN];
        normalize_request_host(raw.as_bytes(), &mut buf)
            .map(|h| String::from_utf8_lossy(h).into_owned())
    }

    #[test]
    fn request_host_drops_port_trailing_dot_and_case() {
        assert_eq!(
            norm("API.Example.COM:8080").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(norm("api.example.com.").as_deref(), Some("api.example.com"));
        assert_eq!(
            norm("api.example.com.:443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(norm("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(norm("[FE80::1]").as_deref(), Some("[fe80::1]"));
        assert_eq!(norm(" a.b ").as_deref(), Some("a.b"));
    }

    #[test]
    fn request_host_empty_or_too_long_is_none() {
        assert_eq!(norm(""), None);
        assert_eq!(norm(":80"), None);
        assert_eq!(norm("."), None);
        assert_eq!(norm("[::1"), None);
        assert_eq!(norm(&"a".repeat(MAX_HOST_LEN + 1)), None);
        assert!(norm(&"a".repeat(MAX_HOST_LEN)).is_some());
    }

    #[test]
    fn config_hosts_normalise_and_reject_ports_and_stray_stars() {
        assert_eq!(
            compile_host(&HostMatch::Exact("API.example.com.".into())),
            Ok(HostKey::Exact(b"api.example.com"[..].into()))
        );
        assert_eq!(
            compile_host(&HostMatch::Wildcard("*.Example.com".into())),
            Ok(HostKey::Wildcard(b".example.com"[..].into(), 2))
        );
        assert!(compile_host(&HostMatch::Exact("a.com:80".into())).is_err());
        assert!(compile_host(&HostMatch::Exact("*.a.com".into())).is_err());
        assert!(compile_host(&HostMatch::Exact("".into())).is_err());
        assert!(compile_host(&HostMatch::Exact("a b".into())).is_err());
        assert!(compile_host(&HostMatch::Wildcard(".a.com".into())).is_err());
        assert!(compile_host(&HostMatch::Wildcard("*.".into())).is_err());
        assert!(compile_host(&HostMatch::Wildcard("*.*.a.com".into())).is_err());
        assert!(compile_host(&HostMatch::Wildcard("*..a.com".into())).is_err());
        assert!(compile_host(&HostMatch::Exact("a..com".into())).is_err());
        assert!(compile_host(&HostMatch::Exact("[::1]".into())).is_ok());
        assert!(compile_host(&HostMatch::Exact("[::1]:80".into())).is_err());
    }

    #[test]
    fn probe_goes_exact_then_longer_wildcards_then_any() {
        let mut index: HostIndex<Vec<&str>> = HostIndex::default();
        for (pattern, tag) in [
            (HostMatch::Wildcard("*.com".into()), "*.com"),
            (HostMatch::Wildcard("*.b.com".into()), "*.b.com"),
            (HostMatch::Exact("a.b.com".into()), "a.b.com"),
            (HostMatch::Any, "any"),
        ] {
            let key = compile_host(&pattern).unwrap();
            index.entry(&key).push(tag);
        }
        let seen: Vec<&str> = index.probe(Some(b"a.b.com")).flatten().copied().collect();
        assert_eq!(seen, ["a.b.com", "*.b.com", "*.com", "any"]);
        let seen: Vec<&str> = index.probe(Some(b"b.com")).flatten().copied().collect();
        assert_eq!(seen, ["*.com", "any"]);
        let seen: Vec<&str> = index.probe(None).flatten().copied().collect();
        assert_eq!(seen, ["any"]);
    }
}
