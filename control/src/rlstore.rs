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

use redis::{Cmd, ConnectionLike, ServerErrorKind, Value};
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
/// Script arguments before the per-key ones: node, now_ms, lease_ttl_ms.
const HEAD_ARGS: usize = 3;
/// Script arguments per key: kind, rate|limit, burst|window_ms, spent, provisional, want, demand,
/// epoch, total.
const ARGS_PER_KEY: usize = 9;
/// Integers the script returns per key: lease, free, nodes, retry_ms, reset_ms, share_ppm.
const REPLY_PER_KEY: usize = 6;

/// The store script. Per key, one hash:
///
/// - `i`: `1` once the capacity fields were set (a key is created on first sync);
/// - `tk`, `ts`: token bucket tokens (may be negative: debt) and time of the last refill;
/// - `ws`, `cw`, `pw`: sliding window start, current window count, previous window count;
/// - `ex`: when the key stops mattering, on the script's clock (it is reset from then on; the
///   key also carries a `PEXPIRE` of the same length so Redis drops it by itself);
/// - `l:<node>`, `d:<node>`, `t:<node>`: each live node's lease, demand and last sync time;
/// - `e:<node>`, `a:<node>`: the epoch and the total of the node's spends applied so far (a
///   resent sync is debited only beyond it; see `SyncItem::total`).
///
/// Floats are kept as `%.17g` text, which reads back to the same `f64`. `ARGV` is node, now_ms
/// (0: use Redis' `TIME`), lease_ttl_ms, then per key: kind (1 bucket, 2 window), rate|limit,
/// burst|window_ms, spent, provisional, want, demand, epoch (compared as text), total. The reply is six numbers per key: lease,
/// free, nodes, retry_ms, reset_ms, share_ppm; a number outside the 64-bit range (only absurd limits make
/// one) comes back as its `%.17g` text, for the caller to cast as `LocalStore` would.
const SCRIPT: &str = r#"
local node = ARGV[1]
local now = tonumber(ARGV[2])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local ttl = tonumber(ARGV[3])
local MINPOS = 2.2250738585072014e-308
local TWO63 = 9223372036854775808
local MAXPEXP = 70368744177664

-- f64::max / f64::min: a NaN loses to the other operand.
local function fmax(a, b)
  if a ~= a then return b end
  if b ~= b then return a end
  if b > a then return b end
  return a
end
local function fmin(a, b)
  if a ~= a then return b end
  if b ~= b then return a end
  if b < a then return b end
  return a
end
-- `as u64` on a float, before saturation: NaN and negatives are 0.
local function u64(x)
  if x ~= x or x <= 0 then return 0 end
  return x
end
local function fmt(x) return string.format('%.17g', x) end
local function reply_i64(x)
  if x ~= x then return 0 end
  if x >= -TWO63 and x < TWO63 then return x end
  return fmt(x)
end
local function reply_u64(x)
  if x ~= x or x <= 0 then return 0 end
  if x < TWO63 then return x end
  return fmt(x)
end

local out = {}
local a = 4
for i = 1, #KEYS do
  local key = KEYS[i]
  local kind = tonumber(ARGV[a])
  local p1 = tonumber(ARGV[a + 1])
  local p2 = tonumber(ARGV[a + 2])
  local spent = tonumber(ARGV[a + 3])
  local prov = tonumber(ARGV[a + 4])
  local want = tonumber(ARGV[a + 5])
  local demand = tonumber(ARGV[a + 6])
  local epoch = ARGV[a + 7]
  local mark = tonumber(ARGV[a + 8])
  a = a + 9

  local raw = redis.call('HGETALL', key)
  local f = {}
  for j = 1, #raw, 2 do f[raw[j]] = raw[j + 1] end
  local ex = tonumber(f['ex'] or '0')
  if ex ~= 0 and ex <= now then
    redis.call('DEL', key)
    f = {}
  end
  local init = f['i'] == '1'
  local tk = tonumber(f['tk'] or '0')
  local ts = tonumber(f['ts'] or '0')
  local ws = tonumber(f['ws'] or '0')
  local cw = tonumber(f['cw'] or '0')
  local pw = tonumber(f['pw'] or '0')

  -- Live nodes; silent ones (no sync for ttl) are reclaimed.
  local leases, demands = {}, {}
  local drop = {}
  for field, v in pairs(f) do
    if string.sub(field, 1, 2) == 't:' then
      local n = string.sub(field, 3)
      if tonumber(v) + ttl > now then
        leases[n] = tonumber(f['l:' .. n] or '0')
        demands[n] = tonumber(f['d:' .. n] or '0')
      else
        drop[#drop + 1] = 'l:' .. n
        drop[#drop + 1] = 'd:' .. n
        drop[#drop + 1] = 'e:' .. n
        drop[#drop + 1] = 'a:' .. n
        drop[#drop + 1] = field
      end
    end
  end

  -- Spends this node's earlier syncs already brought (a resend after a lost answer) are not
  -- debited again; they were replayed, so provisional.
  if leases[node] ~= nil and epoch ~= '0' and f['e:' .. node] == epoch then
    local applied = tonumber(f['a:' .. node] or '0')
    if mark >= applied then
      local fresh = math.min(spent, mark - applied)
      prov = prov - (spent - fresh)
      if prov < 0 then prov = 0 end
      spent = fresh
    end
  end

  -- The capacity: refill, then debit what was spent.
  local capacity
  if kind == 1 then
    local rate, burst = p1, p2
    if not init then
      tk = burst
      ts = now
      init = true
    end
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end
    tk = fmin(tk + rate * elapsed / 1000, burst)
    if now > ts then ts = now end
    tk = fmax(tk - spent, -burst)
    capacity = tk
  else
    local limit = p1
    local w = p2
    if w < 1 then w = 1 end
    local start = now - math.fmod(now, w)
    if not init then
      ws = start
      cw = 0
      pw = 0
      init = true
    end
    if start ~= ws then
      if start == ws + w then pw = cw else pw = 0 end
      cw = 0
      ws = start
    end
    cw = fmin(cw + spent, 2 * limit)
    local weight = 1 - (now - start) / w
    capacity = limit - (pw * weight + cw)
  end

  -- This node's share: its lease shrinks by what it spent out of it.
  local since = ttl
  if leases[node] == nil then
    leases[node] = 0
    demands[node] = 0
  else
    since = now - tonumber(f['t:' .. node])
    if since < 0 then since = 0 end
    if since > ttl then since = ttl end
  end
  local from_lease = spent - prov
  if from_lease < 0 then from_lease = 0 end
  local lease = leases[node] - from_lease
  if lease < 0 then lease = 0 end
  local dem = fmax(demand, 0)
  demands[node] = dem
  local others, total, count = 0, 0, 0
  for n, l in pairs(leases) do
    count = count + 1
    if n ~= node then others = others + l end
    total = total + demands[n]
  end
  local share = 1
  if total > 0 then share = dem / total end
  -- Contended: each node's allowance is its share of what refills over its own interval.
  local fair = nil
  if count > 1 and want > fmax(capacity, 0) * share then
    local rate = p1
    if kind ~= 1 then
      local w = p2
      if w < 1 then w = 1 end
      rate = p1 * 1000 / w
    end
    fair = math.ceil(share * rate * since / 1000 * 2)
  end
  local target
  if fair ~= nil then
    target = fmin(fmin(want, fair), math.floor(fmax(capacity - others, 0)))
  else
    target = fmin(want, math.floor(fmax(capacity, 0) * share))
  end
  if target ~= target then target = 0 end
  if fair ~= nil then
    lease = target
  elseif target > lease then
    local unleased = math.floor(capacity - others - lease)
    if unleased ~= unleased then unleased = 0 end
    lease = lease + math.min(target - lease, fmax(unleased, 0))
  else
    lease = target
  end
  local removed = lease == 0 and demand <= 0
  if removed then
    count = count - 1
    drop[#drop + 1] = 'l:' .. node
    drop[#drop + 1] = 'd:' .. node
    drop[#drop + 1] = 't:' .. node
    drop[#drop + 1] = 'e:' .. node
    drop[#drop + 1] = 'a:' .. node
  end
  local free = capacity - others - lease
  local nodes = count
  if nodes < 1 then nodes = 1 end

  -- Milliseconds until one token is free, and until the quota is whole again.
  local retry, reset, idle
  if kind == 1 then
    local per_ms = fmax(p1, MINPOS) / 1000
    local r = 0
    if not (free >= 1) then r = (1 - free) / per_ms end
    retry = math.ceil(r)
    reset = math.ceil(fmax(p2 - capacity, 0) / per_ms)
    idle = u64(math.ceil(2 * p2 / fmax(p1, MINPOS) * 1000))
  else
    local limit = p1
    local w = p2
    if w < 1 then w = 1 end
    local to_end = ws + w - now
    if to_end < 0 then to_end = 0 end
    if free >= 1 then
      retry = 0
    elseif pw > 0 then
      local ms = u64(math.ceil((1 - free) / (pw / w)))
      local bound = to_end
      if cw >= limit then bound = to_end + w end
      retry = math.min(ms, bound)
    else
      retry = to_end
    end
    if cw > 0 then reset = to_end + w else reset = to_end end
    idle = 2 * p2
  end

  local keep = idle + ttl
  ex = now + keep
  -- Drop first: a reclaimed node may be this one, whose fields are written anew below.
  if #drop > 0 then redis.call('HDEL', key, unpack(drop)) end
  if removed then
    redis.call('HSET', key, 'i', '1', 'tk', fmt(tk), 'ts', fmt(ts), 'ws', fmt(ws),
      'cw', fmt(cw), 'pw', fmt(pw), 'ex', fmt(ex))
  else
    redis.call('HSET', key, 'i', '1', 'tk', fmt(tk), 'ts', fmt(ts), 'ws', fmt(ws),
      'cw', fmt(cw), 'pw', fmt(pw), 'ex', fmt(ex),
      'l:' .. node, fmt(lease), 'd:' .. node, fmt(dem), 't:' .. node, fmt(now),
      'e:' .. node, epoch, 'a:' .. node, fmt(mark))
  end
  if not (keep >= 1) then keep = 1 end
  if keep > MAXPEXP then keep = MAXPEXP end
  redis.call('PEXPIRE', key, fmt(keep))

  out[#out + 1] = reply_i64(lease)
  local given = math.floor(free)
  if fair ~= nil then given = fmin(given, fmax(fair - lease, 0) * nodes) end
  out[#out + 1] = reply_i64(given)
  out[#out + 1] = nodes
  out[#out + 1] = reply_u64(retry)
  out[#out + 1] = reply_u64(reset)
  out[#out + 1] = math.floor(share * 1000000)
end
return out
"#;

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

fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}

/// The slot-deciding part of a key (Redis Cluster's rule): the text between the first `{` and
/// the first `}` after it when not empty, else the whole key.
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.find('}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// Splits `items` into runs of consecutive items with the same hash tag, at most [`MAX_CHUNK`]
/// long, as (start, end) ranges.
fn chunk_ranges(items: &[SyncItem], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut start = 0;
    for i in 1..=items.len() {
        let cut = i == items.len()
            || i - start == MAX_CHUNK
            || hash_tag(&items[i].key) != hash_tag(&items[start].key);
        if cut {
            out.push((start, i));
            start = i;
        }
    }
}

/// Reads one chunk's reply into `out`.
fn parse_reply(v: Value, expect: usize, out: &mut Vec<SyncResult>) -> Result<(), StoreError> {
    let vals = match v {
        Value::Array(vals) => vals,
        Value::ServerError(e) => return Err(unavailable(format_args!("script: {e}"))),
        other => {
            return Err(StoreError::Protocol(format!(
                "script answered {other:?}, not an array"
            )))
        }
    };
    if vals.len() != expect * REPLY_PER_KEY {
        return Err(StoreError::Protocol(format!(
            "script answered {} numbers for {expect} keys",
            vals.len()
        )));
    }
    let mut it = vals.iter();
    while let (Some(lease), Some(free), Some(nodes), Some(retry), Some(reset), Some(share)) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) {
        out.push(SyncResult {
            lease: as_i64(lease)?,
            free: as_i64(free)?,
            nodes: u32::try_from(as_i64(nodes)?.max(0)).unwrap_or(u32::MAX),
            retry_ms: as_u64(retry)?,
            reset_ms: as_u64(reset)?,
            share_ppm: u32::try_from(as_i64(share)?.clamp(0, 1_000_000)).unwrap_or(1_000_000),
        });
    }
    Ok(())
}

/// A reply number: an integer, or a float as text (cast as `LocalStore` casts).
fn reply_f64(v: &Value) -> Result<f64, StoreError> {
    let text = match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s.as_str()),
        Value::Double(d) => return Ok(*d),
        _ => None,
    };
    text.and_then(|t| t.trim().parse::<f64>().ok())
        .ok_or_else(|| StoreError::Protocol(format!("script answered {v:?}, not a number")))
}

fn as_i64(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Ok(reply_f64(other)? as i64),
    }
}

fn as_u64(v: &Value) -> Result<u64, StoreError> {
    match v {
        Value::Int(i) => Ok(u64::try_from(*i).unwrap_or(0)),
        other => Ok(reply_f64(other)? as u64),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str) -> SyncItem {
        SyncItem {
            key: key.into(),
            algo: Algo::TokenBucket {
                rate: 1.0,
                burst: 1.0,
            },
            spent: 0,
            provisional: 0,
            want: 0,
            demand: 0.0,
            epoch: 0,
            total: 0,
        }
    }

    #[test]
    fn the_store_can_move_to_the_reconciler_thread() {
        fn send<T: Send>() {}
        send::<RedisStore>();
    }

    #[test]
    fn credentials_stay_out_of_messages() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1/"), "redis://h:1/");
    }

    #[test]
    fn hash_tags_follow_the_cluster_rule() {
        assert_eq!(hash_tag("{rl:a}:x"), "rl:a");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("{}x"), "{}x");
        assert_eq!(hash_tag("a}b{c}d"), "c");
        assert_eq!(hash_tag("x{open"), "x{open");
    }

    #[test]
    fn chunks_split_on_tag_changes_and_size() {
        let mut items: Vec<SyncItem> = (0..300).map(|i| item(&format!("{{a}}:{i}"))).collect();
        items.push(item("{b}:1"));
        items.push(item("{a}:1"));
        let mut ranges = Vec::new();
        chunk_ranges(&items, &mut ranges);
        assert_eq!(ranges, vec![(0, 256), (256, 300), (300, 301), (301, 302)]);
        chunk_ranges(&[], &mut ranges);
        assert!(ranges.is_empty());
    }
}
