//! 100 MB streamed through the real `ringgate` binary each way, with its peak RSS measured:
//! bodies stream through bounded buffers, so memory must not grow with the body.

use ringgate_testkit::curl::upload;
use ringgate_testkit::gateway::ChildGateway;
use ringgate_testkit::scripted::{bulk, Scripted};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const HUNDRED_MB: u64 = 100 * 1024 * 1024;

fn proxy_to(up: SocketAddr) -> ChildGateway {
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiles/default.toml");
    ChildGateway::proxy(env!("CARGO_BIN_EXE_ringgate"), up, &["--profile", profile])
}

/// A bulk upstream behind a `ringgate proxy` child, and the child's RSS (KiB) before any load.
fn bulk_behind_proxy() -> (Scripted, ChildGateway, u64) {
    let up = bulk();
    let gw = proxy_to(up.addr);
    let base = gw.rss_kib();
    (up, gw, base)
}

/// The gateway's peak RSS (`peak`, KiB) stayed within 32 MiB of where it started (`base`).
fn assert_grew_under_32_mib(base: u64, peak: u64) {
    assert!(
        peak.saturating_sub(base) < 32 * 1024,
        "peak RSS grew by {} KiB",
        peak - base
    );
}

fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).expect("read head");
        assert!(n > 0, "closed before head");
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
            return (head, buf[p + 4..].to_vec());
        }
    }
}

/// Reads the bulk upstream's answer to an upload: a 200 whose body is the byte count it got.
fn read_count_response(s: &mut TcpStream) -> Vec<u8> {
    let (head, mut body) = read_head(s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    while body.len() < HUNDRED_MB.to_string().len() {
        let mut tmp = [0u8; 64];
        let n = s.read(&mut tmp).expect("read count");
        body.extend_from_slice(&tmp[..n]);
    }
    body
}

/// Connects to the gateway and sends the head of a `POST /upload` framed by `framing`.
fn start_upload(gw: &ChildGateway, framing: &str) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(s, "POST /upload HTTP/1.1\r\nHost: h\r\n{framing}\r\n\r\n").expect("head");
    s
}

#[test]
fn a_100_mb_upload_and_download_stream_with_bounded_memory() {
    let (_up, gw, base) = bulk_behind_proxy();

    // Upload: 100 MB by content-length, written in 64 KiB blocks.
    let mut s = start_upload(&gw, &format!("Content-Length: {HUNDRED_MB}"));
    let block = vec![b'u'; 65536];
    let mut left = HUNDRED_MB;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        s.write_all(&block[..k]).expect("upload block");
        left -= k as u64;
    }
    let body = read_count_response(&mut s);
    assert_eq!(
        String::from_utf8_lossy(&body),
        HUNDRED_MB.to_string(),
        "upstream received every byte"
    );

    // Download: 100 MB by content-length on the same connection.
    write!(
        s,
        "GET /download?bytes={HUNDRED_MB} HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    .expect("get");
    let (head, first) = read_head(&mut s);
    assert!(
        head.contains(&format!("content-length: {HUNDRED_MB}")),
        "{head}"
    );
    let mut got = first.len() as u64;
    let mut tmp = vec![0u8; 65536];
    while got < HUNDRED_MB {
        let n = s.read(&mut tmp).expect("download");
        assert!(n > 0, "closed at {got}");
        got += n as u64;
    }
    assert_eq!(got, HUNDRED_MB);

    let peak = gw.peak_rss_kib();
    eprintln!("ringgate RSS: {base} KiB at start, {peak} KiB peak after 2 x 100 MB");
    assert!(peak > 0, "peak RSS readable");
    assert_grew_under_32_mib(base, peak);
}

#[test]
fn a_chunked_upload_of_100_mb_streams_too() {
    let (_up, gw, base) = bulk_behind_proxy();
    let mut s = start_upload(&gw, "Transfer-Encoding: chunked");
    let block = vec![b'c'; 65536];
    let mut left = HUNDRED_MB;
    let mut framed = Vec::with_capacity(70_000);
    while left > 0 {
        framed.clear();
        write!(framed, "{:x}\r\n", block.len()).expect("size");
        framed.extend_from_slice(&block);
        framed.extend_from_slice(b"\r\n");
        s.write_all(&framed).expect("chunk");
        left -= block.len() as u64;
    }
    s.write_all(b"0\r\n\r\n").expect("last chunk");
    let body = read_count_response(&mut s);
    assert_eq!(
        String::from_utf8_lossy(&body),
        HUNDRED_MB.to_string(),
        "upstream decoded every payload byte"
    );
    let peak = gw.peak_rss_kib();
    assert_grew_under_32_mib(base, peak);
}

#[test]
fn a_100_mb_upload_and_download_over_http2_stream_with_bounded_memory() {
    // curl as the HTTP/2 client (prior knowledge, cleartext): 100 MB up, then 100 MB down.
    let (_up, gw, base) = bulk_behind_proxy();
    let url = format!("http://{}/upload", gw.addr);
    let out = upload(&["--http2-prior-knowledge", &url], HUNDRED_MB, 65536, b'u');
    assert_eq!(out, HUNDRED_MB.to_string());
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{http_version}",
            &format!("http://{}/download?bytes={HUNDRED_MB}", gw.addr),
        ])
        .output()
        .expect("curl runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{HUNDRED_MB} 2")
    );
    let peak = gw.peak_rss_kib();
    eprintln!("ringgate RSS over HTTP/2: {base} KiB at start, {peak} KiB peak after 2 x 100 MB");
    assert_grew_under_32_mib(base, peak);
}
