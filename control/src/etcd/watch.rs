//! One etcd watch over the HTTP/JSON gateway: a `POST /v3/watch` whose response never ends, a
//! chunked stream of JSON objects (`{"result": {...}}`), one per change batch.
//!
//! The stream is read with a short socket timeout so that the thread holding it checks its stop
//! flag at least every [`POLL`] and can give up a watch that has been silent for too long (a
//! member that vanished without closing the connection). Messages are capped in size.

use super::client::{int, kv, EtcdError, Kv};
use crate::httpc::{self, Conn, Target};
use ringgate_http::codec::{parse_response_head, BodyKind, ChunkedDecoder, ChunkedLimits};
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a blocked read wakes up to look at the stop flag.
pub const POLL: Duration = Duration::from_millis(100);
/// The largest watch message (or run of bytes without a complete message) accepted.
pub const MAX_MESSAGE: usize = 8 << 20;

/// One change in a watch message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or changed.
    Put(Kv),
    /// A key was deleted (its `value` is empty).
    Delete(Kv),
}

/// One message of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMsg {
    /// The watch is set up, as of `revision`.
    Created {
        /// The cluster's revision.
        revision: i64,
    },
    /// Changes (possibly none: a progress notice).
    Events {
        /// The cluster's revision after them.
        revision: i64,
        /// The changes, in order.
        events: Vec<WatchEvent>,
    },
    /// The watch was cancelled because its start revision was compacted away: read the keys
    /// again and watch from there.
    Compacted {
        /// The oldest revision still kept.
        compact_revision: i64,
    },
    /// The watch was cancelled for another reason.
    Canceled {
        /// Why, as etcd says.
        reason: String,
    },
}

/// An open watch stream.
pub struct WatchStream {
    conn: Conn,
    decoder: ChunkedDecoder,
    /// Decoded payload bytes not yet parsed into a message.
    payload: Vec<u8>,
    /// Raw bytes received after the response head and not yet decoded.
    raw: Vec<u8>,
}

impl WatchStream {
    /// Sends the watch request to `member` and reads the response head (within `timeout`).
    pub(crate) fn open(
        member: &Target,
        token: Option<&str>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Self, EtcdError> {
        let who = member.url.authority.as_str();
        let unreachable = |e: String| EtcdError::Unreachable(format!("{who}: {e}"));
        let deadline = Instant::now() + timeout;
        let mut conn = httpc::connect(member, timeout).map_err(unreachable)?;
        let mut req = format!(
            "POST /v3/watch HTTP/1.1\r\nhost: {who}\r\nuser-agent: ringgate\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("authorization: {t}\r\n"));
        }
        req.push_str("\r\n");
        conn.arm(timeout).map_err(unreachable)?;
        conn.write_all(req.as_bytes())
            .and_then(|()| conn.write_all(body))
            .and_then(|()| conn.flush())
            .map_err(|e| unreachable(e.to_string()))?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| unreachable("timed out waiting for the watch to start".into()))?;
            conn.arm(left).map_err(unreachable)?;
            let n = conn
                .read(&mut chunk)
                .map_err(|e| unreachable(e.to_string()))?;
            if n == 0 {
                return Err(unreachable("closed before the response head".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let head = parse_response_head(&buf, &mut hs, false, 64 * 1024)
                .map_err(|e| EtcdError::Protocol(e.to_string()))?;
            let Some(h) = head else { continue };
            if h.status != 200 {
                // An error answer is short: what arrived with the head says why (enough).
                let tail = &buf[h.head_len..];
                let text = String::from_utf8_lossy(tail);
                let json = text.find('{').map_or("", |i| &text[i..]);
                let json = json.rfind('}').map_or("", |j| &json[..=j]);
                let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
                return Err(EtcdError::Refused {
                    code: v["code"].as_i64().unwrap_or(-1),
                    message: v["message"]
                        .as_str()
                        .map_or_else(|| format!("HTTP {}", h.status), str::to_string),
                });
            }
            if h.body != BodyKind::Chunked {
                return Err(EtcdError::Protocol(
                    "a watch answer must be a chunked stream".into(),
                ));
            }
            return Ok(Self {
                raw: buf[h.head_len..].to_vec(),
                conn,
                decoder: ChunkedDecoder::new(ChunkedLimits::default()),
                payload: Vec::new(),
            });
        }
    }

    /// The next message; `Ok(None)` when `stop` is set or no message came for `idle`. An error
    /// when the stream ends or breaks (the member went away).
    pub fn next(
        &mut self,
        stop: &AtomicBool,
        idle: Duration,
    ) -> Result<Option<WatchMsg>, EtcdError> {
        let since = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if !self.raw.is_empty() {
                let raw = std::mem::take(&mut self.raw);
                let payload = &mut self.payload;
                let p = self
                    .decoder
                    .feed_with(&raw, |d| payload.extend_from_slice(d))
                    .map_err(|e| EtcdError::Protocol(e.to_string()))?;
                if p.done {
                    return Err(EtcdError::Unreachable("the watch stream ended".into()));
                }
            }
            if let Some(msg) = self.parse_one()? {
                return Ok(Some(msg));
            }
            if self.payload.len() > MAX_MESSAGE {
                return Err(EtcdError::Protocol("watch message too large".into()));
            }
            if stop.load(Ordering::Relaxed) || since.elapsed() >= idle {
                return Ok(None);
            }
            self.conn
                .arm(POLL)
                .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
            match self.conn.read(&mut chunk) {
                Ok(0) => return Err(EtcdError::Unreachable("the watch stream closed".into())),
                Ok(n) => self.raw.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(EtcdError::Unreachable(format!("watch stream: {e}"))),
            }
        }
    }

    /// Takes the first complete JSON message off the payload, if there is one.
    fn parse_one(&mut self) -> Result<Option<WatchMsg>, EtcdError> {
        let mut it = serde_json::Deserializer::from_slice(&self.payload).into_iter::<Value>();
        let v = match it.next() {
            None => return Ok(None),
            Some(Err(e)) if e.is_eof() => return Ok(None),
            Some(Err(e)) => return Err(EtcdError::Protocol(format!("watch message: {e}"))),
            Some(Ok(v)) => v,
        };
        let used = it.byte_offset();
        self.payload.drain(..used);
        message(&v).map(Some)
    }
}

/// Reads one watch message.
fn message(v: &Value) -> Result<WatchMsg, EtcdError> {
    if let Some(e) = v.get("error") {
        return Err(EtcdError::Refused {
            code: e["grpc_code"].as_i64().or(e["code"].as_i64()).unwrap_or(-1),
            message: e["message"].as_str().unwrap_or("watch error").to_string(),
        });
    }
    let r = &v["result"];
    if r.is_null() {
        return Err(EtcdError::Protocol("a watch message without result".into()));
    }
    let revision = int(&r["header"]["revision"]);
    let compact_revision = int(&r["compact_revision"]);
    if r["canceled"].as_bool() == Some(true) {
        let reason = r["cancel_reason"].as_str().unwrap_or("cancelled");
        if reason.contains("Unauthenticated") {
            // An expired token (or one from before an etcd restart): authenticate again.
            return Err(EtcdError::Refused {
                code: 16,
                message: reason.to_string(),
            });
        }
        return Ok(if compact_revision > 0 {
            WatchMsg::Compacted { compact_revision }
        } else {
            WatchMsg::Canceled {
                reason: r["cancel_reason"]
                    .as_str()
                    .unwrap_or("cancelled")
                    .to_string(),
            }
        });
    }
    if r["created"].as_bool() == Some(true) {
        return Ok(WatchMsg::Created { revision });
    }
    let mut events = Vec::new();
    for e in r["events"].as_array().map_or(&[][..], Vec::as_slice) {
        let kv = kv(&e["kv"])?;
        events.push(match e["type"].as_str() {
            Some("DELETE") => WatchEvent::Delete(kv),
            _ => WatchEvent::Put(kv),
        });
    }
    Ok(WatchMsg::Events { revision, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_etcd_3_4_writes_them() {
        let put: Value = serde_json::from_str(r#"{"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"L2EveQ==","create_revision":"3","mod_revision":"3","version":"1","value":"MS4yLjMuNTo4MA=="}}]}}"#).expect("json");
        let WatchMsg::Events { revision, events } = message(&put).expect("msg") else {
            panic!("events")
        };
        assert_eq!(revision, 3);
        assert_eq!(
            events,
            vec![WatchEvent::Put(Kv {
                key: b"/a/y".to_vec(),
                value: b"1.2.3.5:80".to_vec(),
                mod_revision: 3
            })]
        );
        let del: Value = serde_json::from_str(r#"{"result":{"header":{"revision":"4"},"events":[{"type":"DELETE","kv":{"key":"L2EveA==","mod_revision":"4"}}]}}"#).expect("json");
        assert!(matches!(
            message(&del),
            Ok(WatchMsg::Events { revision: 4, ref events }) if matches!(events[0], WatchEvent::Delete(_))
        ));
        let compacted: Value = serde_json::from_str(
            r#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"4"}}"#,
        )
        .expect("json");
        assert_eq!(
            message(&compacted).expect("msg"),
            WatchMsg::Compacted {
                compact_revision: 4
            }
        );
        let created: Value =
            serde_json::from_str(r#"{"result":{"header":{"revision":"2"},"created":true}}"#)
                .expect("json");
        assert_eq!(
            message(&created).expect("msg"),
            WatchMsg::Created { revision: 2 }
        );
    }

    #[test]
    fn a_message_split_across_chunks_and_reads_is_read_whole() {
        use std::sync::mpsc;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let (go, wait) = mpsc::channel::<()>();
        let created = br#"{"result":{"header":{"revision":"7"},"created":true}}"#.to_vec();
        let event = br#"{"result":{"header":{"revision":"8"},"events":[{"kv":{"key":"L2EveA==","mod_revision":"8","value":"MS4yLjMuNDo4MA=="}}]}}"#.to_vec();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut b = [0u8; 4096];
            let _ = s.read(&mut b);
            let chunk = |data: &[u8]| {
                let mut c = format!("{:x}\r\n", data.len()).into_bytes();
                c.extend_from_slice(data);
                c.extend_from_slice(b"\r\n");
                c
            };
            let (first, second) = event.split_at(40);
            let mut part1 = created.clone();
            part1.push(b'\n');
            part1.extend_from_slice(first);
            s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .expect("head");
            s.write_all(&chunk(&part1)).expect("part 1");
            // The rest only when the test has seen that half a message is not a message.
            let _ = wait.recv();
            let (a, b) = second.split_at(10);
            s.write_all(&chunk(a)).expect("part 2");
            s.write_all(&chunk(b)).expect("part 3");
            s.write_all(&chunk(b"\n")).expect("newline");
            let _ = wait.recv();
            s.write_all(b"0\r\n\r\n").expect("end");
        });
        let target = Target::new(&format!("http://{addr}"), None).expect("target");
        let mut w = WatchStream::open(&target, None, b"{}", Duration::from_secs(5)).expect("open");
        let stop = AtomicBool::new(false);
        let long = Duration::from_secs(5);
        assert_eq!(
            w.next(&stop, long).expect("created"),
            Some(WatchMsg::Created { revision: 7 })
        );
        // Half of the event arrived: no message yet (an idle return, not an error).
        assert_eq!(
            w.next(&stop, Duration::from_millis(150)).expect("idle"),
            None
        );
        go.send(()).expect("go");
        let Some(WatchMsg::Events { revision, events }) = w.next(&stop, long).expect("events")
        else {
            panic!("events expected")
        };
        assert_eq!((revision, events.len()), (8, 1));
        go.send(()).expect("go");
        assert!(matches!(
            w.next(&stop, long),
            Err(EtcdError::Unreachable(_))
        ));
        server.join().expect("server");
    }
}
