//! Measurement prototype for perf-reports/0007-harness-verdict: an open-model generator on
//! monoio's io_uring driver (the runtime ringgate itself runs on), to measure what io_uring saves
//! against the epoll engine of `ringbench run` at the same rate on the same stub. Fixed arrivals
//! at RATE for SECS to one `http://` target over keep-alive connections, one task per request;
//! pacing with the stub upstream's precise timerfd (monoio's timer wheel rounds to 1 ms). It
//! keeps no histograms and draws no verdict: only its CPU per request is of interest, read from
//! /proc by the report's script. Usage: `uring_gen ADDR RATE SECS` (prints what it sent and got).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringbench::http1::response::ResponseReader;
use ringbench::runtime;
use ringbench::upstream::timer::PreciseTimer;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Idle keep-alive connections, each with its read buffer.
type Pool = Rc<RefCell<Vec<(TcpStream, Vec<u8>)>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (
        args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(2).and_then(|a| a.parse::<f64>().ok()),
        args.get(3).and_then(|a| a.parse::<f64>().ok()),
    );
    let (Some(addr), Some(rate), Some(secs)) = parsed else {
        eprintln!("usage: uring_gen ADDR RATE SECS");
        std::process::exit(2);
    };
    let mut driver = String::from("none");
    let out = runtime::block_on(
        |_| generate(addr, rate, secs),
        |r| {
            if let Ok(d) = r {
                driver = d.to_string();
            }
        },
    );
    match out {
        Some((sent, done)) => println!("driver {driver} sent {sent} completed {done}"),
        None => {
            eprintln!("uring_gen: no runtime");
            std::process::exit(2);
        }
    }
}

async fn generate(addr: SocketAddr, rate: f64, secs: f64) -> (u64, u64) {
    let pool: Pool = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(Cell::new(0u64));
    let Ok(mut timer) = PreciseTimer::new() else {
        return (0, 0);
    };
    let total = (rate * secs) as u64;
    let start = Instant::now() + Duration::from_millis(100);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if timer.sleep_until(due).await.is_err() {
            return (i, done.get());
        }
        let conn = pool.borrow_mut().pop();
        monoio::spawn(one(addr, conn, Rc::clone(&pool), Rc::clone(&done)));
    }
    let end = Instant::now() + Duration::from_secs(2);
    while done.get() < total && Instant::now() < end {
        let _ = timer.sleep(Duration::from_millis(1)).await;
    }
    (total, done.get())
}

async fn one(
    addr: SocketAddr,
    conn: Option<(TcpStream, Vec<u8>)>,
    pool: Pool,
    done: Rc<Cell<u64>>,
) {
    let (mut s, mut buf) = match conn {
        Some(c) => c,
        None => match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                (s, Vec::with_capacity(4096))
            }
            Err(_) => return,
        },
    };
    if s.write_all(REQUEST).await.0.is_err() {
        return;
    }
    let mut reader = ResponseReader::default();
    loop {
        let len = buf.len();
        if len == buf.capacity() {
            buf.reserve(4096);
        }
        let (res, slice) = s.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
        match reader.feed(&buf, false) {
            Ok((used, complete)) => {
                buf.drain(..used);
                if complete.is_some() {
                    break;
                }
            }
            Err(_) => return,
        }
    }
    done.set(done.get() + 1);
    pool.borrow_mut().push((s, buf));
}
