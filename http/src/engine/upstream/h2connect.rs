//! Opening HTTP/2 connections to upstreams: the transport (TCP, TLS with ALPN `h2`), the
//! handshake, the task that drives each connection (with PINGs that catch a peer gone silent),
//! and taking a stream slot on a pooled or opening connection.

use crate::engine::io::h2io::H2Io;
use crate::engine::io::ops::connect;
use crate::engine::upstream::h2pool::{H2Client, Lease, Opening};
use crate::engine::worker::Worker;
use crate::gateway::{Gateway, UpstreamSet, UpstreamTls};
use crate::tls::TlsConn;
use bytes::Bytes;
use monoio::io::IntoPollIo;
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A slot to `ep`: on a pooled connection, or a new one (within `timeout`).
pub(crate) async fn acquire<G: Gateway>(
    w: &Worker<G>,
    up: &UpstreamSet,
    ep: SocketAddr,
    max: u32,
    timeout: Duration,
) -> io::Result<(Lease, bool)> {
    let key = up.conn_key(ep);
    if let Some(l) = w.h2up.borrow_mut().pick(key, max) {
        return Ok((l, true));
    }
    let start = Instant::now();
    let joined = w.h2up.borrow().opening.get(&key).and_then(|list| {
        list.iter()
            .find(|o| o.promised.get() < max && o.outcome.get().is_none())
            .cloned()
    });
    if let Some(o) = joined {
        o.promised.set(o.promised.get() + 1);
        // The opener's task sets the outcome; other tasks cannot wake this one (no waker is
        // shared), so it looks again every millisecond, a handshake's time at most.
        while o.outcome.get().is_none() && start.elapsed() < timeout {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        o.promised.set(o.promised.get().saturating_sub(1));
        if let Some(l) = w.h2up.borrow_mut().pick(key, max) {
            return Ok((l, true));
        }
    }
    let opening = Rc::new(Opening {
        promised: Cell::new(1),
        outcome: Cell::new(None),
    });
    w.h2up
        .borrow_mut()
        .opening
        .entry(key)
        .or_default()
        .push(opening.clone());
    let opened = open(w, up, ep, timeout.saturating_sub(start.elapsed())).await;
    opening.outcome.set(Some(opened.is_ok()));
    {
        let mut clients = w.h2up.borrow_mut();
        if let Some(list) = clients.opening.get_mut(&key) {
            list.retain(|o| !Rc::ptr_eq(o, &opening));
            if list.is_empty() {
                clients.opening.remove(&key);
            }
        }
    }
    opened.map(|l| (l, false))
}

/// The byte stream of an HTTP/2 connection to `ep`: TCP, and TLS with ALPN `h2` when `tls` is
/// given, within `timeout`.
pub(crate) async fn h2_transport(
    ep: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> io::Result<H2Io> {
    let start = Instant::now();
    let tcp = connect(ep, timeout).await?;
    Ok(match tls {
        None => {
            let poll = tcp.into_poll_io()?;
            H2Io::plain(poll, Vec::new())
        }
        Some(t) => {
            let left = timeout.saturating_sub(start.elapsed());
            let conn = TlsConn::connect(tcp, t.config.clone(), t.server_name.clone(), left).await?;
            if conn.alpn() != Some(b"h2") {
                return Err(io::Error::other("the upstream did not agree to h2 (ALPN)"));
            }
            let (tcp, session, pending) = conn.into_parts();
            H2Io::tls(tcp.into_poll_io()?, session, &pending)
        }
    })
}

/// Opens a connection to `ep` and takes its first stream slot.
async fn open<G: Gateway>(
    w: &Worker<G>,
    up: &UpstreamSet,
    ep: SocketAddr,
    timeout: Duration,
) -> io::Result<Lease> {
    let start = Instant::now();
    let io = h2_transport(ep, up.tls.as_ref(), timeout).await?;
    let s = &w.settings.http2;
    let mut b = h2::client::Builder::new();
    b.initial_window_size(s.stream_window_bytes)
        .initial_connection_window_size(s.connection_window_bytes)
        .max_frame_size(s.max_frame_bytes)
        .max_send_buffer_size(s.max_send_buffer_bytes as usize);
    let left = timeout.saturating_sub(start.elapsed());
    let (send, mut driver) = match monoio::time::timeout(left, b.handshake::<_, Bytes>(io)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(io::Error::other(e)),
        Err(_) => return Err(io::ErrorKind::TimedOut.into()),
    };
    let dead = Rc::new(Cell::new(false));
    let dead2 = dead.clone();
    let pings = w
        .settings
        .h2_ping
        .and_then(|every| driver.ping_pong().map(|pp| (pp, every)));
    monoio::spawn(async move {
        match pings {
            None => {
                let _ = driver.await;
            }
            Some((pp, (interval, timeout))) => {
                drive_with_pings(driver, pp, interval, timeout).await
            }
        }
        dead2.set(true);
    });
    let active = Rc::new(Cell::new(1));
    let idle_since = Rc::new(Cell::new(Instant::now()));
    w.h2up
        .borrow_mut()
        .conns
        .entry(up.conn_key(ep))
        .or_default()
        .push(H2Client {
            send: send.clone(),
            active: active.clone(),
            idle_since: idle_since.clone(),
            dead,
        });
    Ok(Lease {
        send,
        active,
        idle_since,
    })
}

/// Drives a connection and PINGs it every `interval`: a PING without PONG within `timeout`
/// ends it (the driver is dropped, which closes the socket), so the pool stops offering a
/// connection whose peer vanished without a FIN, and its streams fail now rather than at their
/// own timeouts.
async fn drive_with_pings(
    driver: h2::client::Connection<H2Io, Bytes>,
    mut pp: h2::PingPong,
    interval: Duration,
    timeout: Duration,
) {
    let mut driver = std::pin::pin!(driver);
    loop {
        monoio::select! {
            _ = &mut driver => return,
            _ = monoio::time::sleep(interval) => {}
        }
        let pong = monoio::time::timeout(timeout, pp.ping(h2::Ping::opaque()));
        monoio::select! {
            _ = &mut driver => return,
            r = pong => {
                if !matches!(r, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}
