//! Hop-by-hop header names: the headers of one message that concern only the connection it came
//! on, and that a proxy must therefore drop before forwarding (RFC 9110 §7.6.1).
//!
//! Two sources: a fixed set every proxy drops, and whatever names the sender lists in its
//! Connection headers (`Connection: close, x-trace` makes `x-trace` hop-by-hop for that one
//! message). The listed names are kept as slices of the caller's buffer in a fixed array, so
//! building the set allocates nothing; a message that lists more than
//! [`MAX_CONNECTION_TOKENS`] distinct names is refused rather than partly honoured (a header it
//! asked to have dropped would otherwise be forwarded).

use super::error::{CodecError, Kind};
use super::head::{is_token, list_elements};

/// The most distinct names a message may list in its Connection headers, beyond the fixed set.
pub const MAX_CONNECTION_TOKENS: usize = 16;

/// The names that are hop-by-hop in every message.
const FIXED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Hop-by-hop header names of one message: the fixed set (connection, keep-alive,
/// proxy-connection, te, trailer, transfer-encoding, upgrade, proxy-authenticate,
/// proxy-authorization) plus every token listed in Connection headers.
#[derive(Debug, Clone, Copy)]
pub struct HopByHop<'b> {
    listed: [&'b [u8]; MAX_CONNECTION_TOKENS],
    len: usize,
}

impl<'b> HopByHop<'b> {
    /// Collects the hop-by-hop names of the message with these headers.
    ///
    /// Errors (400) when a Connection element is not a token, or when more than
    /// [`MAX_CONNECTION_TOKENS`] distinct names outside the fixed set are listed. Empty list
    /// elements are skipped, as RFC 9110 §5.6.1 asks.
    pub fn from_headers(headers: &[httparse::Header<'b>]) -> Result<Self, CodecError> {
        let mut set = HopByHop {
            listed: [&[]; MAX_CONNECTION_TOKENS],
            len: 0,
        };
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        {
            for token in list_elements(h.value) {
                if token.is_empty() {
                    continue;
                }
                if !is_token(token) {
                    return Err(Kind::InvalidConnectionToken.into());
                }
                if set.contains_bytes(token) {
                    continue;
                }
                if set.len == MAX_CONNECTION_TOKENS {
                    return Err(Kind::TooManyConnectionTokens.into());
                }
                set.listed[set.len] = token;
                set.len += 1;
            }
        }
        Ok(set)
    }

    /// Whether the header `name` is hop-by-hop for this message (ASCII case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.contains_bytes(name.as_bytes())
    }

    fn contains_bytes(&self, name: &[u8]) -> bool {
        FIXED
            .iter()
            .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
            || self.listed[..self.len]
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use httparse::Header;

    fn h<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn fixed_hop_by_hop_names_are_always_contained() {
        let set = HopByHop::from_headers(&[]).unwrap();
        for name in FIXED {
            assert!(set.contains(name), "{name}");
            assert!(set.contains(&name.to_ascii_uppercase()), "{name}");
        }
        assert!(set.contains("Transfer-Encoding"));
        assert!(!set.contains("content-length"));
        assert!(!set.contains("host"));
        assert!(!set.contains(""));
    }

    #[test]
    fn connection_listed_names_are_hop_by_hop_case_insensitively() {
        let headers = [
            h("Connection", "close, X-Trace"),
            h("connection", " x-Other ,,"),
        ];
        let set = HopByHop::from_headers(&headers).unwrap();
        assert!(set.contains("x-trace"));
        assert!(set.contains("X-OTHER"));
        assert!(set.contains("close"));
        assert!(!set.contains("x-third"));
        assert!(!set.contains("x-trac"));
    }

    #[test]
    fn connection_element_that_is_not_a_token_is_rejected() {
        let e = HopByHop::from_headers(&[h("Connection", "close, a b")]).unwrap_err();
        assert_eq!((e.status(), e.kind()), (400, Kind::InvalidConnectionToken));
        assert!(HopByHop::from_headers(&[h("Connection", "x@y")]).is_err());
    }

    #[test]
    fn more_than_max_connection_tokens_is_rejected() {
        let many: Vec<String> = (0..=MAX_CONNECTION_TOKENS)
            .map(|i| format!("x-{i}"))
            .collect();
        let value = many.join(", ");
        let e = HopByHop::from_headers(&[h("Connection", &value)]).unwrap_err();
        assert_eq!((e.status(), e.kind()), (400, Kind::TooManyConnectionTokens));

        let value = many[..MAX_CONNECTION_TOKENS].join(", ");
        let set = HopByHop::from_headers(&[h("Connection", &value)]).unwrap();
        assert!(set.contains("x-15"));
    }

    #[test]
    fn repeated_and_fixed_names_do_not_use_up_capacity() {
        let mut value = String::from("keep-alive, upgrade, te");
        for _ in 0..40 {
            value.push_str(", x-same, X-SAME");
        }
        let set = HopByHop::from_headers(&[h("Connection", &value)]).unwrap();
        assert!(set.contains("x-same"));
    }
}
