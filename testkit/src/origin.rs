//! A programmable origin for cache tests: each request is answered by the test's function (status,
//! header fields, body, an optional delay), given the request and how many requests for its target
//! came before it; the origin counts requests per target and keeps every request it received.

use crate::scripted::{read_request, Received, Scripted};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One answer.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Header fields (a `content-length` is added unless `chunked`).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Sent chunked (`transfer-encoding: chunked`, one chunk per 1,000 bytes).
    pub chunked: bool,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// `200` with `body` and the given header fields.
    pub fn ok(body: &str, headers: &[(&str, &str)]) -> Self {
        Self::status(200, body, headers)
    }

    /// `status` with `body` and the given header fields.
    pub fn status(status: u16, body: &str, headers: &[(&str, &str)]) -> Self {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            ..Reply::default()
        }
    }
}

type Answer = dyn Fn(&Received, usize) -> Reply + Send + Sync;

/// A running origin; stops accepting on drop.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    log: Arc<Mutex<Vec<Received>>>,
    _server: Scripted,
}

impl Origin {
    /// Starts an origin answering with `answer(request, earlier requests for its target)`.
    pub fn start(answer: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> Self {
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let (c, l) = (counts.clone(), log.clone());
        let server = Scripted::spawn(move |mut s, _| {
            let mut carry = Vec::new();
            while let Some(r) = read_request(&mut s, &mut carry) {
                let target = r.request_line().split(' ').nth(1).unwrap_or("").to_string();
                let n = {
                    let mut m = c.lock().unwrap_or_else(|p| p.into_inner());
                    let e = m.entry(target).or_insert(0);
                    *e += 1;
                    *e - 1
                };
                let reply = answer(&r, n);
                l.lock().unwrap_or_else(|p| p.into_inner()).push(r.clone());
                if !reply.delay.is_zero() {
                    std::thread::sleep(reply.delay);
                }
                let head_only = r.request_line().starts_with("HEAD ");
                if s.write_all(&render(&reply, head_only)).is_err() {
                    return;
                }
            }
        });
        Origin {
            addr: server.addr,
            counts,
            log,
            _server: server,
        }
    }

    /// Requests received for `target` (path and query as sent).
    pub fn count(&self, target: &str) -> usize {
        let m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        m.get(target).copied().unwrap_or(0)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn render(r: &Reply, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        r.status,
        if r.status < 400 { "OK" } else { "Error" }
    )
    .into_bytes();
    for (n, v) in &r.headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    let bodiless = r.status == 304 || r.status == 204;
    if r.chunked && !bodiless {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        if !head_only {
            for piece in r.body.chunks(1000) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    } else {
        if !bodiless {
            out.extend_from_slice(format!("content-length: {}\r\n", r.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only && !bodiless {
            out.extend_from_slice(&r.body);
        }
    }
    out
}
