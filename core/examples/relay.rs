//! A measuring stick for issue 16: the same request/response relay on monoio (what the engine
//! runs on today) and on `ringgate_core::rt` (our own ring), so the I/O layer's cost per request
//! can be compared alone, without HTTP or policy work. Each client connection gets its own
//! upstream connection; the relay reads a request from the client, writes it upstream, reads the
//! answer and writes it back. It assumes one read carries one whole message (true for small
//! keep-alive requests and the stub upstream's small answers on loopback): a measuring stick,
//! not a proxy.
//!
//! ```sh
//! cargo run --release -p ringgate-core --example relay -- ring 127.0.0.1:8081 127.0.0.1:9101 1
//! cargo run --release -p ringgate-core --example relay -- monoio 127.0.0.1:8081 127.0.0.1:9101 1
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::net::SocketAddr;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: relay ring|monoio LISTEN UPSTREAM [CPU]";
    let (kind, listen, upstream) = match args.as_slice() {
        [_, k, l, u, ..] => (k.clone(), l.parse().expect(usage), u.parse().expect(usage)),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    if let Some(cpu) = args.get(4).and_then(|c| c.parse().ok()) {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    match kind.as_str() {
        "ring" => on_ring(listen, upstream),
        "monoio" => on_monoio(listen, upstream),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

/// The ring's levers from the environment, so one binary is A/B'd lever by lever:
/// `RING_TASKRUN=plain|coop|defer`, `RING_REGFD=0|1`, `RING_BUFS=N` (0: single-shot reads into
/// the connection's own buffer instead of multishot into provided buffers), `RING_SEND=detached`
/// (sends not awaited: one enter per wake).
fn ring_config() -> ringgate_core::ring::RingConfig {
    use ringgate_core::ring::{RingConfig, TaskRun};
    let mut cfg = RingConfig::default();
    let env = |k: &str| std::env::var(k).ok();
    match env("RING_TASKRUN").as_deref() {
        Some("plain") => cfg.taskrun = TaskRun::Plain,
        Some("defer") => cfg.taskrun = TaskRun::Defer,
        _ => {}
    }
    if env("RING_REGFD").as_deref() == Some("0") {
        cfg.register_ring_fd = false;
    }
    if let Some(n) = env("RING_BUFS").and_then(|n| n.parse().ok()) {
        cfg.buffers = n;
    }
    cfg
}

fn on_ring(listen: SocketAddr, upstream: SocketAddr) {
    use ringgate_core::rt::{self, Runtime, TcpListener, TcpStream};
    let cfg = ring_config();
    let rt = Runtime::new(&cfg).expect("ring");
    eprintln!("{cfg:?}");
    eprintln!(
        "relay on ringgate_core::rt {:?}",
        rt.ring().map(|r| r.features())
    );
    rt.block_on(async move {
        let l = TcpListener::bind(listen, true).expect("bind");
        loop {
            let Ok(mut c) = l.accept().await else {
                continue;
            };
            rt::spawn(async move {
                let Ok(mut u) = TcpStream::connect(upstream).await else {
                    return;
                };
                let detached = std::env::var("RING_SEND").as_deref() == Ok("detached");
                let mut buf = Vec::with_capacity(16 * 1024);
                loop {
                    buf.clear();
                    if !matches!(c.read_append(&mut buf, 16 * 1024).await, Ok(n) if n > 0) {
                        return;
                    }
                    if detached {
                        let out = std::mem::replace(&mut buf, Vec::with_capacity(16 * 1024));
                        if u.write_detached(out).await.is_err() {
                            return;
                        }
                    } else {
                        let (r, b) = u.write_all(buf).await;
                        if r.is_err() {
                            return;
                        }
                        buf = b;
                        buf.clear();
                    }
                    if !matches!(u.read_append(&mut buf, 16 * 1024).await, Ok(n) if n > 0) {
                        return;
                    }
                    if detached {
                        let out = std::mem::replace(&mut buf, Vec::with_capacity(16 * 1024));
                        if c.write_detached(out).await.is_err() {
                            return;
                        }
                    } else {
                        let (r, b) = c.write_all(buf).await;
                        if r.is_err() {
                            return;
                        }
                        buf = b;
                    }
                }
            });
        }
    });
}

fn on_monoio(listen: SocketAddr, upstream: SocketAddr) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    use monoio::net::{TcpListener, TcpStream};
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio");
    eprintln!("relay on monoio (io_uring)");
    rt.block_on(async move {
        let l = TcpListener::bind(listen).expect("bind");
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                continue;
            };
            monoio::spawn(async move {
                let Ok(mut u) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = c.set_nodelay(true);
                let _ = u.set_nodelay(true);
                let mut buf = Vec::with_capacity(16 * 1024);
                loop {
                    buf.clear();
                    let (r, b) = c.read(buf).await;
                    buf = b;
                    if !matches!(r, Ok(n) if n > 0) {
                        return;
                    }
                    let (r, b) = u.write_all(buf).await;
                    buf = b;
                    if r.is_err() {
                        return;
                    }
                    buf.clear();
                    let (r, b) = u.read(buf).await;
                    buf = b;
                    if !matches!(r, Ok(n) if n > 0) {
                        return;
                    }
                    let (r, b) = c.write_all(buf).await;
                    buf = b;
                    if r.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
