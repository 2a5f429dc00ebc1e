//! Dev-only helpers for ringgate's integration tests, in one place so that each test reads as a
//! few lines of intent:
//! - [`gateway`]: start a gateway in-process on an ephemeral port from config text, or the real
//!   `ringgate` binary as a child process (for RSS and signal tests);
//! - [`config`]: config text from parts (one listener, one upstream, routes, rate limits);
//! - [`curl`]: curl as a client (HTTP/2, TLS);
//! - [`client`]: a raw HTTP/1.1 client over `std::net::TcpStream` that sends exactly the bytes a
//!   test writes (smuggling tests need byte control no HTTP library gives) and parses responses;
//! - [`scripted`]: hostile or scripted upstreams on plain threads (stall, close after each
//!   response, record raw bytes, stream large bodies);
//! - [`stub`]: the stub upstream (`ringgate-stubs`) with test-friendly defaults;
//! - [`pki`] and [`tlsclient`]: throwaway CAs and certificates, and a rustls client that picks
//!   SNI, presents client certificates and resumes sessions; [`tlsupstream`]: an HTTPS upstream;
//! - [`dns`]: a small authoritative DNS server whose records a test changes while it runs;
//! - [`etcd`]: a throwaway etcd member on free ports (killed, restarted, compacted by tests);
//! - [`run`]: running a command the test needs, failing with its stderr;
//! - [`wait`]: waiting on a condition with a deadline instead of a fixed sleep.

pub mod client;
pub mod config;
pub mod controlled;
pub mod curl;
pub mod dns;
pub mod etcd;
pub mod files;
pub mod gateway;
pub mod origin;
pub mod pki;
pub mod redis;
pub mod run;
pub mod scripted;
pub mod stub;
pub mod tlsclient;
pub mod tlsupstream;
pub mod wait;
