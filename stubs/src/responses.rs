//! Pre-built responses: every fixed reply the stub can give is rendered once per worker at start,
//! so answering a request is a copy of ready bytes (or a reference-counted write for large
//! bodies), with no formatting or allocation per request.

use std::io::Write;
use std::rc::Rc;

/// The reason phrase for a status (the stub only needs the common ones right).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes a response head (status line, standard headers, `extra` lines, blank line).
pub fn write_head(out: &mut Vec<u8>, status: u16, name: &str, extra: &[&str], close: bool) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nx-upstream: {name}\r\n",
        reason(status)
    );
    for line in extra {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// One fixed response, rendered for keep-alive and for close.
#[derive(Debug, Clone)]
pub struct Canned {
    keep: Rc<Vec<u8>>,
    close: Rc<Vec<u8>>,
    keep_head: usize,
    close_head: usize,
}

impl Canned {
    /// Renders `status` with `content_type` and `body`.
    pub fn new(status: u16, name: &str, content_type: &str, body: &[u8]) -> Self {
        let ct = format!("content-type: {content_type}");
        let cl = format!("content-length: {}", body.len());
        let render = |close| {
            let mut v = Vec::with_capacity(128 + body.len());
            write_head(&mut v, status, name, &[&cl, &ct], close);
            let head = v.len();
            v.extend_from_slice(body);
            (Rc::new(v), head)
        };
        let (keep, keep_head) = render(false);
        let (close, close_head) = render(true);
        Self {
            keep,
            close,
            keep_head,
            close_head,
        }
    }

    /// The bytes to send: the head alone for HEAD requests.
    pub fn bytes(&self, close: bool, head_only: bool) -> &[u8] {
        let (all, head) = if close {
            (&self.close, self.close_head)
        } else {
            (&self.keep, self.keep_head)
        };
        if head_only {
            &all[..head]
        } else {
            &all[..]
        }
    }

    /// The shared buffer and the length to send, for writing large responses without a copy.
    pub fn shared(&self, close: bool, head_only: bool) -> (Rc<Vec<u8>>, usize) {
        let len = self.bytes(close, head_only).len();
        let all = if close { &self.close } else { &self.keep };
        (Rc::clone(all), len)
    }
}

/// All fixed responses of one worker.
#[derive(Debug)]
pub struct Responses {
    /// The default endpoint's 200 with the configured body.
    pub ok: Canned,
    /// One per injected status, in `ErrorInjection::statuses` order.
    pub injected: Vec<Canned>,
    /// `/healthz`.
    pub healthz: Canned,
    /// `/__stall` acknowledgement.
    pub stall_ack: Canned,
    /// Error replies to unparsable requests (400, 431, 501), always with close.
    pub bad: Vec<(u16, Canned)>,
}

impl Responses {
    /// Renders every response for a server called `name` with `body_bytes` of body.
    pub fn new(name: &str, body_bytes: usize, injected: &[(u16, f64)]) -> Self {
        let body: Vec<u8> = (0..body_bytes).map(|i| b'a' + (i % 26) as u8).collect();
        let json = |status| format!("{{\"error\":\"injected\",\"status\":{status}}}");
        Self {
            ok: Canned::new(200, name, "application/octet-stream", &body),
            injected: injected
                .iter()
                .map(|&(s, _)| Canned::new(s, name, "application/json", json(s).as_bytes()))
                .collect(),
            healthz: Canned::new(200, name, "text/plain", b"ok\n"),
            stall_ack: Canned::new(200, name, "text/plain", b"stalling\n"),
            bad: [400u16, 431, 501]
                .iter()
                .map(|&s| (s, Canned::new(s, name, "text/plain", reason(s).as_bytes())))
                .collect(),
        }
    }

    /// The reply to an unparsable request with `status`.
    pub fn bad(&self, status: u16) -> &Canned {
        self.bad
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(&self.bad[0].1, |(_, c)| c)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canned_ok_carries_length_name_and_body() {
        let r = Responses::new("u1", 5, &[(503, 0.1)]);
        let text = String::from_utf8(r.ok.bytes(false, false).to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("x-upstream: u1\r\n"));
        assert!(text.contains("content-length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\nabcde"));
        assert!(!text.contains("connection: close"));
        let close = String::from_utf8(r.ok.bytes(true, true).to_vec()).unwrap();
        assert!(close.contains("connection: close\r\n"));
        assert!(close.ends_with("\r\n\r\n"));
        assert!(r.injected[0]
            .bytes(false, false)
            .starts_with(b"HTTP/1.1 503 "));
    }
}
