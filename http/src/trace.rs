//! Request ids and W3C trace context, per request, without allocating.
//!
//! Every request leaving the gateway carries an `X-Request-Id` (the client's when it sent a sane
//! one, else a fresh one) and a W3C `traceparent`: an incoming valid one keeps its trace id and
//! sampled flag and gets a new parent id (this hop's span), a missing or invalid one starts a new
//! trace. `tracestate` is end-to-end and passes through untouched. Ids come from a per-core
//! generator (no shared state); they are unique enough for correlation, not secrets.

/// Longest client-supplied request id the gateway keeps (longer ones are replaced).
pub const MAX_REQUEST_ID: usize = 128;

/// A per-core id generator (wyrand: one multiply per 64 bits).
#[derive(Debug, Clone)]
pub struct IdGen(u64);

impl IdGen {
    /// A generator seeded from `seed` (mix in the worker index, pid and time).
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x2d35_8dcc_aa6c_78a5)
    }

    /// A generator seeded from the clock, the process id and `salt`.
    pub fn from_entropy(salt: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut g = Self::new(t ^ (u64::from(std::process::id()) << 32) ^ salt.rotate_left(17));
        g.next_u64();
        g
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// The next non-zero 64 random bits (W3C forbids all-zero ids).
    #[inline]
    fn next_nonzero(&mut self) -> u64 {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v;
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The ids of one request (reused per connection).
#[derive(Debug, Clone)]
pub struct RequestTrace {
    id: [u8; MAX_REQUEST_ID],
    id_len: usize,
    /// `00-<32 hex trace>-<16 hex parent>-<2 hex flags>`.
    traceparent: [u8; 55],
}

impl Default for RequestTrace {
    fn default() -> Self {
        Self {
            id: [0; MAX_REQUEST_ID],
            id_len: 0,
            traceparent: [b'0'; 55],
        }
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
}

fn is_lower_hex(s: &[u8]) -> bool {
    s.iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Parses a `traceparent` value: `(trace id, flags)` when it is valid version-00 (or a later
/// version, read as 00 as the spec asks), else `None`.
pub fn parse_traceparent(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let v = trim(v);
    if v.len() < 55 {
        return None;
    }
    let (version, rest) = (&v[..2], &v[2..]);
    if !is_lower_hex(version) || version == b"ff" {
        return None;
    }
    // Version 00 is exactly 55 bytes; later versions may append `-...` fields.
    if version == b"00" && v.len() != 55 || v.len() > 55 && v[55] != b'-' {
        return None;
    }
    if rest[0] != b'-' || rest[33] != b'-' || rest[50] != b'-' {
        return None;
    }
    let trace = &rest[1..33];
    let parent = &rest[34..50];
    let flags = &rest[51..53];
    if !is_lower_hex(trace) || !is_lower_hex(parent) || !is_lower_hex(flags) {
        return None;
    }
    if trace.iter().all(|&b| b == b'0') || parent.iter().all(|&b| b == b'0') {
        return None;
    }
    Some((trace, flags))
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &v[s..e.max(s)]
}

impl RequestTrace {
    /// Fills the ids for a request whose headers are `headers`.
    pub fn assign(&mut self, headers: &[httparse::Header<'_>], gen: &mut IdGen) {
        let mut rid: Option<&[u8]> = None;
        let mut tp: Option<&[u8]> = None;
        let mut tp_count = 0;
        for h in headers {
            if h.name.eq_ignore_ascii_case("x-request-id") {
                rid = Some(h.value);
            } else if h.name.eq_ignore_ascii_case("traceparent") {
                tp = Some(h.value);
                tp_count += 1;
            }
        }
        match rid.map(trim) {
            Some(v)
                if !v.is_empty()
                    && v.len() <= MAX_REQUEST_ID
                    && v.iter().all(|&b| is_id_byte(b)) =>
            {
                self.id[..v.len()].copy_from_slice(v);
                self.id_len = v.len();
            }
            _ => {
                // 128 random bits as 32 hex digits.
                hex_into(&mut self.id[..16], gen.next_u64());
                hex_into(&mut self.id[16..32], gen.next_u64());
                self.id_len = 32;
            }
        }
        self.traceparent[..3].copy_from_slice(b"00-");
        self.traceparent[35] = b'-';
        self.traceparent[52] = b'-';
        // More than one traceparent is invalid: start a new trace.
        match tp.filter(|_| tp_count == 1).and_then(parse_traceparent) {
            Some((trace, flags)) => {
                self.traceparent[3..35].copy_from_slice(trace);
                self.traceparent[53..55].copy_from_slice(flags);
            }
            None => {
                hex_into(&mut self.traceparent[3..19], gen.next_nonzero());
                hex_into(&mut self.traceparent[19..35], gen.next_u64());
                // A trace the gateway starts is not sampled: sampling is the tracer's decision.
                self.traceparent[53..55].copy_from_slice(b"00");
            }
        }
        hex_into(&mut self.traceparent[36..52], gen.next_nonzero());
    }

    /// The request id.
    pub fn request_id(&self) -> &[u8] {
        &self.id[..self.id_len]
    }

    /// The `traceparent` value sent upstream.
    pub fn traceparent(&self) -> &[u8] {
        &self.traceparent
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &[u8] {
        &self.traceparent[3..35]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn a_new_request_gets_fresh_ids() {
        let mut g = IdGen::new(7);
        let mut t = RequestTrace::default();
        t.assign(&[], &mut g);
        let id = t.request_id().to_vec();
        assert_eq!(id.len(), 32);
        assert!(is_lower_hex(&id));
        let tp = t.traceparent().to_vec();
        let (trace, flags) = parse_traceparent(&tp).expect("valid");
        assert_eq!(flags, b"00");
        assert_eq!(trace, t.trace_id());
        t.assign(&[], &mut g);
        assert_ne!(t.request_id(), &id[..], "ids differ per request");
        assert_ne!(t.traceparent(), &tp[..]);
    }

    #[test]
    fn a_valid_traceparent_keeps_trace_and_flags_with_a_new_parent() {
        let incoming = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut g = IdGen::new(1);
        let mut t = RequestTrace::default();
        t.assign(
            &[h("TraceParent", incoming), h("x-request-id", b"abc-123")],
            &mut g,
        );
        assert_eq!(t.request_id(), b"abc-123");
        let tp = t.traceparent();
        assert_eq!(&tp[..36], &incoming[..36]);
        assert_ne!(&tp[36..52], &incoming[36..52], "new span id");
        assert_eq!(&tp[52..], b"-01");
    }

    #[test]
    fn invalid_inputs_are_replaced() {
        let bad = [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"garbage",
        ];
        for v in bad {
            assert!(
                parse_traceparent(v).is_none(),
                "{}",
                String::from_utf8_lossy(v)
            );
        }
        // A later version may carry more fields.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
        let mut g = IdGen::new(3);
        let mut t = RequestTrace::default();
        let long = vec![b'a'; MAX_REQUEST_ID + 1];
        t.assign(&[h("x-request-id", &long)], &mut g);
        assert_eq!(t.request_id().len(), 32);
        t.assign(&[h("x-request-id", b"has space\r\n")], &mut g);
        assert_eq!(t.request_id().len(), 32);
        t.assign(&[h("x-request-id", b"\"quoted\"")], &mut g);
        assert_eq!(t.request_id().len(), 32);
        // Two traceparents: a new trace.
        let one = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        t.assign(&[h("traceparent", one), h("traceparent", one)], &mut g);
        assert_ne!(t.trace_id(), &one[3..35]);
    }

    proptest::proptest! {
        #[test]
        fn any_header_value_gives_valid_ids(v in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut g = IdGen::new(9);
            let mut t = RequestTrace::default();
            t.assign(&[h("x-request-id", &v), h("traceparent", &v)], &mut g);
            proptest::prop_assert!(t.request_id().iter().all(|&b| is_id_byte(b)));
            proptest::prop_assert!(parse_traceparent(t.traceparent()).is_some());
        }
    }
}
