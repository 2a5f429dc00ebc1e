//! One stub-upstream connection: read requests, skip their bodies, answer them in order.
//!
//! Pipelining: every complete request already in the buffer is answered before the next read,
//! and answers due now are batched into one write. A delayed answer (injected latency or a stall)
//! first flushes the ones before it, so order is kept and nothing waits behind a timer it does
//! not need. Latency runs from when the request's bytes were read, so pipelined requests are
//! delayed concurrently (like a server that works on them in parallel) but still sent in order.
//!
//! Cost: the read buffer and the write buffer are owned by the connection and reused; fixed
//! answers are copied from pre-rendered bytes; the clock is read only when a delay is possible.

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::faults::Fault;
use super::request::{self, Head, Parsed, Route};
use super::responses::{write_head, Canned};
use super::timer::PreciseTimer;
use super::worker::Worker;
use crate::rng::Rng;
use crate::sys;

const READ_BUF: usize = 16 * 1024;
const MAX_HEAD: usize = 64 * 1024;
/// Answers larger than this are written from their shared buffer instead of copied.
const COPY_LIMIT: usize = 32 * 1024;

/// Why a connection loop ended (all are normal ends for a stub).
enum End {
    /// Peer closed, reset, or the server is stopping.
    Io,
    /// We decided to close (Connection: close, bad request, injected reset or hang).
    Close,
}

impl From<io::Error> for End {
    fn from(_: io::Error) -> Self {
        End::Io
    }
}

/// Serves one accepted connection until it ends.
pub async fn serve(stream: TcpStream, worker: Rc<Worker>, rng: Rng) {
    let mut conn = Conn {
        stream,
        rbuf: Vec::with_capacity(READ_BUF),
        pos: 0,
        out: Vec::with_capacity(READ_BUF),
        rng,
        timer: None,
        read_at: Instant::now(),
        clocked: worker.needs_clock(),
        worker,
    };
    let _ = conn.run().await;
}

struct Conn {
    stream: TcpStream,
    /// Unconsumed request bytes are `rbuf[pos..]`.
    rbuf: Vec<u8>,
    pos: usize,
    /// Answers not yet written.
    out: Vec<u8>,
    rng: Rng,
    timer: Option<PreciseTimer>,
    /// When the last read completed (the arrival time of requests parsed from it).
    read_at: Instant,
    /// Whether arrival times are needed at all (latency configured).
    clocked: bool,
    worker: Rc<Worker>,
}

impl Conn {
    async fn run(&mut self) -> Result<(), End> {
        loop {
            let head = match request::parse(&self.rbuf[self.pos..]) {
                Parsed::Complete(head) => head,
                Parsed::Partial => {
                    if self.rbuf.len() - self.pos >= MAX_HEAD {
                        return self.refuse(431).await;
                    }
                    self.flush().await?;
                    self.fill().await?;
                    continue;
                }
                Parsed::Invalid(status) => return self.refuse(status).await,
            };
            self.pos += head.len;
            let arrived = self.read_at;
            let body_bytes = match head.body.clone() {
                Some(skipper) => self.skip_body(skipper).await?,
                None => 0,
            };
            self.worker.count_request();
            self.answer(&head, arrived, body_bytes).await?;
            if head.close {
                self.flush().await?;
                return Err(End::Close);
            }
        }
    }

    /// Reads more bytes after `rbuf[..len]`, compacting or growing the buffer first.
    async fn fill(&mut self) -> Result<(), End> {
        if self.pos > 0 {
            self.rbuf.drain(..self.pos);
            self.pos = 0;
        }
        if self.rbuf.len() == self.rbuf.capacity() {
            self.rbuf.reserve(READ_BUF);
        }
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let (res, slice) = self.stream.read(buf.slice_mut(len..)).await;
        self.rbuf = slice.into_inner();
        if self.clocked {
            self.read_at = Instant::now();
        }
        match res {
            Ok(0) => Err(End::Io),
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn skip_body(&mut self, mut skipper: crate::body::BodySkipper) -> Result<u64, End> {
        loop {
            let used = skipper
                .feed(&self.rbuf[self.pos..])
                .map_err(|_| End::Close)?;
            self.pos += used;
            if skipper.is_done() {
                return Ok(skipper.payload);
            }
            // Everything buffered was body: drop it rather than growing the buffer.
            self.rbuf.clear();
            self.pos = 0;
            self.fill().await?;
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let (res, mut out) = self.stream.write_all(out).await;
        out.clear();
        self.out = out;
        res?;
        Ok(())
    }

    /// Queues `bytes`, writing large ones straight from the shared buffer.
    async fn push(&mut self, canned: &Canned, close: bool, head_only: bool) -> Result<(), End> {
        let bytes = canned.bytes(close, head_only);
        if bytes.len() <= COPY_LIMIT {
            if self.out.len() + bytes.len() > COPY_LIMIT {
                self.flush().await?;
            }
            self.out.extend_from_slice(bytes);
            return Ok(());
        }
        self.flush().await?;
        let (shared, len) = canned.shared(close, head_only);
        let (res, _) = self
            .stream
            .write_all(monoio::buf::IoBuf::slice(shared, ..len))
            .await;
        res?;
        Ok(())
    }

    /// Waits until `deadline` and any stall are over, flushing earlier answers first.
    async fn wait_until(&mut self, mut deadline: Option<Instant>) -> Result<(), End> {
        loop {
            let stall = self.worker.shared.stall_deadline();
            let target = match (deadline, stall) {
                (None, None) => return Ok(()),
                (Some(d), None) | (None, Some(d)) => d,
                (Some(a), Some(b)) => a.max(b),
            };
            if target <= Instant::now() {
                return Ok(());
            }
            self.flush().await?;
            if self.timer.is_none() {
                self.timer = Some(PreciseTimer::new()?);
            }
            if let Some(timer) = self.timer.as_mut() {
                timer.sleep_until(target).await?;
            }
            // Our own delay has passed; loop only in case a stall was extended meanwhile.
            deadline = None;
        }
    }

    async fn answer(&mut self, head: &Head, arrived: Instant, body: u64) -> Result<(), End> {
        let w = Rc::clone(&self.worker);
        match &head.route {
            Route::Default => {
                let (fault, delay) = w.draw(&mut self.rng);
                match fault {
                    Fault::Reset => return self.reset().await,
                    Fault::Hang => return self.hang().await,
                    Fault::None | Fault::Status(_) => {}
                }
                self.wait_until(delay.map(|d| w.finish_time(arrived, d)))
                    .await?;
                let canned = match fault {
                    Fault::Status(i) => &w.responses.injected[i],
                    _ => &w.responses.ok,
                };
                self.push(canned, head.close, head.head_only).await
            }
            Route::Healthz => {
                self.wait_until(None).await?;
                self.push(&w.responses.healthz, head.close, head.head_only)
                    .await
            }
            Route::Stall(d) => {
                w.shared.stall_for(*d);
                self.push(&w.responses.stall_ack, head.close, head.head_only)
                    .await
            }
            Route::Echo => {
                self.wait_until(None).await?;
                let text = head.echo.as_deref().unwrap_or_default();
                self.dynamic(200, text, &format!("x-echo-body-bytes: {body}"), head)
                    .await
            }
            Route::Status(code) => {
                self.wait_until(None).await?;
                self.dynamic(*code, b"", "x-injected: status-endpoint", head)
                    .await
            }
            Route::Chunked { n, size, interval } => {
                self.wait_until(None).await?;
                self.stream_chunked(*n, *size, *interval, head).await
            }
            Route::Sse { n, interval } => {
                self.wait_until(None).await?;
                self.stream_sse(*n, *interval, head).await
            }
        }
    }

    async fn dynamic(
        &mut self,
        status: u16,
        body: &[u8],
        extra: &str,
        head: &Head,
    ) -> Result<(), End> {
        let cl = format!("content-length: {}", body.len());
        let name = self.worker.name();
        write_head(
            &mut self.out,
            status,
            name,
            &[&cl, "content-type: text/plain", extra],
            head.close,
        );
        if !head.head_only {
            self.out.extend_from_slice(body);
        }
        Ok(())
    }

    async fn pause(&mut self, interval: Duration) -> Result<(), End> {
        self.flush().await?;
        if interval.is_zero() {
            return Ok(());
        }
        if self.timer.is_none() {
            self.timer = Some(PreciseTimer::new()?);
        }
        if let Some(timer) = self.timer.as_mut() {
            timer.sleep(interval).await?;
        }
        Ok(())
    }

    async fn stream_chunked(
        &mut self,
        n: u64,
        size: u64,
        interval: Duration,
        head: &Head,
    ) -> Result<(), End> {
        let name = self.worker.name();
        let extra = [
            "transfer-encoding: chunked",
            "content-type: application/octet-stream",
        ];
        write_head(&mut self.out, 200, name, &extra, head.close);
        if head.head_only {
            return Ok(());
        }
        for i in 0..n {
            self.out
                .extend_from_slice(format!("{size:x}\r\n").as_bytes());
            let fill = b'a' + (i % 26) as u8;
            self.out.resize(self.out.len() + size as usize, fill);
            self.out.extend_from_slice(b"\r\n");
            if !interval.is_zero() || self.out.len() > COPY_LIMIT {
                self.pause(interval).await?;
            }
        }
        self.out.extend_from_slice(b"0\r\n\r\n");
        Ok(())
    }

    async fn stream_sse(&mut self, n: u64, interval: Duration, head: &Head) -> Result<(), End> {
        let name = self.worker.name();
        let extra = [
            "transfer-encoding: chunked",
            "content-type: text/event-stream",
            "cache-control: no-cache",
        ];
        write_head(&mut self.out, 200, name, &extra, head.close);
        if head.head_only {
            return Ok(());
        }
        for i in 0..n {
            if i > 0 {
                self.pause(interval).await?;
            }
            let event = format!("id: {i}\ndata: {{\"seq\":{i}}}\n\n");
            self.out
                .extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
        }
        self.out.extend_from_slice(b"0\r\n\r\n");
        Ok(())
    }

    /// Injected reset: earlier answers go out, then the socket closes with a zero linger.
    async fn reset(&mut self) -> Result<(), End> {
        self.flush().await?;
        sys::set_linger_zero(self.stream.as_raw_fd())?;
        Err(End::Close)
    }

    /// Injected hang: earlier answers go out, then nothing more is ever answered on this
    /// connection; incoming bytes are discarded until the peer (or the server's stop) ends it.
    async fn hang(&mut self) -> Result<(), End> {
        self.flush().await?;
        loop {
            self.rbuf.clear();
            self.pos = 0;
            self.fill().await?;
        }
    }

    async fn refuse(&mut self, status: u16) -> Result<(), End> {
        let w = Rc::clone(&self.worker);
        self.push(w.responses.bad(status), true, false).await?;
        self.flush().await?;
        Err(End::Close)
    }
}
