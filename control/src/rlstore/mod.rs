//! [`RedisStore`]: the rate-limit [`Store`] shared by every node of a deployment, kept in Redis.
//!
//! A global limit needs one place that sees every node's spends. This module puts that place in
//! Redis and keeps the arithmetic in one Lua script (`SCRIPT`, which documents the key layout),
//! so each key of a node's tick is applied atomically, exactly as `LocalStore` (in
//! `ringgate_policies::ratelimit::store`) applies it in memory: same refill, debt cap, window
//! roll, lease resizing, reclaim of silent nodes, timing hints and expiry. `LocalStore` is the
//! reference; the differential test (`tools/tests/ratelimit_store.rs`) holds the two equal. (For
//! demands that are not whole numbers the sum of demands may round differently, the script
//! adding the nodes' demands in another order.)
//!
//! It runs on the reconciler's control thread, never on a core, so it uses plain blocking
//! connections, each bounded by a connect timeout and a read/write timeout. Any failure drops
//! the connection and answers [`StoreError::Unavailable`] (the reconciler then fails open or
//! closed per limit); the next sync reconnects, but only after a backoff (100 ms doubling to
//! 1 s, reset by a success), and while the backoff runs a sync fails at once without touching
//! the network, so a dead Redis costs the control thread nothing per tick. A sync that failed
//! part way may have applied some chunks already (a cluster, or a connection lost mid-reply).
//!
//! Keys are sent in chunks of at most 256 consecutive keys sharing one hash tag (so a chunk
//! lives in one cluster slot). Against a single Redis all chunks of a sync go in one pipeline of
//! `EVALSHA` (one round trip), the script being loaded again if Redis answers `NOSCRIPT` (e.g.
//! after a restart). Against a cluster each chunk is one `EVAL`, in turn.

mod script;
#[cfg(test)]
mod tests;
mod wire;

use script::{ARGS_PER_KEY, HEAD_ARGS, SCRIPT};
use wire::{chunk_ranges, is_noscript, parse_reply};

use redis::{Cmd, ConnectionLike, Value};
use ringgate_policies::ratelimit::store::{Algo, Store, StoreError, SyncItem, SyncResult};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The most keys one script call carries.
const MAX_CHUNK: usize = 256;

/// The first backoff after a failure; it doubles with each failure in a row.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Timeouts are never zero (a zero would mean "wait forever" to the socket layer).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Where the Redis store lives (`redis://` URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server (or a proxy in front of several).
    Single(String),
    /// A Redis Cluster, named by some of its nodes.
    Cluster(Vec<String>),
}

/// Whose clock the script uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Redis' own (`TIME`): nodes' clocks may disagree, the store's is the one that counts.
    Server,
    /// The `now_ms` passed to [`Store::sync`] (tests, for results comparable with
    /// `LocalStore`). It must not be 0, which tells the script to read `TIME`.
    Client,
}

/// How [`RedisStore`] talks to Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// The longest a connection attempt may take (TCP connect and handshake).
    pub connect_timeout: Duration,
    /// The longest a read or a write on an open connection may block.
    pub io_timeout: Duration,
    /// A node's lease and demand lapse after this long without a sync of the key, in ms.
    pub lease_ttl_ms: u64,
    /// Whose clock the script uses.
    pub clock: Clock,
}

/// An open connection.
enum Conn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

/// A [`Store`] kept in Redis (see the module documentation).
pub struct RedisStore {
    target: RedisTarget,
    opts: RedisOptions,
    script: redis::Script,
    conn: Option<Conn>,
    /// The next backoff to wait after a failure.
    backoff: Duration,
    /// While set and in the future, syncs fail without touching the network.
    retry_at: Option<Instant>,
    commands: u64,
    /// Scratch for formatting float arguments.
    num: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "target",
                &match &self.target {
                    RedisTarget::Single(url) => redact(url),
                    RedisTarget::Cluster(urls) => format!("cluster of {} nodes", urls.len()),
                },
            )
            .field("opts", &self.opts)
            .field("connected", &self.conn.is_some())
            .field("backoff", &self.backoff)
            .field("retry_at", &self.retry_at)
            .field("commands", &self.commands)
            .finish()
    }
}

impl RedisStore {
    /// A store for `target`; it connects on the first [`Store::sync`], not here.
    pub fn new(target: RedisTarget, opts: RedisOptions) -> Self {
        Self {
            target,
            opts,
            script: redis::Script::new(SCRIPT),
            conn: None,
            backoff: BACKOFF_MIN,
            retry_at: None,
            commands: 0,
            num: String::new(),
        }
    }

    /// Script calls (`EVALSHA`/`EVAL`, one per chunk, retries included) sent so far; `SCRIPT
    /// LOAD` and connection handshakes are not counted. For perf reports.
    pub fn commands_sent(&self) -> u64 {
        self.commands
    }

    fn io_timeout(&self) -> Duration {
        self.opts.io_timeout.max(MIN_TIMEOUT)
    }

    fn connect_timeout(&self) -> Duration {
        self.opts.connect_timeout.max(MIN_TIMEOUT)
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let io = Some(self.io_timeout());
        match &self.target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| unavailable(format_args!("bad Redis URL {}: {e}", redact(url))))?;
                let conn = client
                    .get_connection_with_timeout(self.connect_timeout())
                    .map_err(|e| unavailable(format_args!("connect to {}: {e}", redact(url))))?;
                conn.set_read_timeout(io)
                    .and_then(|()| conn.set_write_timeout(io))
                    .map_err(|e| unavailable(format_args!("set timeouts: {e}")))?;
                Ok(Conn::Single(conn))
            }
            RedisTarget::Cluster(urls) => {
                let client =
                    redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                        .connection_timeout(self.connect_timeout())
                        .response_timeout(self.io_timeout())
                        // A redirect or two, quickly; a dead cluster must not stall the tick.
                        .retries(2)
                        .min_retry_wait(10)
                        .max_retry_wait(100)
                        .build()
                        .map_err(|e| unavailable(format_args!("bad Redis Cluster nodes: {e}")))?;
                let conn = client
                    .get_connection()
                    .map_err(|e| unavailable(format_args!("connect to Redis Cluster: {e}")))?;
                conn.set_read_timeout(io)
                    .and_then(|()| conn.set_write_timeout(io))
                    .map_err(|e| unavailable(format_args!("set timeouts: {e}")))?;
                Ok(Conn::Cluster(Box::new(conn)))
            }
        }
    }

    /// The script call for `items` (one chunk), by SHA (`EVALSHA`) or by source (`EVAL`).
    fn chunk_cmd(&mut self, by_sha: bool, node: &str, now_ms: u64, items: &[SyncItem]) -> Cmd {
        // The verb, the script (or its SHA), the key count, then keys and arguments.
        let args = 3 + items.len() * (1 + ARGS_PER_KEY) + HEAD_ARGS;
        let mut cmd = Cmd::with_capacity(args, 64 + items.len() * 64);
        if by_sha {
            cmd.arg("EVALSHA").arg(self.script.get_hash());
        } else {
            cmd.arg("EVAL").arg(SCRIPT);
        }
        cmd.arg(items.len());
        for it in items {
            cmd.arg(&*it.key);
        }
        let now = match self.opts.clock {
            Clock::Server => 0,
            Clock::Client => now_ms,
        };
        cmd.arg(node).arg(now).arg(self.opts.lease_ttl_ms);
        for it in items {
            let (kind, p1, p2) = match it.algo {
                Algo::TokenBucket { rate, burst } => (1u8, rate, Param::F(burst)),
                Algo::SlidingWindow { limit, window_ms } => (2u8, limit, Param::U(window_ms)),
            };
            cmd.arg(kind);
            self.arg_f64(&mut cmd, p1);
            match p2 {
                Param::F(x) => self.arg_f64(&mut cmd, x),
                Param::U(x) => {
                    cmd.arg(x);
                }
            }
            cmd.arg(it.spent).arg(it.provisional).arg(it.want);
            self.arg_f64(&mut cmd, it.demand);
            cmd.arg(it.epoch).arg(it.total);
        }
        cmd
    }

    /// Adds `x` in a form Lua's `tonumber` reads back to the same `f64` (shortest round-trip).
    fn arg_f64(&mut self, cmd: &mut Cmd, x: f64) {
        self.num.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.num, "{x:e}");
        cmd.arg(self.num.as_str());
    }

    /// One attempt over `conn`: the script replies, one per chunk, in order.
    fn exchange(
        &mut self,
        conn: &mut Conn,
        node: &str,
        now_ms: u64,
        items: &[SyncItem],
        chunks: &[(usize, usize)],
    ) -> Result<Vec<Value>, StoreError> {
        match conn {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for &(s, e) in chunks {
                    pipe.add_command(self.chunk_cmd(true, node, now_ms, &items[s..e]));
                }
                self.commands += chunks.len() as u64;
                let mut replies = c
                    .req_packed_commands(&pipe.get_packed_pipeline(), 0, chunks.len())
                    .map_err(|e| unavailable(format_args!("EVALSHA: {e}")))?;
                if replies.len() != chunks.len() {
                    return Err(StoreError::Protocol(format!(
                        "{} replies to {} commands",
                        replies.len(),
                        chunks.len()
                    )));
                }
                let missing: Vec<usize> = replies
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| is_noscript(v))
                    .map(|(i, _)| i)
                    .collect();
                if !missing.is_empty() {
                    // Redis lost its script cache (restart, SCRIPT FLUSH): load it and send only
                    // the chunks that were refused (the others were applied already).
                    let sha: String = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(SCRIPT)
                        .query(c)
                        .map_err(|e| unavailable(format_args!("SCRIPT LOAD: {e}")))?;
                    if sha != self.script.get_hash() {
                        return Err(StoreError::Protocol(format!(
                            "SCRIPT LOAD answered {sha}, expected {}",
                            self.script.get_hash()
                        )));
                    }
                    let mut again = redis::pipe();
                    for &i in &missing {
                        let (s, e) = chunks[i];
                        again.add_command(self.chunk_cmd(true, node, now_ms, &items[s..e]));
                    }
                    self.commands += missing.len() as u64;
                    let retried = c
                        .req_packed_commands(&again.get_packed_pipeline(), 0, missing.len())
                        .map_err(|e| unavailable(format_args!("EVALSHA: {e}")))?;
                    if retried.len() != missing.len() {
                        return Err(StoreError::Protocol(format!(
                            "{} replies to {} commands",
                            retried.len(),
                            missing.len()
                        )));
                    }
                    for (i, v) in missing.into_iter().zip(retried) {
                        replies[i] = v;
                    }
                }
                Ok(replies)
            }
            Conn::Cluster(c) => {
                let mut replies = Vec::with_capacity(chunks.len());
                for &(s, e) in chunks {
                    let cmd = self.chunk_cmd(false, node, now_ms, &items[s..e]);
                    self.commands += 1;
                    let v: Value = cmd
                        .query(&mut **c)
                        .map_err(|e| unavailable(format_args!("EVAL: {e}")))?;
                    replies.push(v);
                }
                Ok(replies)
            }
        }
    }

    fn fail(&mut self, err: StoreError) -> StoreError {
        self.conn = None;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        err
    }
}

/// A float parameter, or an integer one (a window length).
enum Param {
    F(f64),
    U(u64),
}

fn unavailable(msg: std::fmt::Arguments<'_>) -> StoreError {
    StoreError::Unavailable(msg.to_string())
}

/// `url` without its credentials (`redis://user:secret@host` -> `redis://***@host`), for
/// messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Store for RedisStore {
    fn sync(
        &mut self,
        node: &str,
        now_ms: u64,
        items: &[SyncItem],
        out: &mut Vec<SyncResult>,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        if let Some(at) = self.retry_at {
            let now = Instant::now();
            if now < at {
                return Err(StoreError::Unavailable(format!(
                    "backing off for {} ms after a failure",
                    at.duration_since(now).as_millis()
                )));
            }
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => return Err(self.fail(e)),
            },
        };
        let mut chunks = Vec::new();
        chunk_ranges(items, &mut chunks);
        let replies = match self.exchange(&mut conn, node, now_ms, items, &chunks) {
            Ok(r) => r,
            Err(e) => return Err(self.fail(e)),
        };
        let mark = out.len();
        for (v, &(s, e)) in replies.into_iter().zip(&chunks) {
            if let Err(err) = parse_reply(v, e - s, out) {
                out.truncate(mark);
                return Err(self.fail(err));
            }
        }
        self.conn = Some(conn);
        self.backoff = BACKOFF_MIN;
        self.retry_at = None;
        Ok(())
    }

    fn probe(&mut self) -> Result<(), StoreError> {
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return Err(StoreError::Unavailable(
                    "backing off after a failure".into(),
                ));
            }
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => return Err(self.fail(e)),
            },
        };
        let pong: Result<String, redis::RedisError> = match &mut conn {
            Conn::Single(c) => redis::cmd("PING").query(c),
            Conn::Cluster(c) => redis::cmd("PING").query(&mut **c),
        };
        match pong {
            Ok(_) => {
                self.conn = Some(conn);
                self.backoff = BACKOFF_MIN;
                self.retry_at = None;
                Ok(())
            }
            Err(e) => Err(self.fail(unavailable(format_args!("PING: {e}")))),
        }
    }
}
