//! A small blocking HTTP/1.1 client for the control plane (JWKS fetches, token introspection).
//!
//! Never used on a worker. `http://` and `https://` URLs; https verifies the server's
//! certificate under the URL's host name against the configured CA bundle (`auth.ca`) or the
//! host's trusted roots, over TLS 1.2 or 1.3. Every call is bounded by one deadline covering
//! connect, handshake, send and the whole response, and responses are capped in size. Responses
//! are parsed with the gateway's own strict codec.

use ringgate_http::codec::{parse_response_head, BodyKind, ChunkedDecoder, ChunkedLimits};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest response body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host[:port]` as written (the Host header).
    pub authority: String,
    /// The path and query.
    pub path: String,
    /// `https://`.
    pub https: bool,
}

impl HttpUrl {
    /// Parses `url` (`http://` or `https://`; no user info).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, https) = if let Some(r) = url.strip_prefix("https://") {
            (r, true)
        } else if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else {
            return Err(format!("{url:?}: an http:// or https:// URL is needed"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty()
            || authority
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'@')
            || path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!("{url:?}: bad host or path"));
        }
        let u = HttpUrl {
            authority: authority.to_string(),
            path: path.to_string(),
            https,
        };
        if https {
            ServerName::try_from(u.host().to_string())
                .map_err(|e| format!("{url:?}: {e} (the name TLS verifies)"))?;
        }
        Ok(u)
    }

    /// The host without its port (and without the brackets of an IPv6 literal).
    pub fn host(&self) -> &str {
        let a = self.authority.as_str();
        if let Some(inner) = a.strip_prefix('[') {
            return inner.split(']').next().unwrap_or(inner);
        }
        match a.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => a,
        }
    }

    fn addr(&self) -> Result<SocketAddr, String> {
        let a = self.authority.as_str();
        let has_port = match a.rsplit_once(':') {
            Some((h, p)) => p.parse::<u16>().is_ok() && (!h.starts_with('[') || h.ends_with(']')),
            None => false,
        };
        let hp = if has_port {
            a.to_string()
        } else {
            format!("{a}:{}", if self.https { 443 } else { 80 })
        };
        hp.to_socket_addrs()
            .map_err(|e| format!("{hp}: {e}"))?
            .next()
            .ok_or_else(|| format!("{hp}: no address"))
    }
}

/// Where calls go: a URL and, for https, the TLS client settings to verify it with.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL.
    pub url: HttpUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// A target for `url`; an https URL trusts the CAs in the PEM bundle `ca`, or the host's
    /// roots without one.
    pub fn new(url: &str, ca: Option<&str>) -> Result<Self, String> {
        let url = HttpUrl::parse(url)?;
        let tls = if url.https {
            Some(crate::tls::client_config(ca, b"http/1.1")?)
        } else {
            None
        };
        Ok(Self { url, tls })
    }

    /// A target for `url` verified with the given TLS client settings (needed for an https
    /// URL; ignored for http).
    pub fn with_tls(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, String> {
        let url = HttpUrl::parse(url)?;
        if url.https && tls.is_none() {
            return Err(format!("{}: https needs TLS settings", url.authority));
        }
        let tls = if url.https { tls } else { None };
        Ok(Self { url, tls })
    }
}

/// A connection: cleartext or TLS over TCP.
pub enum Conn {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn sock(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &t.sock,
        }
    }

    /// Arms both socket timeouts with what is left of the deadline.
    pub fn arm(&self, left: Duration) -> Result<(), String> {
        let s = self.sock();
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(left)).map_err(|e| e.to_string())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            // A server that closes without close_notify ends the stream: the body framing
            // (length or chunks) still tells a complete response from a cut one.
            Conn::Tls(t) => match t.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(t) => t.flush(),
        }
    }
}

/// Connects to `target` within `timeout` (TLS: the handshake runs within the first write).
pub fn connect(target: &Target, timeout: Duration) -> Result<Conn, String> {
    let url = &target.url;
    let tcp = TcpStream::connect_timeout(&url.addr()?, timeout).map_err(|e| e.to_string())?;
    Ok(match &target.tls {
        None => Conn::Plain(tcp),
        Some(config) => {
            let name = ServerName::try_from(url.host().to_string()).map_err(|e| e.to_string())?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| format!("tls: {e}"))?;
            Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    })
}

/// Sends one request and returns `(status, body)`, all within `timeout`.
pub fn call(
    target: &Target,
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
    let url = &target.url;
    let mut s = connect(target, left()?)?;
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
    s.arm(left()?)?;
    // With TLS, the handshake runs within the first write (and so within the deadline).
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        s.arm(left()?)?;
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
    fn urls_parse_with_their_scheme_host_and_port() {
        let u = HttpUrl::parse("http://idp.test:8080/.well-known/jwks.json").expect("url");
        assert_eq!(u.authority, "idp.test:8080");
        assert_eq!(u.path, "/.well-known/jwks.json");
        assert_eq!((u.host(), u.https), ("idp.test", false));
        assert_eq!(HttpUrl::parse("http://h").expect("url").path, "/");
        let s = HttpUrl::parse("https://idp.example/jwks").expect("url");
        assert_eq!((s.host(), s.https), ("idp.example", true));
        assert_eq!(
            HttpUrl::parse("https://[::1]:8443/").expect("url").host(),
            "::1"
        );
        for bad in [
            "ftp://idp/jwks",
            "idp/jwks",
            "http://user@idp/",
            "http:///x",
            "http://idp/a b",
            "https://bad_name!/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
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
        let u = Target::new(&format!("http://{addr}/x"), None).expect("url");
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
