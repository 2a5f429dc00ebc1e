//! A raw HTTP/1.1 test client: writes exactly the bytes it is given, reads and parses responses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Header or trailer fields, in order.
pub type Fields = Vec<(String, String)>;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked when chunked).
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection with a read buffer (keep-alive and pipelining tests), over a socket or
/// any other byte stream (a TLS session: see `crate::tlsclient`).
pub struct Client<S: Read + Write = TcpStream> {
    /// The stream.
    pub stream: S,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` with a 10 s read timeout.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to gateway");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }
}

impl<S: Read + Write> Client<S> {
    /// A client over `stream` (already connected).
    pub fn over(stream: S) -> Self {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write to gateway");
    }

    /// Reads one response to a request with method `method` (HEAD responses have no body).
    pub fn response_to(&mut self, method: &str) -> Response {
        self.try_response_to(method).expect("a complete response")
    }

    /// Sends `GET path` (Host `t`) with extra header lines and reads its response.
    pub fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes());
        self.response()
    }

    /// Reads one response to a GET.
    pub fn response(&mut self) -> Response {
        self.response_to("GET")
    }

    /// Reads one response, or `None` if the connection closed first.
    pub fn try_response_to(&mut self, method: &str) -> Option<Response> {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let status = r.code.unwrap_or(0);
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..n);
                let get = |k: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.clone())
                };
                let no_body = method == "HEAD"
                    || status == 204
                    || status == 304
                    || (100..200).contains(&status);
                let (body, trailers) = if no_body {
                    (Vec::new(), Vec::new())
                } else if get("transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
                {
                    self.read_chunked()?
                } else if let Some(cl) = get("content-length") {
                    let n: usize = cl.trim().parse().expect("numeric content-length");
                    self.fill(n)?;
                    (self.buf.drain(..n).collect(), Vec::new())
                } else {
                    self.read_to_end();
                    (std::mem::take(&mut self.buf), Vec::new())
                };
                return Some(Response {
                    status,
                    headers,
                    body,
                    trailers,
                });
            }
            if !self.read_more() {
                return None;
            }
        }
    }

    /// True when the server closed the connection (EOF or reset) within the read timeout.
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }

    fn read_more(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    fn fill(&mut self, n: usize) -> Option<()> {
        while self.buf.len() < n {
            if !self.read_more() {
                return None;
            }
        }
        Some(())
    }

    fn read_to_end(&mut self) {
        while self.read_more() {}
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return Some(l);
            }
            if !self.read_more() {
                return None;
            }
        }
    }

    fn read_chunked(&mut self) -> Option<(Vec<u8>, Fields)> {
        let mut body = Vec::new();
        loop {
            let size_line = self.line()?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).expect("hex chunk size");
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let l = self.line()?;
                    if l.is_empty() {
                        return Some((body, trailers));
                    }
                    let (k, v) = l.split_once(':').expect("trailer field");
                    trailers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            self.fill(size + 2)?;
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

/// Sends `raw` on a new connection and reads one response.
pub fn send(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send(raw);
    c.response()
}

/// `GET path` with `Host: host` on a new connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
}

/// The value of the first `/metrics` sample line starting with `name` (labels included) on the
/// admin listener `admin`; NaN when there is none.
pub fn metric(admin: SocketAddr, name: &str) -> f64 {
    get(admin, "admin", "/metrics")
        .text()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// One `GET {path}` per path, each on its own connection and thread, sent at once (requests a
/// test then keeps in flight); each thread ends with the response, `None` when there was none.
pub fn gets_in_flight(
    addr: SocketAddr,
    paths: Vec<String>,
) -> Vec<std::thread::JoinHandle<Option<Response>>> {
    paths
        .into_iter()
        .map(|path| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
                c.try_response_to("GET")
            })
        })
        .collect()
}

/// Waits for every request of [`gets_in_flight`] and returns the responses; panics when one got
/// none.
pub fn answers(handles: Vec<std::thread::JoinHandle<Option<Response>>>) -> Vec<Response> {
    handles
        .into_iter()
        .map(|t| {
            t.join()
                .expect("client thread")
                .expect("an in-flight request is answered")
        })
        .collect()
}
