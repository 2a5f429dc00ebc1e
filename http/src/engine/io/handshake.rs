//! The engine's side of TLS: a new connection on a TLS listener is handshaken with the config
//! of the worker's current snapshot (so a reloaded certificate reaches new connections only),
//! and the outcome is counted.

use crate::engine::io::downstream::Downstream;
use crate::engine::io::h2io::H2Io;
use crate::engine::io::stream::ByteStream;
use crate::engine::worker::Worker;
use crate::error::Refusal;
use crate::gateway::Gateway;
use crate::respond::write_refusal;
use crate::tls::stream::FailReason;
use crate::tls::CertIdentity;
use crate::tls::{HandshakeFail, TlsConn};
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;
use std::rc::Rc;

/// What a connection speaks once accepted.
pub(crate) enum Accepted {
    /// HTTP/1.1 (or h2c, found by the request loop) on this stream.
    Http1(Downstream),
    /// HTTP/2 negotiated by ALPN over TLS.
    H2 {
        /// The TLS session in poll-style I/O (boxed: the enum stays small, and so does every
        /// connection's task, which holds it).
        io: Box<H2Io>,
        /// The client certificate's identity.
        identity: Option<Rc<CertIdentity>>,
    },
}

/// Turns an accepted socket into the connection's stream: as it is on a cleartext listener,
/// after a handshake on a TLS one. `None`: the handshake failed (counted) and the connection is
/// done.
pub(crate) async fn handshake<G: Gateway>(
    tcp: TcpStream,
    listener: usize,
    w: &Worker<G>,
) -> Option<Accepted> {
    let config = {
        let snap = w.snapshot.borrow_mut().current();
        snap.listener_tls(listener).cloned()
    };
    let Some(config) = config else {
        return Some(Accepted::Http1(Downstream::Plain(tcp)));
    };
    match TlsConn::accept(tcp, config, w.settings.header_timeout).await {
        Ok(t) => {
            let mut m = w.metrics.borrow_mut();
            if t.is_tls13() {
                m.tls.tls13 += 1;
            } else {
                m.tls.tls12 += 1;
            }
            if t.resumed() {
                m.tls.resumed += 1;
            }
            drop(m);
            if t.alpn() == Some(b"h2") {
                let identity = t.identity().cloned().map(Rc::new);
                let (tcp, session, pending) = t.into_parts();
                let io = tcp.into_poll_io().ok()?;
                return Some(Accepted::H2 {
                    io: Box::new(H2Io::tls(io, session, &pending)),
                    identity,
                });
            }
            Some(Accepted::Http1(Downstream::Tls(Box::new(t))))
        }
        Err(HandshakeFail::PlainHttp(tcp)) => {
            count(w, FailReason::PlainHttp);
            // A client that got the scheme wrong learns why, in words it can read.
            let r = Refusal::new(400, "plain_http_request_to_tls_port").closing();
            let mut buf = Vec::with_capacity(256);
            write_refusal(&mut buf, &r, true, false, &[]);
            let mut plain = Downstream::Plain(tcp);
            let _ = plain.write_all(buf, w.settings.body_io_timeout).await;
            None
        }
        Err(HandshakeFail::Failed(reason)) => {
            count(w, reason);
            None
        }
    }
}

fn count<G: Gateway>(w: &Worker<G>, reason: FailReason) {
    if let Some(i) = FailReason::ALL.iter().position(|r| *r == reason) {
        w.metrics.borrow_mut().tls.failures[i] += 1;
    }
}
