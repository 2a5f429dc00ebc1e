//! An HTTP/2 connection: the `h2` server state machine on the connection's task, one task per
//! stream running the HTTP/1.1 request loop over an [`H2Stream`].
//!
//! Polling `accept` drives the connection's I/O for every stream, so the connection task keeps
//! polling it until the connection ends. The stream limits, windows, frame size and send
//! buffer come from the profile's `[http2]`; a client resetting streams faster than it lets
//! them be accepted (rapid reset) gets `ENHANCE_YOUR_CALM`. The worker's drain, and a
//! connection idle for the keep-alive time, end it with a graceful GOAWAY: streams in flight
//! finish, new ones are refused.

use crate::engine::h1::serve;
use crate::engine::h2::stream::H2Stream;
use crate::engine::io::downstream::Downstream;
use crate::engine::io::h2io::H2Io;
use crate::engine::worker::Worker;
use crate::gateway::Gateway;
use crate::tls::CertIdentity;
use bytes::Bytes;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

/// Serves an HTTP/2 connection on `io` until it ends.
pub(crate) async fn serve<G: Gateway>(
    io: H2Io,
    peer: SocketAddr,
    w: Rc<Worker<G>>,
    proto: &'static str,
    identity: Option<Rc<CertIdentity>>,
    listener: usize,
) {
    let s = &w.settings.http2;
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(s.max_concurrent_streams)
        .initial_window_size(s.stream_window_bytes)
        .initial_connection_window_size(s.connection_window_bytes)
        .max_frame_size(s.max_frame_bytes)
        .max_header_list_size(u32::try_from(w.settings.limits.max_head_bytes).unwrap_or(u32::MAX))
        .max_send_buffer_size(s.max_send_buffer_bytes as usize)
        .max_pending_accept_reset_streams(s.max_pending_reset_streams as usize)
        .max_local_error_reset_streams(Some(1024))
        .enable_connect_protocol();
    let handshake = b.handshake::<_, Bytes>(io);
    let mut h2 = match monoio::time::timeout(w.settings.header_timeout, handshake).await {
        Ok(Ok(c)) => c,
        _ => return,
    };
    w.metrics.borrow_mut().h2_connections += 1;
    let active = Rc::new(Cell::new(0usize));
    let mut closing = false;
    loop {
        let idle = active.get() == 0 && !closing;
        let stop = monoio::select! {
            next = h2.accept() => match next {
                Some(Ok((req, respond))) => {
                    active.set(active.get() + 1);
                    w.metrics.borrow_mut().h2_streams += 1;
                    let w2 = w.clone();
                    let active2 = active.clone();
                    let identity = identity.clone();
                    monoio::spawn(async move {
                        serve_stream(req, respond, (peer, listener), &w2, proto, identity).await;
                        active2.set(active2.get() - 1);
                    });
                    false
                }
                // A protocol error (h2 sent GOAWAY) or the end of the connection.
                Some(Err(_)) | None => true,
            },
            _ = w.drain.wait(), if !closing => {
                h2.graceful_shutdown();
                closing = true;
                false
            },
            _ = monoio::time::sleep(w.settings.idle_timeout), if idle => {
                h2.graceful_shutdown();
                closing = true;
                false
            },
        };
        if stop {
            break;
        }
    }
}

/// Runs one stream through the request loop.
async fn serve_stream<G: Gateway>(
    req: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    (peer, listener): (SocketAddr, usize),
    w: &Rc<Worker<G>>,
    proto: &'static str,
    identity: Option<Rc<CertIdentity>>,
) {
    match H2Stream::new(req, respond, proto, identity) {
        Ok(s) => {
            // A stream never switches protocols: the result is always `None`.
            let _ = serve::serve(Downstream::H2(Box::new(s)), peer, listener, w).await;
        }
        Err((mut respond, status, code)) => {
            crate::engine::h2::stream::refuse(&mut respond, status, code)
        }
    }
}
