//! A small blocking HTTP/1.1 client for the control plane (JWKS fetches, token introspection).
//!
//! Never used on a worker. Plain `http://` only (https JWKS and introspection URLs are not
//! supported yet, though upstreams can be reached over TLS); every call is bounded
//! by one deadline covering connect, send and the whole response, and responses are capped in
//! size. Responses are parsed with the gateway's own strict codec.

use ringgate_http::codec::{parse_response_head, BodyKind, ChunkedDecoder, ChunkedLimits};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest response body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host[:port]` as written (the Host header).
    pub authority: String,
    /// The path and query.
    pub path: String,
}

impl HttpUrl {
    /// Parses `url`; only `http://` is accepted.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: only http:// URLs are supported here (https is not built for the control-plane client yet)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty()
            || authority
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b == b'@')
        {
            return Err(format!("{url:?}: bad host"));
        }
        Ok(HttpUrl {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    fn addr(&self) -> Result<SocketAddr, String> {
        let hp = if self
            .authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        };
        hp.to_socket_addrs()
            .map_err(|e| format!("{hp}: {e}"))?
            .next()
            .ok_or_else(|| format!("{hp}: no address"))
    }
}

/// Sends one request and returns `(status, body)`, all within `timeout`.
pub fn call(
    url: &HttpUrl,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timed out".to_string())
    };
    let mut s = TcpStream::connect_timeout(&url.addr()?, left()?).map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\nuser-agent: ringgate\r\ncontent-length: {}\r\n",
        url.path,
        url.authority,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        buf.extend_from_slice(&chunk[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let head = parse_response_head(&buf, &mut hs, method == "HEAD", 64 * 1024)
            .map_err(|e| e.to_string())?;
        let done = match head {
            None if n == 0 => return Err("connection closed before the response head".into()),
            None => None,
            Some(h) => {
                let body = &buf[h.head_len..];
                match h.body {
                    BodyKind::Empty => Some((h.status, Vec::new())),
                    BodyKind::Length(len) if body.len() as u64 >= len => {
                        Some((h.status, body[..len as usize].to_vec()))
                    }
                    BodyKind::Length(_) if n == 0 => return Err("response body cut short".into()),
                    BodyKind::Length(_) => None,
                    BodyKind::Chunked => {
                        let mut d = ChunkedDecoder::new(ChunkedLimits::default());
                        let mut out = Vec::new();
                        let p = d
                            .feed_with(body, |data| out.extend_from_slice(data))
                            .map_err(|e| e.to_string())?;
                        if p.done {
                            Some((h.status, out))
                        } else if n == 0 {
                            return Err("chunked body cut short".into());
                        } else {
                            None
                        }
                    }
                    BodyKind::UntilClose if n == 0 => Some((h.status, body.to_vec())),
                    BodyKind::UntilClose => None,
                }
            }
        };
        if let Some(r) = done {
            return Ok(r);
        }
        if buf.len() > MAX_BODY + 64 * 1024 {
            return Err("response too large".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_https_is_refused_clearly() {
        let u = HttpUrl::parse("http://idp.test:8080/.well-known/jwks.json").expect("url");
        assert_eq!(u.authority, "idp.test:8080");
        assert_eq!(u.path, "/.well-known/jwks.json");
        assert_eq!(HttpUrl::parse("http://h").expect("url").path, "/");
        assert!(HttpUrl::parse("https://idp/jwks")
            .unwrap_err()
            .contains("only http://"));
    }

    #[test]
    fn a_real_server_is_read_by_length_and_by_chunks() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            for resp in [
                &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"[..],
                b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ] {
                let (mut s, _) = l.accept().expect("accept");
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b);
                s.write_all(resp).expect("write");
            }
        });
        let u = HttpUrl::parse(&format!("http://{addr}/x")).expect("url");
        let t1 = call(&u, "GET", &[], b"", Duration::from_secs(5)).expect("call");
        assert_eq!(t1, (200, b"hello".to_vec()));
        let t2 = call(
            &u,
            "POST",
            &[("content-type", "text/plain")],
            b"q",
            Duration::from_secs(5),
        )
        .expect("call");
        assert_eq!(t2, (201, b"abc".to_vec()));
        t.join().expect("server");
    }
}
