//! ringgate's decisions, kept free of I/O so each can be tested alone and shared read-only
//! across cores: today the compiled route table ([`routing`]); auth, rate limits, balancing
//! and breakers join it as they are written.
#![forbid(unsafe_code)]
// Tests may panic on a broken expectation; library code still may not (it is linted in the
// non-test build too).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod routing;
