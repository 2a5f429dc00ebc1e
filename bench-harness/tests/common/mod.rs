//! Shared helpers for ringbench's integration tests: a blocking loopback HTTP/1.1 client that
//! reads responses by their framing (Content-Length or chunked), so tests stay a few lines.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive client connection.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).unwrap();
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read_response(false)
    }

    /// Reads one response; `head_only` for answers to HEAD.
    pub fn read_response(&mut self, head_only: bool) -> Response {
        self.try_read_response(head_only).unwrap()
    }

    pub fn try_read_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only {
            return Ok(resp);
        }
        if let Some(len) = resp.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            self.reader.read_exact(&mut body)?;
            resp.body = body;
        } else if resp.header("transfer-encoding") == Some("chunked") {
            resp.body = self.read_chunked()?;
        }
        Ok(resp)
    }

    fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            self.reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            self.reader.read_exact(&mut chunk)?;
            if n == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }

    /// True when the server closed (EOF or reset) without sending anything more.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// A run config for `url` at `rate` for `secs` (no warmup, one generator thread).
pub fn run_config(url: &str, rate: f64, duration: Duration) -> ringbench::run::RunConfig {
    let target = ringbench::run::Target::parse(url).unwrap();
    let plan =
        ringbench::run::Plan::single(&target, &ringbench::run::SimpleRequest::default()).unwrap();
    ringbench::run::RunConfig::simple(target, plan, rate, duration)
}

/// Asserts the request accounting identity and returns the report.
pub fn accounted(r: ringbench::run::RunReport) -> ringbench::run::RunReport {
    let c = &r.counts;
    assert_eq!(
        c.scheduled,
        c.completed + c.errors + c.timeouts + c.censored,
        "{c:?}"
    );
    r
}
