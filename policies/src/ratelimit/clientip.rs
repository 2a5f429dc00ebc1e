//! Which client address to key on (rate limits, logs, allow lists) when the gateway sits behind
//! load balancers.
//!
//! Behind a load balancer the TCP peer is the balancer, not the client; the client's address
//! travels in `X-Forwarded-For`, to which every proxy appends the address it received the request
//! from. That header cannot be taken at its word: the client may send one of its own, so its
//! leftmost elements are whatever the client wrote (`X-Forwarded-For: 1.1.1.1` costs nothing and
//! would let one client spread its traffic over any number of rate-limit keys, or pass as
//! someone else). Only hops appended by proxies we run are believed.
//!
//! So the operator lists the networks of those proxies ([`TrustedProxies`]), and
//! [`TrustedProxies::client_ip`] starts from the TCP peer: if the peer is not a trusted proxy the
//! header is ignored altogether and the peer is the client. Otherwise the header is walked from
//! the right (the nearest hop) over every trusted address; the first untrusted one is the client,
//! as that is the address the outermost trusted proxy saw. Everything left of it is the client's
//! own say and is never looked at. A value that does not parse as an address ends the walk at the
//! last address known good, rather than skipping it and believing what lies beyond.
//!
//! Only `X-Forwarded-For` is read (not RFC 7239 `Forwarded`). Addresses are returned as written:
//! an IPv4 client reached over a dual-stack socket is `::ffff:a.b.c.d`; callers wanting one key
//! per host whatever the socket family can apply [`IpAddr::to_canonical`].
//!
//! Matching is a linear scan over pre-masked 128-bit networks (IPv4 stored as IPv4-mapped IPv6,
//! so `::ffff:10.1.2.3` and `10.1.2.3` match the same networks), and [`TrustedProxies::client_ip`]
//! never allocates.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The header walked by [`TrustedProxies::client_ip`] (matched case-insensitively).
const XFF: &str = "x-forwarded-for";

/// `::ffff:0:0/96`, the prefix under which IPv4 addresses are stored.
const V4_MAPPED_PREFIX: u128 = 0xffff_u128 << 32;

/// An IPv4 or IPv6 network in CIDR form.
///
/// Parsed from `"10.0.0.0/8"`, `"2001:db8::/32"`, or a bare address (`"192.168.1.7"` is a /32,
/// `"::1"` a /128). Host bits below the prefix are allowed and masked off
/// (`"10.1.2.3/8"` is `10.0.0.0/8`). An IPv4 network also contains the IPv4-mapped IPv6 form of
/// its addresses (`::ffff:10.1.2.3` is in `10.0.0.0/8`); an IPv6 network covering `::ffff:0:0/96`
/// (such as `::/0`) contains IPv4 addresses too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address as 128 bits (IPv4 mapped), host bits cleared.
    bits: u128,
    /// The netmask in the same 128-bit space.
    mask: u128,
    /// The prefix length as written (0..=32 for IPv4, 0..=128 for IPv6).
    len: u8,
    /// Whether the network was written as IPv4 (for display).
    v4: bool,
}

impl Cidr {
    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) match
    /// IPv4 networks.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        to_bits(ip) & self.mask == self.bits
    }

    /// Builds the network of `addr` with a prefix of `len` bits, masking host bits; `None` if
    /// `len` is longer than the address.
    fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let (v4, max) = match addr {
            IpAddr::V4(_) => (true, 32),
            IpAddr::V6(_) => (false, 128),
        };
        if len > max {
            return None;
        }
        // IPv4 networks live under ::ffff:0:0/96, so their mask also covers those 96 bits.
        let len128 = u32::from(len) + (128 - u32::from(max));
        let mask = u128::MAX.checked_shl(128 - len128).unwrap_or(0);
        Some(Cidr {
            bits: to_bits(addr) & mask,
            mask,
            len,
            v4,
        })
    }
}

/// `ip` as 128 bits, IPv4 as its IPv4-mapped IPv6 form.
#[inline]
fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => V4_MAPPED_PREFIX | u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl fmt::Display for Cidr {
    /// The masked network, `10.0.0.0/8` or `2001:db8::/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v4 {
            // The low 32 bits of a v4 network are its address; truncation is the point.
            write!(f, "{}/{}", Ipv4Addr::from(self.bits as u32), self.len)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.bits), self.len)
        }
    }
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, thiserror::Error)]
pub enum CidrError {
    /// The input was empty (or only whitespace).
    #[error("empty network: expected an address or address/prefix such as 10.0.0.0/8")]
    Empty,
    /// The part before the `/` is not an IPv4 or IPv6 address.
    #[error("invalid network {input:?}: {addr:?} is not an IPv4 or IPv6 address")]
    InvalidAddress {
        /// The whole input, trimmed.
        input: String,
        /// The address part.
        addr: String,
    },
    /// The part after the `/` is not a decimal number.
    #[error("invalid network {input:?}: prefix length {prefix:?} is not a decimal number")]
    InvalidPrefix {
        /// The whole input, trimmed.
        input: String,
        /// The prefix part.
        prefix: String,
    },
    /// The prefix length is longer than the address.
    #[error(
        "invalid network {input:?}: prefix length {len} is longer than {max}, the bits of an \
         IPv{family} address"
    )]
    PrefixTooLong {
        /// The whole input, trimmed.
        input: String,
        /// The prefix length given (saturated at `u32::MAX`).
        len: u32,
        /// The longest prefix the address family allows (32 or 128).
        max: u8,
        /// The address family, 4 or 6.
        family: u8,
    },
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `addr/len` or a bare address (a single host); surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr_part, prefix_part) = match input.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (input, None),
        };
        let addr: IpAddr = addr_part.parse().map_err(|_| CidrError::InvalidAddress {
            input: input.to_owned(),
            addr: addr_part.to_owned(),
        })?;
        let (max, family) = match addr {
            IpAddr::V4(_) => (32u8, 4u8),
            IpAddr::V6(_) => (128u8, 6u8),
        };
        let len = match prefix_part {
            None => u32::from(max),
            Some(p) => {
                // Digits only: u32::from_str would also take a leading '+'.
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::InvalidPrefix {
                        input: input.to_owned(),
                        prefix: p.to_owned(),
                    });
                }
                // All digits, so the only failure left is overflow: far too long anyway.
                p.parse::<u32>().unwrap_or(u32::MAX)
            }
        };
        let too_long = || CidrError::PrefixTooLong {
            input: input.to_owned(),
            len,
            max,
            family,
        };
        let len8 = u8::try_from(len).map_err(|_| too_long())?;
        Cidr::new(addr, len8).ok_or_else(too_long)
    }
}

/// The networks whose hops in `X-Forwarded-For` are believed: the gateway's own load balancers
/// and proxies. Empty (the default) trusts nobody, so the TCP peer is always the client.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
}

impl TrustedProxies {
    /// Trusts the given networks.
    pub fn new(nets: Vec<Cidr>) -> Self {
        TrustedProxies { nets }
    }

    /// Whether no network is trusted (`X-Forwarded-For` is then never read).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is in a trusted network.
    #[inline]
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let bits = to_bits(ip);
        self.nets.iter().any(|n| bits & n.mask == n.bits)
    }

    /// The client address: `peer` itself unless `peer` is a trusted proxy; then walk the
    /// X-Forwarded-For values (all occurrences of the header, in order, comma separated) from the
    /// right, skipping trusted addresses, and return the first untrusted one; if every listed
    /// address is trusted, the leftmost; if a value is not a valid IP (or the header is absent),
    /// stop there and return the last address known good (the peer or the last trusted hop
    /// walked). Accepts `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`, `2001:db8::1` (and
    /// `[2001:db8::1]`), ignores empty elements and whitespace. Never allocates.
    ///
    /// The last header line's rightmost element is the nearest hop. The header name is matched
    /// case-insensitively; other headers are ignored.
    pub fn client_ip(&self, peer: IpAddr, headers: &[httparse::Header<'_>]) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut known_good = peer;
        let lines = headers
            .iter()
            .rev()
            .filter(|h| h.name.eq_ignore_ascii_case(XFF));
        for line in lines {
            for element in line.value.rsplit(|&b| b == b',') {
                let element = element.trim_ascii();
                if element.is_empty() {
                    continue;
                }
                match parse_hop(element) {
                    None => return known_good,
                    Some(ip) if self.is_trusted(ip) => known_good = ip,
                    Some(ip) => return ip,
                }
            }
        }
        known_good
    }
}

/// One `X-Forwarded-For` element (already trimmed): `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`. Anything else (`unknown`, host names, obfuscated
/// identifiers, bad bytes) is `None`. A bare IPv6 address is never split at a colon: `::1:443` is
/// the address `::1:443`, not `::1` port 443.
fn parse_hop(element: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(element).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    s.parse::<SocketAddr>().ok().map(|sa| sa.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// 10.0.0.0/8 and fd00::/8 (the gateway's own proxies) and 192.0.2.10 (an edge balancer).
    fn trusted() -> TrustedProxies {
        TrustedProxies::new(vec![
            cidr("10.0.0.0/8"),
            cidr("fd00::/8"),
            cidr("192.0.2.10"),
        ])
    }

    fn xff(value: &str) -> httparse::Header<'_> {
        httparse::Header {
            name: "X-Forwarded-For",
            value: value.as_bytes(),
        }
    }

    fn hdr<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        let c = cidr("10.0.0.0/8");
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert_eq!(cidr("192.168.1.7"), cidr("192.168.1.7/32"));
        assert_eq!(cidr("192.168.1.7").to_string(), "192.168.1.7/32");
        assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("::1"), cidr("::1/128"));
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
        assert_eq!(cidr("10.0.0.0/08"), cidr("10.0.0.0/8"));
        // Whitespace around the whole input is trimmed.
        assert_eq!(cidr("  10.0.0.0/8\n"), c);
        assert_eq!(cidr("\t::1 "), cidr("::1/128"));
    }

    #[test]
    fn host_bits_are_masked() {
        assert_eq!(cidr("10.1.2.3/8"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("2001:db8:ffff::1/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("255.255.255.255/0"), cidr("0.0.0.0/0"));
        assert_eq!(cidr("192.168.1.255/25").to_string(), "192.168.1.128/25");
    }

    #[test]
    fn rejects_bad_networks_with_messages_naming_the_input() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0 /8",
            "10.0.0/8",
            "10.0.0.256",
            "example.com/8",
            "10.0.0.0/8/8",
            "10.0.0.0/99999999999999999999999",
            "[::1]/128",
            "fe80::1%eth0/64",
            "1.2.3.4:80",
            "/8",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{bad}: {msg}");
        }
        assert!(matches!("".parse::<Cidr>(), Err(CidrError::Empty)));
        assert!(matches!(" \t".parse::<Cidr>(), Err(CidrError::Empty)));

        let msg = "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid network \"10.0.0.0/33\": prefix length 33 is longer than 32, the bits of \
             an IPv4 address"
        );
        let msg = " ::/129 ".parse::<Cidr>().unwrap_err().to_string();
        assert!(msg.contains("\"::/129\"") && msg.contains("128"), "{msg}");
        let msg = "10.0.0/8".parse::<Cidr>().unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid network \"10.0.0/8\": \"10.0.0\" is not an IPv4 or IPv6 address"
        );
        let msg = "10.0.0.0/x".parse::<Cidr>().unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid network \"10.0.0.0/x\": prefix length \"x\" is not a decimal number"
        );
        // Lengths valid for IPv6 are not valid for IPv4.
        assert!("10.0.0.0/64".parse::<Cidr>().is_err());
        assert!("2001:db8::/64".parse::<Cidr>().is_ok());
    }

    #[test]
    fn containment() {
        let ten = cidr("10.0.0.0/8");
        assert!(ten.contains(ip("10.0.0.0")));
        assert!(ten.contains(ip("10.255.255.255")));
        assert!(!ten.contains(ip("11.0.0.0")));
        assert!(!ten.contains(ip("9.255.255.255")));

        let host = cidr("192.168.1.7");
        assert!(host.contains(ip("192.168.1.7")));
        assert!(!host.contains(ip("192.168.1.6")));
        assert!(!host.contains(ip("192.168.1.8")));

        let all4 = cidr("0.0.0.0/0");
        assert!(all4.contains(ip("0.0.0.0")));
        assert!(all4.contains(ip("255.255.255.255")));
        assert!(!all4.contains(ip("2001:db8::1")));
        assert!(!all4.contains(ip("::")));

        let doc = cidr("2001:db8::/32");
        assert!(doc.contains(ip("2001:db8::1")));
        assert!(doc.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!doc.contains(ip("2001:db9::")));
        assert!(!doc.contains(ip("10.0.0.1")));

        let lo6 = cidr("::1");
        assert!(lo6.contains(ip("::1")));
        assert!(!lo6.contains(ip("::2")));
        // 127.0.0.1 is not ::1.
        assert!(!lo6.contains(ip("127.0.0.1")));

        let half = cidr("192.168.1.128/25");
        assert!(half.contains(ip("192.168.1.128")));
        assert!(half.contains(ip("192.168.1.255")));
        assert!(!half.contains(ip("192.168.1.127")));
    }

    #[test]
    fn mapped_addresses_match_ipv4_networks() {
        let ten = cidr("10.0.0.0/8");
        assert!(ten.contains(ip("::ffff:10.1.2.3")));
        assert!(!ten.contains(ip("::ffff:11.1.2.3")));
        // The IPv4-compatible (deprecated) form is not mapped.
        assert!(!ten.contains(ip("::10.1.2.3")));
        assert!(cidr("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
        assert!(cidr("1.2.3.4").contains(ip("::ffff:1.2.3.4")));

        // A network written in mapped form matches plain IPv4 too.
        let mapped = cidr("::ffff:10.0.0.0/104");
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!(!mapped.contains(ip("11.9.9.9")));

        // ::/0 is everything, IPv4 included.
        assert!(cidr("::/0").contains(ip("1.2.3.4")));

        let t = trusted();
        assert!(t.is_trusted(ip("::ffff:10.0.0.1")));
        assert!(t.is_trusted(ip("::ffff:192.0.2.10")));
        assert!(!t.is_trusted(ip("::ffff:192.0.2.11")));
        let headers = [xff("198.51.100.7")];
        assert_eq!(
            t.client_ip(ip("::ffff:10.0.0.1"), &headers),
            ip("198.51.100.7")
        );
        // Mapped hops are trusted as their IPv4 selves.
        let headers = [xff("198.51.100.7, ::ffff:10.0.0.2")];
        assert_eq!(t.client_ip(ip("10.0.0.1"), &headers), ip("198.51.100.7"));
    }

    #[test]
    fn trust_list_basics() {
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        assert!(!none.is_trusted(ip("10.0.0.1")));
        assert!(!none.is_trusted(ip("::1")));
        let headers = [xff("198.51.100.7")];
        assert_eq!(none.client_ip(ip("10.0.0.1"), &headers), ip("10.0.0.1"));

        let t = trusted();
        assert!(!t.is_empty());
        assert!(t.is_trusted(ip("10.200.0.1")));
        assert!(t.is_trusted(ip("fd12::1")));
        assert!(t.is_trusted(ip("192.0.2.10")));
        assert!(!t.is_trusted(ip("192.0.2.11")));
        assert!(!t.is_trusted(ip("fe80::1")));
        assert!(TrustedProxies::new(Vec::new()).is_empty());
    }

    #[test]
    fn untrusted_peer_ignores_xff() {
        let t = trusted();
        let headers = [xff("10.0.0.5"), xff("1.1.1.1")];
        assert_eq!(t.client_ip(ip("203.0.113.5"), &headers), ip("203.0.113.5"));
        assert_eq!(t.client_ip(ip("2001:db8::5"), &headers), ip("2001:db8::5"));
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        let t = trusted();
        assert_eq!(t.client_ip(ip("10.0.0.1"), &[]), ip("10.0.0.1"));
        let headers = [hdr("Host", "example.com"), hdr("X-Real-IP", "1.1.1.1")];
        assert_eq!(t.client_ip(ip("10.0.0.1"), &headers), ip("10.0.0.1"));
        // Present but empty: nothing listed, so nothing walked.
        let headers = [xff(""), xff(" , ,")];
        assert_eq!(t.client_ip(ip("10.0.0.1"), &headers), ip("10.0.0.1"));
    }

    #[test]
    fn spoofed_prefix_is_ignored() {
        let t = trusted();
        // The client sent "X-Forwarded-For: 6.6.6.6, 1.1.1.1"; the edge balancer appended the
        // address it saw, an internal proxy appended the balancer's.
        let headers = [xff("6.6.6.6, 1.1.1.1, 198.51.100.7, 192.0.2.10")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("198.51.100.7"));
        // Posing as a trusted proxy does not help either: the nearest untrusted hop wins.
        let headers = [xff("10.0.0.9, 198.51.100.7, 10.0.0.5")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("198.51.100.7"));
        // A direct client cannot set its own address at all.
        let headers = [xff("198.51.100.99")];
        assert_eq!(
            t.client_ip(ip("198.51.100.7"), &headers),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        let t = trusted();
        let headers = [xff("10.1.1.1, fd00::7, 10.2.2.2")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("10.1.1.1"));
        let headers = [xff("10.1.1.1"), xff("10.2.2.2")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("10.1.1.1"));
    }

    #[test]
    fn multiple_header_lines_walk_last_line_first() {
        let t = trusted();
        let headers = [
            xff("6.6.6.6, 198.51.100.7"),
            hdr("Host", "example.com"),
            hdr("x-forwarded-for", "10.0.0.5"),
        ];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("198.51.100.7"));

        // The last line's rightmost element is the nearest hop.
        let headers = [xff("198.51.100.1"), xff("198.51.100.2")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("198.51.100.2"));
        let headers = [
            xff("198.51.100.1, 198.51.100.2"),
            xff("198.51.100.3, 10.0.0.1"),
        ];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("198.51.100.3"));

        // Header names match whatever their case; look-alikes do not.
        let headers = [
            hdr("X-FORWARDED-FOR", "198.51.100.1"),
            hdr("X-Forwarded-For-Not", "198.51.100.2"),
            hdr("Forwarded", "for=198.51.100.3"),
        ];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("198.51.100.1"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_known_good() {
        let t = trusted();
        // The nearest value is garbage: the peer is all we know.
        let headers = [xff("198.51.100.7, unknown")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("10.0.0.6"));
        // Garbage behind a trusted hop: that hop is the last known good.
        let headers = [xff("198.51.100.7, unknown, 10.0.0.5")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("10.0.0.5"));
        // Garbage in an earlier line, same thing.
        let headers = [xff("198.51.100.7, bogus"), xff("fd00::5")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("fd00::5"));
        // Garbage left of the client is never reached.
        let headers = [xff("<script>, 198.51.100.7, 10.0.0.5")];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("198.51.100.7"));
        for bad in [
            "example.com",
            "_hidden",
            "1.2.3.4:99999",
            "1.2.3.4:",
            "1.2.3.4 5",
            "01.2.3.4",
            "1.2.3",
            "[1.2.3.4]:80",
            "[2001:db8::1",
            "2001:db8::1]",
            "[2001:db8::1]:",
            "fe80::1%eth0",
            "for=1.2.3.4",
            "\"1.2.3.4\"",
        ] {
            let headers = [xff(bad), xff("10.0.0.5")];
            assert_eq!(
                t.client_ip(ip("10.0.0.6"), &headers),
                ip("10.0.0.5"),
                "{bad}"
            );
        }
        // Bytes that are not UTF-8.
        let headers = [
            xff("198.51.100.7"),
            httparse::Header {
                name: "X-Forwarded-For",
                value: b"\xff\xfe, 10.0.0.5",
            },
        ];
        assert_eq!(t.client_ip(ip("10.0.0.6"), &headers), ip("10.0.0.5"));
    }

    #[test]
    fn element_forms_whitespace_and_empty_elements() {
        let t = trusted();
        let peer = ip("10.0.0.6");
        for (value, want) in [
            ("198.51.100.7", "198.51.100.7"),
            ("198.51.100.7:5678", "198.51.100.7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
            ("::ffff:198.51.100.7", "::ffff:198.51.100.7"),
            ("  198.51.100.7\t", "198.51.100.7"),
            ("198.51.100.7,", "198.51.100.7"),
            (",,198.51.100.7,,", "198.51.100.7"),
            ("  , [2001:db8::7]:443 ,, 10.0.0.5:8080\t", "2001:db8::7"),
            ("198.51.100.7,[fd00::1]:80,\t10.0.0.5", "198.51.100.7"),
        ] {
            assert_eq!(t.client_ip(peer, &[xff(value)]), ip(want), "{value:?}");
        }
    }

    #[test]
    fn hop_parsing() {
        assert_eq!(parse_hop(b"1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_hop(b"1.2.3.4:0"), Some(ip("1.2.3.4")));
        assert_eq!(parse_hop(b"1.2.3.4:65535"), Some(ip("1.2.3.4")));
        assert_eq!(parse_hop(b"[::1]:443"), Some(ip("::1")));
        assert_eq!(parse_hop(b"[::1]"), Some(ip("::1")));
        assert_eq!(parse_hop(b"::1"), Some(ip("::1")));
        // Not split at a colon: this is an address.
        assert_eq!(parse_hop(b"::1:443"), Some(ip("::1:443")));
        assert_eq!(parse_hop(b"1.2.3.4:65536"), None);
        assert_eq!(parse_hop(b"unknown"), None);
        assert_eq!(parse_hop(b""), None);
        assert_eq!(parse_hop(b"[]"), None);
        assert_eq!(parse_hop(b"[1.2.3.4]"), None);
    }

    // --- properties ---------------------------------------------------------------------------

    /// Addresses in and out of [`trusted`], in the forms a proxy might write.
    fn element() -> impl Strategy<Value = String> {
        let v4 = prop_oneof![
            (0u8..3, any::<u8>()).prop_map(|(b, c)| format!("10.{b}.{c}.1")),
            Just("192.0.2.10".to_owned()),
            (any::<u8>(), any::<u8>()).prop_map(|(a, b)| format!("198.51.{a}.{b}")),
            any::<u32>().prop_map(|n| Ipv4Addr::from(n).to_string()),
        ];
        let v6 = prop_oneof![
            any::<u16>().prop_map(|n| format!("fd00::{n:x}")),
            any::<u16>().prop_map(|n| format!("2001:db8::{n:x}")),
            any::<u128>().prop_map(|n| Ipv6Addr::from(n).to_string()),
            (0u8..3).prop_map(|b| format!("::ffff:10.{b}.0.1")),
        ];
        prop_oneof![
            4 => v4.clone(),
            2 => (v4, any::<u16>()).prop_map(|(a, p)| format!("{a}:{p}")),
            2 => v6.clone(),
            1 => v6.clone().prop_map(|a| format!("[{a}]")),
            2 => (v6, any::<u16>()).prop_map(|(a, p)| format!("[{a}]:{p}")),
            1 => Just(String::new()),
            1 => Just("unknown".to_owned()),
            1 => "[ -~]{0,12}",
        ]
    }

    /// A header line: elements joined by commas with stray whitespace.
    fn line() -> impl Strategy<Value = String> {
        proptest::collection::vec((element(), "[ \t]{0,2}", "[ \t]{0,2}"), 0..5).prop_map(|es| {
            es.into_iter()
                .map(|(e, pre, post)| format!("{pre}{e}{post}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    fn peer() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            Just(ip("10.0.0.6")),
            Just(ip("::ffff:10.0.0.6")),
            Just(ip("fd00::6")),
            Just(ip("192.0.2.10")),
            Just(ip("198.51.100.66")),
            Just(ip("2001:db8::66")),
        ]
    }

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just("X-Forwarded-For".to_owned()),
            2 => Just("x-forwarded-for".to_owned()),
            1 => Just("X-FORWARDED-FOR".to_owned()),
            1 => Just("Host".to_owned()),
            1 => "[!-~]{1,20}",
        ]
    }

    /// Every address listed in the `X-Forwarded-For` lines of `headers`.
    fn listed(headers: &[httparse::Header<'_>]) -> Vec<IpAddr> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .filter_map(|e| parse_hop(e.trim_ascii()))
            .collect()
    }

    /// The rule written out plainly, allocating: all elements left to right, then from the right.
    fn model(t: &TrustedProxies, peer: IpAddr, headers: &[httparse::Header<'_>]) -> IpAddr {
        if !t.is_trusted(peer) {
            return peer;
        }
        let mut elements: Vec<&[u8]> = Vec::new();
        for h in headers {
            if h.name.eq_ignore_ascii_case("x-forwarded-for") {
                for e in h.value.split(|&b| b == b',') {
                    let e = e.trim_ascii();
                    if !e.is_empty() {
                        elements.push(e);
                    }
                }
            }
        }
        let mut good = peer;
        for e in elements.iter().rev() {
            let Some(a) = parse_hop(e) else { return good };
            if !t.is_trusted(a) {
                return a;
            }
            good = a;
        }
        good
    }

    proptest! {
        #[test]
        fn never_panics_and_returns_peer_or_a_listed_address(
            peer in peer(),
            raw in proptest::collection::vec(
                (header_name(), proptest::collection::vec(any::<u8>(), 0..64)),
                0..6,
            ),
        ) {
            let t = trusted();
            let headers: Vec<httparse::Header<'_>> = raw
                .iter()
                .map(|(n, v)| httparse::Header { name: n, value: v })
                .collect();
            let got = t.client_ip(peer, &headers);
            prop_assert!(got == peer || listed(&headers).contains(&got), "{got}");
            prop_assert_eq!(got, model(&t, peer, &headers));
        }

        #[test]
        fn plausible_chains_follow_the_rule(
            peer in peer(),
            raw in proptest::collection::vec((header_name(), line()), 0..4),
            spoof in line(),
        ) {
            let t = trusted();
            let headers: Vec<httparse::Header<'_>> = raw
                .iter()
                .map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() })
                .collect();
            let got = t.client_ip(peer, &headers);
            prop_assert!(got == peer || listed(&headers).contains(&got), "{got}");
            prop_assert_eq!(got, model(&t, peer, &headers));
            if !t.is_trusted(peer) {
                prop_assert_eq!(got, peer);
            }
            // Once an untrusted hop is found, whatever the client wrote left of it is never
            // read: prepend anything to the leftmost line and the answer stands.
            if got != peer && !t.is_trusted(got) {
                let mut spoofed = raw.clone();
                if let Some((_, v)) = spoofed
                    .iter_mut()
                    .find(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
                {
                    *v = format!("{spoof},{v}");
                }
                let headers: Vec<httparse::Header<'_>> = spoofed
                    .iter()
                    .map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() })
                    .collect();
                prop_assert_eq!(t.client_ip(peer, &headers), got);
            }
        }

        #[test]
        fn cidr_display_round_trips(bits in any::<u128>(), len in 0u8..=128, v4 in any::<bool>()) {
            let (addr, len) = if v4 {
                (IpAddr::V4(Ipv4Addr::from(bits as u32)), len % 33)
            } else {
                (IpAddr::V6(Ipv6Addr::from(bits)), len)
            };
            let c = Cidr::new(addr, len).unwrap();
            prop_assert!(c.contains(addr));
            let back: Cidr = c.to_string().parse().unwrap();
            prop_assert_eq!(back, c);
            let written: Cidr = format!("{addr}/{len}").parse().unwrap();
            prop_assert_eq!(written, c);
        }
    }
}
