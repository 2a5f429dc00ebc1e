//! `ringgate_upstream_duration_seconds` for upstreams spoken to over HTTP/2 (issue 14, item 8):
//! every answered request is in the histogram, as for HTTP/1.1 upstreams. The HTTP/2 upstream
//! is a second gateway serving h2c in front of a stub.

use ringgate_testkit::client::get;
use ringgate_testkit::gateway::{catch_all, gateway};
use ringgate_testkit::stub::stub;

#[test]
fn http2_upstream_durations_are_recorded() {
    let s = stub("S");
    let inner = gateway(&catch_all(s.addr()));
    let front = gateway(&format!(
        "version = \"h2-duration\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"h2dur\"\nendpoints = [\"{}\"]\nprotocol = \"h2\"\n\
         [[routes]]\nid = \"h2dur\"\npath = {{ prefix = \"/\" }}\nupstream = \"h2dur\"\n",
        inner.addr
    ));
    for _ in 0..5 {
        assert_eq!(get(front.addr, "h", "/x").status, 200);
    }
    assert_eq!(
        front.metric("ringgate_upstream_responses_total{upstream=\"h2dur\",code=\"2xx\"}"),
        5.0
    );
    assert_eq!(
        front.metric("ringgate_upstream_duration_seconds_count{upstream=\"h2dur\"}"),
        5.0
    );
    assert_eq!(
        front.metric("ringgate_upstream_duration_seconds_bucket{upstream=\"h2dur\",le=\"+Inf\"}"),
        5.0
    );
    assert!(front.metric("ringgate_upstream_duration_seconds_sum{upstream=\"h2dur\"}") > 0.0);
}
