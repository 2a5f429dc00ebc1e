//! Snapshot publication while requests are in flight: in-flight requests finish on the snapshot
//! they started with, new requests see the new one, and nothing fails in between.

use ringbench::upstream::UpstreamConfig;
use ringgate_testkit::client::gets_in_flight;
use ringgate_testkit::client::{send, Client};
use ringgate_testkit::gateway::{config, gateway};
use ringgate_testkit::stub::{slow_stub, stub_with};
use std::time::Duration;

fn routes_to(name: &str) -> String {
    format!("[[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"{name}\"\n")
}

#[test]
fn swapping_snapshots_under_load_changes_routing_for_new_requests_only() {
    let slow = |name: &str| slow_stub(name, 200);
    let a = slow("a");
    let b = slow("b");
    let ups: [(&str, &[std::net::SocketAddr]); 2] =
        [("a", &a.addrs()[..1]), ("b", &b.addrs()[..1])];
    let gw = gateway(&config(&ups, &routes_to("a")));

    // Requests in flight on snapshot A.
    let addr = gw.addr;
    let in_flight = gets_in_flight(addr, vec!["/".to_owned(); 8]);
    // All eight were routed on snapshot A once upstream A has accepted their connections.
    ringgate_testkit::wait::until(Duration::from_secs(5), || a.connections_accepted() >= 8);
    let next = ringgate::snapshot_from_text(&config(&ups, &routes_to("b"))).expect("valid");
    let epoch = gw.inner().publish(next);
    assert_eq!(epoch, 2);
    for t in in_flight {
        let r = t.join().expect("client thread").expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-upstream"),
            Some("a"),
            "in-flight requests finish on their snapshot"
        );
    }
    let r = send(gw.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        r.header("x-upstream"),
        Some("b"),
        "new requests see the new snapshot"
    );
}

#[test]
fn a_kept_alive_connection_sees_the_new_snapshot_on_its_next_request() {
    let a = stub_with(UpstreamConfig {
        name: "a".into(),
        ..UpstreamConfig::default()
    });
    let b = stub_with(UpstreamConfig {
        name: "b".into(),
        ..UpstreamConfig::default()
    });
    let ups: [(&str, &[std::net::SocketAddr]); 2] =
        [("a", &a.addrs()[..1]), ("b", &b.addrs()[..1])];
    let gw = gateway(&config(&ups, &routes_to("a")));
    let mut c = Client::connect(gw.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().header("x-upstream"), Some("a"));
    gw.inner()
        .publish(ringgate::snapshot_from_text(&config(&ups, &routes_to("b"))).expect("valid"));
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        c.response().header("x-upstream"),
        Some("b"),
        "snapshots are taken per request, not per connection"
    );
}
