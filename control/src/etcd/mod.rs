//! etcd v3 for the control plane: a small blocking client of etcd's HTTP/JSON gateway
//! ([`client`], [`watch`]) and the config source that follows one key ([`configwatch`]).
//!
//! Why not a gRPC client: the official Rust clients bring tonic, prost (and `protoc` to build
//! them) and a tokio runtime, all to call four endpoints. etcd serves the same API as JSON over
//! HTTP (`/v3/kv/range`, `/v3/watch`, `/v3/auth/authenticate`, keys and values in base64), which
//! the control plane's own HTTP/1.1 pieces ([`crate::httpc`], the gateway's strict response
//! codec) speak already. Everything here runs on control threads, never on a worker, and every
//! call is bounded: a deadline per request, a read timeout that lets a watch check its stop flag,
//! caps on response and message sizes.

pub mod client;
pub mod configwatch;
pub mod watch;

pub use client::{Client, EtcdError, Kv, Range};
pub use watch::{WatchEvent, WatchMsg, WatchStream};

/// The end of the key range holding every key that starts with `prefix` (etcd's `range_end`):
/// `prefix` with its last byte below 0xff incremented and what follows dropped; `"\0"` (every
/// key) when there is no such byte.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/svc/a/"), b"/svc/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
