//! Server-sent events and long chunked responses leave the gateway as they arrive. The upstream
//! here writes one event, then waits until the client says it has it before writing the next:
//! a gateway that held back any part of a response (for a buffer to fill, a chunk to complete,
//! a timer) would stall this lockstep and fail the test. It runs over plain TCP and over TLS,
//! for a chunked event stream and for one delimited by the connection's close. The observed
//! per-event forwarding times are printed; the figures belong in perf-reports, not here.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::gateway::gateway;
use ringgate_testkit::pki::Pki;
use ringgate_testkit::tlsclient::{Options, TlsClient};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const EVENTS: usize = 20;

/// An upstream that streams `EVENTS` events in lockstep with the client's acknowledgements;
/// each sent event's instant goes to `sent`.
fn lockstep_upstream(
    chunked: bool,
    acks: mpsc::Receiver<usize>,
    sent: mpsc::Sender<Instant>,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0);
            head.extend_from_slice(&b[..n]);
        }
        let framing = if chunked {
            "transfer-encoding: chunked\r\n"
        } else {
            "connection: close\r\n"
        };
        s.write_all(
            format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n{framing}\r\n")
                .as_bytes(),
        )
        .unwrap();
        for i in 0..EVENTS {
            let event = format!("id: {i}\ndata: event {i}\n\n");
            let bytes = if chunked {
                format!("{:x}\r\n{event}\r\n", event.len())
            } else {
                event
            };
            sent.send(Instant::now()).unwrap();
            s.write_all(bytes.as_bytes()).unwrap();
            // The next event only once the client has this one.
            match acks.recv_timeout(Duration::from_secs(10)) {
                Ok(got) => assert_eq!(got, i),
                Err(_) => return,
            }
        }
        if chunked {
            s.write_all(b"0\r\n\r\n").unwrap();
        }
    });
    addr
}

/// Reads from `s` until every event arrived, acknowledging each; returns the arrival instants.
fn follow(s: &mut impl Read, acks: &mpsc::Sender<usize>) -> Vec<Instant> {
    let mut seen = Vec::new();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    let mut next = 0;
    while next < EVENTS {
        let n = s
            .read(&mut b)
            .expect("the stream stalled: an event was held back");
        assert!(n > 0, "closed after {next} events");
        let now = Instant::now();
        seen.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        while next < EVENTS && text.contains(&format!("data: event {next}\n\n")) {
            got.push(now);
            acks.send(next).unwrap();
            next += 1;
        }
    }
    got
}

fn report(what: &str, sent: &mpsc::Receiver<Instant>, got: &[Instant]) {
    let mut us: Vec<u128> = got
        .iter()
        .map(|g| g.duration_since(sent.recv().unwrap()).as_micros())
        .collect();
    us.sort_unstable();
    eprintln!(
        "{what}: per-event send-to-receive through the gateway, us: median {} max {}",
        us[us.len() / 2],
        us[us.len() - 1]
    );
}

fn config(up: SocketAddr, tls: &str) -> String {
    format!(
        "version = \"sse\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n{tls}\n[[upstreams]]\nname = \"up\"\nendpoints = [\"{up}\"]\n[[routes]]\nid = \"events\"\npath = {{ prefix = \"/\" }}\nupstream = \"up\"\n"
    )
}

fn run_plain(chunked: bool) {
    let (ack_tx, ack_rx) = mpsc::channel();
    let (sent_tx, sent_rx) = mpsc::channel();
    let up = lockstep_upstream(chunked, ack_rx, sent_tx);
    let gw = gateway(&config(up, ""));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let got = follow(&mut s, &ack_tx);
    report(&format!("plain, chunked={chunked}"), &sent_rx, &got);
}

#[test]
fn sse_events_stream_one_by_one_chunked() {
    run_plain(true);
}

#[test]
fn sse_events_stream_one_by_one_until_close() {
    run_plain(false);
}

#[test]
fn sse_events_stream_one_by_one_over_tls() {
    let (pki, api) = Pki::with_api();
    let tls = api.listener_tls();
    let (ack_tx, ack_rx) = mpsc::channel();
    let (sent_tx, sent_rx) = mpsc::channel();
    let up = lockstep_upstream(true, ack_rx, sent_tx);
    let gw = gateway(&config(up, &tls));
    let client = TlsClient::new(&pki.server_ca_path(), &Options::default());
    let mut s = client.connect(gw.addr, "api.example").unwrap();
    s.send(b"GET /events HTTP/1.1\r\nHost: api.example\r\n\r\n")
        .unwrap();
    let mut stream = s.into_stream();
    let got = follow(&mut stream, &ack_tx);
    report("tls, chunked", &sent_rx, &got);
}
