//! core::rt on real sockets: tasks and joins, timers in deadline order, timeouts, an echo
//! server under concurrent clients, wakes from another thread, the plain-read fallback when the
//! buffer ring is empty, and a pooled connection's quiet check seeing stray bytes and EOF
//! without a syscall of its own. Waits are conditions with deadlines; no timing is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use ringgate_core::ring::RingConfig;
use ringgate_core::rt::{self, Runtime, TcpListener, TcpStream};

fn runtime(buffers: u16, size: u32) -> Option<Runtime> {
    let cfg = RingConfig {
        buffers,
        buffer_size: size,
        ..RingConfig::default()
    };
    match Runtime::new(&cfg) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("io_uring unavailable here ({e}); runtime test skipped");
            None
        }
    }
}

/// The ring runtime (when this host allows io_uring) and the epoll one: every driver-neutral
/// test runs on each.
fn drivers(buffers: u16, size: u32) -> Vec<Runtime> {
    let mut v: Vec<Runtime> = runtime(buffers, size).into_iter().collect();
    v.push(Runtime::epoll().unwrap());
    v
}

/// Polls `cond` every millisecond (a runtime timer) until it holds; 10 s deadline.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        rt::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn spawned_tasks_run_and_join() {
    for rt in drivers(0, 0) {
        spawned_tasks_on(&rt);
    }
}

fn spawned_tasks_on(rt: &Runtime) {
    let sum = rt.block_on(async {
        let handles: Vec<_> = (0..100u64)
            .map(|i| rt::spawn(async move { i * 2 }))
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await;
        }
        sum
    });
    assert_eq!(sum, 9900);
    rt.block_on(async { assert_eq!(rt::live_tasks(), 0) });
}

#[test]
fn sleeps_end_in_deadline_order_and_leave_no_timer() {
    for rt in drivers(0, 0) {
        sleeps_on(&rt);
    }
}

fn sleeps_on(rt: &Runtime) {
    let order = Rc::new(RefCell::new(Vec::new()));
    rt.block_on(async {
        let hs: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let order = Rc::clone(&order);
                rt::spawn(async move {
                    rt::sleep(Duration::from_millis(ms)).await;
                    order.borrow_mut().push(ms);
                })
            })
            .collect();
        for h in hs {
            h.await;
        }
        assert_eq!(rt::pending_timers(), 0);
    });
    assert_eq!(*order.borrow(), [10, 20, 30]);
}

#[test]
fn a_timeout_ends_a_future_that_never_finishes_and_passes_one_that_does() {
    for rt in drivers(0, 0) {
        timeouts_on(&rt);
    }
}

fn timeouts_on(rt: &Runtime) {
    rt.block_on(async {
        let never = std::future::pending::<()>();
        assert_eq!(
            rt::timeout(Duration::from_millis(5), never).await,
            Err(rt::Elapsed)
        );
        assert_eq!(
            rt::timeout(Duration::from_secs(5), async { 7 }).await,
            Ok(7)
        );
        // The finished timeout's timer is gone.
        assert_eq!(rt::pending_timers(), 0);
    });
}

async fn echo_server(l: TcpListener, conns: usize) {
    for _ in 0..conns {
        let (mut s, _) = l.accept().await.unwrap();
        rt::spawn(async move {
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if s.read_append(&mut buf, 4096).await.unwrap() == 0 {
                    return;
                }
                let (r, b) = s.write_all(buf).await;
                r.unwrap();
                buf = b;
            }
        });
    }
}

#[test]
fn an_echo_server_answers_concurrent_clients_byte_for_byte() {
    for rt in drivers(64, 4096) {
        echo_round_trips(&rt);
    }
}

#[test]
fn detached_writes_answer_request_response_traffic_whole() {
    for rt in drivers(16, 4096) {
        detached_on(&rt);
    }
}

fn detached_on(rt: &Runtime) {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = l.local_addr().unwrap();
        rt::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            loop {
                let mut buf = Vec::new();
                if s.read_append(&mut buf, 1 << 16).await.unwrap() == 0 {
                    return;
                }
                s.write_detached(buf).await.unwrap();
            }
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        for round in 0..200u32 {
            let msg = round.to_le_bytes().repeat(8);
            c.write_detached(msg.clone()).await.unwrap();
            let mut got = Vec::new();
            while got.len() < msg.len() {
                assert!(c.read_append(&mut got, 1 << 16).await.unwrap() > 0);
            }
            assert_eq!(got, msg);
        }
    });
}

#[test]
fn without_a_buffer_ring_reads_are_single_shot_and_still_whole() {
    if let Some(rt) = runtime(0, 0) {
        echo_round_trips(&rt);
    }
}

fn echo_round_trips(rt: &Runtime) {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = l.local_addr().unwrap();
        rt::spawn(echo_server(l, 20));
        let clients: Vec<_> = (0..20u8)
            .map(|c| {
                rt::spawn(async move {
                    let mut s = TcpStream::connect(addr).await.unwrap();
                    for round in 0..20u8 {
                        let msg = vec![c ^ round; 100 + usize::from(round) * 50];
                        let (r, _) = s.write_all(msg.clone()).await;
                        r.unwrap();
                        let mut got = Vec::new();
                        while got.len() < msg.len() {
                            let n = s.read_append(&mut got, 1 << 16).await.unwrap();
                            assert!(n > 0, "echo closed early");
                        }
                        assert_eq!(got, msg);
                    }
                })
            })
            .collect();
        for c in clients {
            c.await;
        }
    });
}

/// A future that another thread completes through its waker.
struct Remote(Arc<Mutex<(bool, Option<Waker>)>>);

impl Future for Remote {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut s = self.0.lock().unwrap();
        if s.0 {
            return Poll::Ready(());
        }
        s.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn a_wake_from_another_thread_ends_the_park() {
    for rt in drivers(0, 0) {
        remote_wake_on(&rt);
    }
}

fn remote_wake_on(rt: &Runtime) {
    let state = Arc::new(Mutex::new((false, None::<Waker>)));
    let other = Arc::clone(&state);
    let t = std::thread::spawn(move || loop {
        let mut s = other.lock().unwrap();
        if let Some(w) = s.1.take() {
            s.0 = true;
            drop(s);
            w.wake();
            return;
        }
        drop(s);
        std::thread::yield_now();
    });
    // No timer and no I/O: only the remote wake can end the park.
    rt.block_on(async { rt::spawn(Remote(state)).await });
    t.join().unwrap();
}

#[test]
fn an_empty_buffer_ring_falls_back_to_a_plain_read() {
    let Some(rt) = runtime(2, 16) else { return };
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = l.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for i in 0..4u8 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let (r, _) = c.write_all(vec![i; 32]).await;
            r.unwrap();
            clients.push(c);
            servers.push(s);
        }
        // Each server side reads one byte: those that got a provided buffer keep the rest of it
        // held, so the two buffers run out and the others must read without one.
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); 4];
        for (s, g) in servers.iter_mut().zip(&mut got) {
            while g.is_empty() {
                s.read_append(g, 1).await.unwrap();
            }
        }
        for (s, g) in servers.iter_mut().zip(&mut got) {
            while g.len() < 32 {
                assert!(s.read_append(g, 64).await.unwrap() > 0);
            }
        }
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &vec![i as u8; 32]);
        }
        assert_eq!(rt::ring().unwrap().buffers_out(), 0);
    });
}

#[test]
fn a_pooled_connection_sees_stray_bytes_and_close_without_peeking() {
    for rt in drivers(8, 256) {
        quiet_on(&rt);
    }
}

fn quiet_on(rt: &Runtime) {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = l.local_addr().unwrap();
        let mut pooled = TcpStream::connect(addr).await.unwrap();
        let (mut origin, _) = l.accept().await.unwrap();
        // Armed by a first exchange, as a pooled upstream connection is.
        let (r, _) = origin.write_all(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()).await;
        r.unwrap();
        let mut buf = Vec::new();
        pooled.read_append(&mut buf, 1024).await.unwrap();
        assert!(pooled.is_quiet(), "nothing since the response");
        let (r, _) = origin.write_all(b"junk".to_vec()).await;
        r.unwrap();
        until("stray bytes seen", || !pooled.is_quiet()).await;

        let mut pooled = TcpStream::connect(addr).await.unwrap();
        let (origin, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        let read = rt::timeout(Duration::from_millis(1), pooled.read_append(&mut buf, 1)).await;
        assert!(read.is_err(), "nothing to read yet");
        assert!(pooled.is_quiet());
        drop(origin);
        until("close seen", || !pooled.is_quiet()).await;
    });
}

#[test]
fn split_halves_carry_both_directions_at_once() {
    for rt in drivers(16, 1024) {
        split_on(&rt);
    }
}

fn split_on(rt: &Runtime) {
    rt.block_on(async {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_l.local_addr().unwrap();
        // A listener handed over as a std socket (as the upgrade handoff does).
        let l = TcpListener::from_std(std_l).unwrap();
        let client = rt::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            // Sends 64 KiB while the other side sends its own 64 KiB back: neither waits.
            let (r, _) = c.write_all(vec![1; 64 << 10]).await;
            r.unwrap();
            c.shutdown_write().unwrap();
            let mut got = Vec::new();
            while c.read_append(&mut got, 1 << 16).await.unwrap() > 0 {}
            got
        });
        let (s, _) = l.accept().await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let writer = rt::spawn(async move {
            let (r, _) = wr.write_all(vec![2; 64 << 10]).await;
            r.unwrap();
            wr.shutdown_write().unwrap();
        });
        let mut got = Vec::new();
        while rd.read_append(&mut got, 1 << 16).await.unwrap() > 0 {}
        assert_eq!(got, vec![1; 64 << 10], "the peer's FIN ends the read half");
        writer.await;
        assert_eq!(client.await, vec![2; 64 << 10]);
    });
}

#[test]
fn poll_writes_go_behind_and_flush_in_order() {
    for rt in drivers(16, 1024) {
        poll_io_on(&rt);
    }
}

fn poll_io_on(rt: &Runtime) {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = l.local_addr().unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut sent = Vec::new();
        for i in 0..100u8 {
            let part = vec![i; 100 + usize::from(i)];
            let n = std::future::poll_fn(|cx| c.poll_write(cx, &part))
                .await
                .unwrap();
            sent.extend_from_slice(&part[..n]);
        }
        std::future::poll_fn(|cx| c.poll_flush(cx)).await.unwrap();
        c.shutdown_write().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 300];
        loop {
            let n = std::future::poll_fn(|cx| s.poll_read(cx, &mut buf))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, sent);
    });
}

#[test]
fn a_deadline_passes_a_future_that_finishes_first_and_ends_one_that_does_not() {
    for rt in drivers(0, 0) {
        rt.block_on(async {
            let d = rt::Deadline::new();
            d.set(Instant::now() + Duration::from_secs(5));
            assert_eq!(d.within(async { 3 }).await, Ok(3));
            d.set(Instant::now() + Duration::from_millis(5));
            assert_eq!(
                d.within(std::future::pending::<()>()).await,
                Err(rt::Elapsed)
            );
            assert!(d.expired());
            // Cleared, it never expires: a future that takes a while still finishes.
            d.clear();
            let slow = rt::sleep(Duration::from_millis(20));
            assert_eq!(d.within(slow).await, Ok(()));
        });
    }
}

#[test]
fn moving_a_deadline_later_keeps_one_timer_and_the_later_time_holds() {
    for rt in drivers(0, 0) {
        rt.block_on(async {
            let d = rt::Deadline::new();
            d.set(Instant::now() + Duration::from_millis(10));
            let mover = d.clone();
            // A connection that reads often: the deadline moves forward on every "read".
            let reads = rt::spawn(async move {
                for _ in 0..100 {
                    mover.set(Instant::now() + Duration::from_millis(200));
                    rt::sleep(Duration::from_millis(1)).await;
                }
            });
            // Would end at the first 10 ms if moves were not honoured.
            let work = rt::sleep(Duration::from_millis(60));
            assert_eq!(d.within(work).await, Ok(()));
            // The deadline's single entry, the reader's sleep: never one timer per move.
            assert!(rt::pending_timers() <= 2, "{}", rt::pending_timers());
            reads.await;
        });
    }
}

#[test]
fn moving_a_deadline_earlier_ends_the_wait_at_the_earlier_time() {
    for rt in drivers(0, 0) {
        rt.block_on(async {
            let d = rt::Deadline::new();
            d.set(Instant::now() + Duration::from_secs(30));
            let mover = d.clone();
            rt::spawn(async move {
                rt::sleep(Duration::from_millis(5)).await;
                mover.set(Instant::now() + Duration::from_millis(5));
            });
            // Ends soon after the move: with the move ignored, the outer 2 s would end it first
            // (the armed entry is for 30 s and a move is otherwise a field write).
            let r = rt::timeout(
                Duration::from_secs(2),
                d.within(std::future::pending::<()>()),
            )
            .await;
            assert_eq!(r, Ok(Err(rt::Elapsed)));
        });
    }
}
