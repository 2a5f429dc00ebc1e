//! One HTTP/2 request to an upstream endpoint, outside any worker.
//!
//! The active health checks of `protocol = "h2"` upstreams (gRPC services) cannot speak
//! HTTP/1.1 to them: their prober thread runs this on a small runtime of its own, over the same
//! transport the workers use (h2c, or TLS with ALPN `h2` under the upstream's TLS settings). A
//! fresh connection per probe, like the HTTP/1.1 probes: a probe checks that an endpoint can be
//! reached now, not that an old connection still works.

use crate::engine::upstream::h2connect::h2_transport;
use crate::gateway::UpstreamTls;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Most of a probe answer's body kept (a health answer is small; the rest is read and dropped).
const MAX_BODY: usize = 64 * 1024;

/// What a probe sends.
#[derive(Debug, Clone)]
pub struct ProbeRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// The path.
    pub path: &'a str,
    /// Further header fields (lower-case names).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body (empty: none).
    pub body: Bytes,
}

/// What a probe got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAnswer {
    /// The response status.
    pub status: u16,
    /// `grpc-status`, from the response head or its trailers.
    pub grpc_status: Option<u32>,
    /// The body (at most 64 KiB of it).
    pub body: Vec<u8>,
}

/// Sends `req` to `ep` over a new HTTP/2 connection and reads the whole answer, all within
/// `timeout`.
pub async fn probe_h2(
    ep: SocketAddr,
    tls: Option<&UpstreamTls>,
    req: &ProbeRequest<'_>,
    timeout: Duration,
) -> io::Result<ProbeAnswer> {
    match monoio::time::timeout(timeout, exchange(ep, tls, req, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "probe timed out")),
    }
}

async fn exchange(
    ep: SocketAddr,
    tls: Option<&UpstreamTls>,
    req: &ProbeRequest<'_>,
    timeout: Duration,
) -> io::Result<ProbeAnswer> {
    let io = h2_transport(ep, tls, timeout).await?;
    let (client, driver) = h2::client::handshake(io).await.map_err(io::Error::other)?;
    // The driver ends when the last handle and stream are gone (this function's return).
    monoio::spawn(async move {
        let _ = driver.await;
    });
    let mut client = client.ready().await.map_err(io::Error::other)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut b = http::Request::builder()
        .method(req.method)
        .uri(format!("{scheme}://{}{}", req.authority, req.path));
    for (k, v) in req.headers {
        b = b.header(*k, *v);
    }
    let request = b.body(()).map_err(io::Error::other)?;
    let no_body = req.body.is_empty();
    let (resp, mut send) = client
        .send_request(request, no_body)
        .map_err(io::Error::other)?;
    if !no_body {
        // A probe body is a few bytes, well within the initial window.
        send.send_data(req.body.clone(), true)
            .map_err(io::Error::other)?;
    }
    let resp = resp.await.map_err(io::Error::other)?;
    let status = resp.status().as_u16();
    let mut grpc_status = grpc_status_of(resp.headers());
    let mut stream = resp.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.map_err(io::Error::other)?;
        let _ = stream.flow_control().release_capacity(chunk.len());
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    if let Some(trailers) = stream.trailers().await.map_err(io::Error::other)? {
        grpc_status = grpc_status.or_else(|| grpc_status_of(&trailers));
    }
    Ok(ProbeAnswer {
        status,
        grpc_status,
        body,
    })
}

fn grpc_status_of(h: &http::HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}
