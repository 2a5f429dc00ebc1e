//! core::ring on real loopback sockets: multishot receives into provided buffers, the buffer
//! ring running dry and re-arming, sends whose futures are dropped while the kernel still reads
//! their buffer, cancelled receives, and dropping the ring with work in flight. Each path of the
//! module's `unsafe` blocks runs here. No timing is asserted: waits poll with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ringgate_core::ring::{Ring, RingConfig, RxEvent};

/// A ring with `buffers` provided buffers of `size` bytes, or `None` when this host refuses
/// io_uring (the test then says so and passes: the epoll fallback is tested elsewhere).
fn ring(buffers: u16, size: u32) -> Option<Rc<Ring>> {
    let cfg = RingConfig {
        buffers,
        buffer_size: size,
        ..RingConfig::default()
    };
    match Ring::new(&cfg) {
        Ok(r) => Some(Rc::new(r)),
        Err(e) => {
            eprintln!("io_uring unavailable here ({e}); ring test skipped");
            None
        }
    }
}

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

/// Polls until ready, parking on the ring between polls (10 s deadline).
fn wait<T>(ring: &Ring, mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    let mut cx = Context::from_waker(Waker::noop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Poll::Ready(v) = poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < deadline, "nothing completed within 10 s");
        ring.park(Some(Duration::from_millis(50))).unwrap();
        ring.reap();
    }
}

/// Parks and reaps until `done` holds (10 s deadline).
fn until(ring: &Ring, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        ring.park(Some(Duration::from_millis(20))).unwrap();
        ring.reap();
    }
}

fn data(rx: RxEvent) -> Vec<u8> {
    match rx {
        RxEvent::Data(c) => c.bytes().to_vec(),
        RxEvent::Eof => panic!("eof"),
        RxEvent::NoBuffers => panic!("no buffers"),
        RxEvent::Ended => panic!("ended"),
        RxEvent::Err(e) => panic!("{e}"),
    }
}

/// `n` bytes of a pattern that a misplaced or freed buffer would not reproduce.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn multishot_receive_delivers_every_write_in_provided_buffers_then_eof() {
    let Some(ring) = ring(8, 64) else { return };
    assert!(ring.features().buf_ring);
    let (mut a, b) = pair();
    let mut rx = ring.recv_multi(b.as_raw_fd()).unwrap();
    a.write_all(b"hello").unwrap();
    assert_eq!(data(wait(&ring, |cx| rx.poll_rx(cx))), b"hello");
    // 200 bytes span several 64-byte buffers: they arrive in order, whole.
    a.write_all(&pattern(200)).unwrap();
    let mut got = Vec::new();
    while got.len() < 200 {
        let chunk = data(wait(&ring, |cx| rx.poll_rx(cx)));
        assert!(chunk.len() <= 64);
        got.extend(chunk);
    }
    assert_eq!(got, pattern(200));
    assert_eq!(ring.buffers_out(), 0, "every chunk went back to the ring");
    assert!(rx.is_armed(), "one receive served every write");
    drop(a);
    assert!(matches!(wait(&ring, |cx| rx.poll_rx(cx)), RxEvent::Eof));
}

#[test]
fn an_empty_buffer_ring_ends_the_receive_and_it_rearms_once_chunks_are_back() {
    let Some(ring) = ring(2, 16) else { return };
    let (mut a, b) = pair();
    let mut rx = ring.recv_multi(b.as_raw_fd()).unwrap();
    let mut held = Vec::new();
    for i in 0..2u8 {
        a.write_all(&[i; 16]).unwrap();
        match wait(&ring, |cx| rx.poll_rx(cx)) {
            RxEvent::Data(c) => {
                assert_eq!(c.bytes(), &[i; 16]);
                held.push(c);
            }
            _ => panic!("expected data"),
        }
    }
    assert_eq!(ring.buffers_out(), 2);
    a.write_all(&[7; 16]).unwrap();
    assert!(matches!(
        wait(&ring, |cx| rx.poll_rx(cx)),
        RxEvent::NoBuffers
    ));
    assert!(!rx.is_armed());
    drop(held);
    assert_eq!(ring.buffers_out(), 0);
    rx.arm().unwrap();
    // The bytes stayed in the socket while no buffer was free.
    assert_eq!(data(wait(&ring, |cx| rx.poll_rx(cx))), [7; 16]);
}

/// More than loopback socket buffers hold: a send of it waits for the peer to read.
const BIG: usize = 32 << 20;

/// Reads everything until EOF on another thread.
fn drain(mut b: TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        b.read_to_end(&mut all).unwrap();
        all
    })
}

/// Overwrites freed heap memory, so a buffer freed too early would send garbage.
fn scribble() {
    let junk: Vec<Vec<u8>> = (0..64).map(|_| vec![0xEE; 1 << 20]).collect();
    std::hint::black_box(junk);
}

#[test]
fn a_dropped_send_keeps_its_buffer_until_the_kernel_is_done() {
    let Some(ring) = ring(0, 0) else { return };
    let (a, b) = pair();
    let mut op = ring.send(a.as_raw_fd(), pattern(BIG)).unwrap();
    ring.submit().unwrap();
    ring.reap();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        Pin::new(&mut op).poll(&mut cx).is_pending(),
        "the peer reads nothing yet"
    );
    drop(op);
    assert_eq!(ring.in_flight(), 1, "the slot outlives its future");
    scribble();
    let reader = drain(b);
    until(&ring, "send completion", || ring.in_flight() == 0);
    drop(a);
    let got = reader.join().unwrap();
    // MSG_WAITALL: the kernel kept sending from the kept buffer after the future was gone (a
    // freed buffer would end the send with EFAULT or send the scribbled bytes).
    assert_eq!(got.len(), BIG);
    assert!(got == pattern(BIG), "the kernel read the kept buffer");
}

#[test]
fn a_finished_send_returns_its_buffer() {
    let Some(ring) = ring(0, 0) else { return };
    let (a, b) = pair();
    let reader = drain(b);
    let mut op = ring.send(a.as_raw_fd(), b"ping".to_vec()).unwrap();
    let (r, buf) = wait(&ring, |cx| Pin::new(&mut op).poll(cx));
    assert_eq!(r.unwrap(), 4);
    assert_eq!(buf, b"ping");
    drop(op);
    drop(a);
    assert_eq!(reader.join().unwrap(), b"ping");
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn a_dropped_receive_is_cancelled_and_its_slot_freed_at_the_last_completion() {
    let Some(ring) = ring(4, 64) else { return };
    let (_a, b) = pair();
    let rx = ring.recv_multi(b.as_raw_fd()).unwrap();
    ring.submit().unwrap();
    assert_eq!(ring.in_flight(), 1);
    drop(rx);
    until(&ring, "cancelled receive", || ring.in_flight() == 0);
    assert_eq!(ring.buffers_out(), 0);
}

#[test]
fn bytes_arriving_for_a_dropped_receive_go_back_to_the_ring() {
    let Some(ring) = ring(4, 64) else { return };
    let (mut a, b) = pair();
    let rx = ring.recv_multi(b.as_raw_fd()).unwrap();
    a.write_all(b"one").unwrap();
    // Completed but not taken: the chunk's buffer sits in the receive's queue.
    until(&ring, "first chunk", || ring.buffers_out() == 1);
    a.write_all(b"two").unwrap();
    drop(rx);
    until(&ring, "cancelled receive", || ring.in_flight() == 0);
    assert_eq!(ring.buffers_out(), 0, "queued and late buffers recycled");
    // The ring still works: a new receive gets new bytes.
    let mut rx = ring.recv_multi(b.as_raw_fd()).unwrap();
    a.write_all(b"three").unwrap();
    let got = data(wait(&ring, |cx| rx.poll_rx(cx)));
    assert!(got.ends_with(b"three"), "{got:?}");
}

#[test]
fn dropping_the_ring_with_a_send_in_flight_cancels_it_before_freeing() {
    let Some(ring) = ring(4, 64) else { return };
    let (a, b) = pair();
    let op = ring.send(a.as_raw_fd(), pattern(BIG)).unwrap();
    ring.submit().unwrap();
    drop(op);
    let (_c, d) = pair();
    let rx = ring.recv_multi(d.as_raw_fd()).unwrap();
    drop(rx);
    assert!(ring.in_flight() >= 1);
    drop(ring);
    scribble();
    // The cancel ended the send part way; what was sent came from the live buffer.
    let reader = drain(b);
    drop(a);
    let got = reader.join().unwrap();
    assert!(got.len() < BIG, "the send was cancelled part way");
    assert!(
        got == pattern(got.len()),
        "only bytes of the live buffer were sent"
    );
}

#[test]
fn a_park_with_a_timeout_returns_without_completions() {
    let Some(ring) = ring(0, 0) else { return };
    ring.park(Some(Duration::from_millis(5))).unwrap();
    assert_eq!(ring.reap(), 0);
}

#[test]
fn this_kernel_registers_the_ring_fd() {
    let Some(ring) = ring(8, 64) else { return };
    let f = ring.features();
    eprintln!("{f:?}");
    assert!(f.registered_ring_fd, "5.18+ registers the ring fd: {f:?}");
}

#[test]
fn bad_buffer_ring_sizes_are_refused() {
    let cfg = RingConfig {
        buffers: 3,
        ..RingConfig::default()
    };
    match Ring::new(&cfg) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}"),
        Ok(_) => panic!("3 buffers (not a power of two) accepted"),
    }
}

#[test]
fn a_detached_send_delivers_everything_and_frees_its_slot_at_completion() {
    let Some(ring) = ring(0, 0) else { return };
    let (a, b) = pair();
    ring.send_detached(a.as_raw_fd(), pattern(BIG)).unwrap();
    scribble();
    let reader = drain(b);
    until(&ring, "detached send completion", || ring.in_flight() == 0);
    drop(a);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), BIG);
    assert!(got == pattern(BIG));
}
