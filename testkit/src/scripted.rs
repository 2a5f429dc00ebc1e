//! Scripted upstreams on plain threads: each accepted connection runs a test-supplied function.
//!
//! For what the stub upstream will not do on purpose: stall, close a kept-alive connection,
//! answer with exact bytes, record exactly what arrived, stream a body of any size.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running scripted upstream; stops accepting on drop.
pub struct Scripted {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Scripted {
    /// Starts a server calling `f(stream, connection_index)` on a thread per connection.
    pub fn spawn<F>(f: F) -> Self
    where
        F: Fn(TcpStream, usize) + Send + Sync + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind scripted upstream");
        let addr = l.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let f = Arc::new(f);
        let (acc, fin, st) = (accepted.clone(), finished.clone(), stop.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = s else { continue };
                let i = acc.fetch_add(1, Ordering::SeqCst);
                let f = f.clone();
                let fin = fin.clone();
                std::thread::spawn(move || {
                    // `f` owns the stream: when it returns, the socket is closed.
                    f(s, i);
                    fin.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Scripted {
            addr,
            accepted,
            finished,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose script returned (their socket is closed) so far.
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A request as the upstream received it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The head, as text.
    pub head: String,
    /// The body bytes exactly as they arrived (still chunked when chunked).
    pub raw_body: Vec<u8>,
}

impl Received {
    /// The first header named `name` (case-insensitive), from the head text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The request line.
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
}

/// Reads one request (head, then the body by content-length or chunked framing, raw). `None` when
/// the connection closed before a whole head.
pub fn read_request(s: &mut TcpStream, carry: &mut Vec<u8>) -> Option<Received> {
    let head_end = loop {
        if let Some(p) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if !read_some(s, carry) {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&carry[..head_end]).into_owned();
    carry.drain(..head_end);
    let mut r = Received {
        head,
        raw_body: Vec::new(),
    };
    if let Some(cl) = r.header("content-length") {
        let n: usize = cl.parse().ok()?;
        while carry.len() < n {
            if !read_some(s, carry) {
                return None;
            }
        }
        r.raw_body = carry.drain(..n).collect();
    } else if r.header("transfer-encoding").is_some() {
        // Raw chunked body: up to and including the CRLF that ends the trailer section.
        loop {
            if let Some(end) = chunked_end(carry) {
                r.raw_body = carry.drain(..end).collect();
                break;
            }
            if !read_some(s, carry) {
                return None;
            }
        }
    }
    Some(r)
}

/// Where a complete chunked body ends in `b`, if it does.
fn chunked_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let le = b[i..].windows(2).position(|w| w == b"\r\n")? + i;
        let size_txt = std::str::from_utf8(&b[i..le]).ok()?;
        let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        i = le + 2;
        if size == 0 {
            // trailers then an empty line
            loop {
                let e = b[i..].windows(2).position(|w| w == b"\r\n")? + i;
                let empty = e == i;
                i = e + 2;
                if empty {
                    return Some(i);
                }
            }
        }
        if b.len() < i + size + 2 {
            return None;
        }
        i += size + 2;
    }
}

fn read_some(s: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 65536];
    match s.read(&mut tmp) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            into.extend_from_slice(&tmp[..n]);
            true
        }
    }
}

/// A recording upstream: answers every request with `200` and body `ok`, keeps the connection,
/// and records each request.
pub fn recorder() -> (Scripted, Arc<Mutex<Vec<Received>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let s = Scripted::spawn(move |mut s, _| {
        let mut carry = Vec::new();
        while let Some(r) = read_request(&mut s, &mut carry) {
            l2.lock().expect("log").push(r);
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    (s, log)
}

/// An upstream answering each request with exactly `response`, keeping the connection open.
pub fn fixed(response: &'static [u8]) -> Scripted {
    Scripted::spawn(move |mut s, _| {
        let mut carry = Vec::new();
        while read_request(&mut s, &mut carry).is_some() {
            if s.write_all(response).is_err() {
                return;
            }
        }
    })
}

/// An upstream that reads a request and then says nothing for `stall`.
pub fn stalling(stall: Duration) -> Scripted {
    Scripted::spawn(move |mut s, _| {
        let mut carry = Vec::new();
        if read_request(&mut s, &mut carry).is_some() {
            std::thread::sleep(stall);
        }
    })
}

/// An upstream that answers one request per connection with a keep-alive response, then closes
/// the connection silently (the pooled connection goes stale).
pub fn one_shot() -> Scripted {
    Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        if read_request(&mut s, &mut carry).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    })
}

/// An upstream whose first connection answers one request, then reads the next one and closes
/// without answering (the failure a pooled connection shows when the upstream closes it at the
/// moment it is reused); every later connection answers normally.
pub fn drops_second_request() -> Scripted {
    Scripted::spawn(|mut s, i| {
        let mut carry = Vec::new();
        let mut served = 0;
        while read_request(&mut s, &mut carry).is_some() {
            if i == 0 && served == 1 {
                return;
            }
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
            served += 1;
        }
    })
}

/// A bulk upstream: `GET /download?bytes=N` streams N bytes of body by content-length from a
/// reused buffer; any request with a body gets `200` with the byte count it received as body.
pub fn bulk() -> Scripted {
    Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        loop {
            let head_end = loop {
                if let Some(p) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                if !read_some(&mut s, &mut carry) {
                    return;
                }
            };
            let head = String::from_utf8_lossy(&carry[..head_end]).into_owned();
            carry.drain(..head_end);
            let line = head.lines().next().unwrap_or("").to_string();
            let cl: u64 = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                })
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let chunked = head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            // Discard the body as it arrives, counting its payload.
            let got = if chunked {
                match count_chunked(&mut s, &mut carry) {
                    Some(n) => n,
                    None => return,
                }
            } else {
                let mut got = carry.len() as u64;
                carry.clear();
                let mut tmp = vec![0u8; 65536];
                while got < cl {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n as u64,
                    }
                }
                got
            };
            if let Some(n) = line
                .split("bytes=")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
            {
                let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
                let block = vec![b'x'; 65536];
                let mut left = n;
                while left > 0 {
                    let k = left.min(block.len() as u64) as usize;
                    if s.write_all(&block[..k]).is_err() {
                        return;
                    }
                    left -= k as u64;
                }
            } else {
                let body = got.to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    })
}

/// Where the first line in `carry` ends (its CRLF), reading more from `s` until one is whole;
/// `None` when the stream ends first.
fn crlf_at(s: &mut TcpStream, carry: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(p) = carry.windows(2).position(|w| w == b"\r\n") {
            return Some(p);
        }
        if !read_some(s, carry) {
            return None;
        }
    }
}

/// Reads a chunked body from `carry` + `s` without keeping it, returning its payload size. Leaves
/// any bytes after the body in `carry`.
fn count_chunked(s: &mut TcpStream, carry: &mut Vec<u8>) -> Option<u64> {
    let mut total = 0u64;
    loop {
        let line_end = crlf_at(s, carry)?;
        let size_txt = String::from_utf8_lossy(&carry[..line_end]).into_owned();
        carry.drain(..line_end + 2);
        let size = u64::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let e = crlf_at(s, carry)?;
                carry.drain(..e + 2);
                if e == 0 {
                    return Some(total);
                }
            }
        }
        let mut left = size + 2;
        while left > 0 {
            if carry.is_empty() && !read_some(s, carry) {
                return None;
            }
            let k = (carry.len() as u64).min(left) as usize;
            carry.drain(..k);
            left -= k as u64;
        }
        total += size;
    }
}
