//! A drain ends WebSocket tunnels with a close frame instead of a cut (issue 14, item 8): shortly
//! before the drain's deadline the client gets a close frame with status 1001 (going away), the
//! upstream gets one too (masked, as a client sends it), and the tunnel ends before the deadline
//! so nothing is counted as aborted.

#![allow(clippy::unwrap_used)]
#![allow(clippy::result_large_err)]

mod common;

use common::Closes;
use ringgate::server::start;
use ringgate_testkit::gateway::test_profile;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// An echoing WebSocket server that records the close frames it receives.
fn ws_server() -> (SocketAddr, Closes) {
    let closes: Closes = Arc::default();
    let c2 = closes.clone();
    let addr = common::listen(move |s| {
        if let Ok(mut ws) = tungstenite::accept(s) {
            common::echo(&mut ws, Some(&c2));
        }
    });
    (addr, closes)
}

#[test]
fn a_drain_sends_going_away_both_ways_before_its_deadline() {
    let (up, closes) = ws_server();
    let text = format!(
        "version = \"ws-drain\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"ws\"\nendpoints = [\"{up}\"]\n[[routes]]\nid = \"ws\"\npath = {{ prefix = \"/\" }}\nupstream = \"ws\"\n"
    );
    let mut profile = test_profile();
    profile.timeouts.drain = Duration::from_secs(3);
    let gw = start(ringgate::snapshot_from_text(&text).unwrap(), &profile).unwrap();
    let s = TcpStream::connect(gw.addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut ws, _) = tungstenite::client("ws://api.example/chat", s).unwrap();
    ws.send(Message::text("before the drain")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("before the drain"));
    let stopping = std::thread::spawn(move || gw.stop());
    let code = loop {
        match ws.read() {
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(e) => panic!("the tunnel ended without a close frame: {e}"),
        }
    };
    assert_eq!(code, Some(1001), "going away");
    // Our side of the closing handshake (tungstenite queued the reply).
    let _ = ws.flush();
    let out = stopping.join().unwrap();
    assert_eq!(
        out.aborted, 0,
        "the tunnel ended before the drain's deadline: {out:?}"
    );
    let t0 = Instant::now();
    while closes.lock().unwrap().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the upstream got no close frame"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(closes.lock().unwrap()[0], Some(1001));
}
