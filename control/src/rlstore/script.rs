//! The store's Lua script, which does all the arithmetic in Redis, and the layout of its
//! arguments and reply. Kept apart because it is long and is read on its own, against
//! `LocalStore`.

/// Script arguments before the per-key ones: node, now_ms, lease_ttl_ms.
pub(super) const HEAD_ARGS: usize = 3;
/// Script arguments per key: kind, rate|limit, burst|window_ms, spent, provisional, want, demand,
/// epoch, total.
pub(super) const ARGS_PER_KEY: usize = 9;
/// Integers the script returns per key: lease, free, nodes, retry_ms, reset_ms, share_ppm.
pub(super) const REPLY_PER_KEY: usize = 6;

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
pub(super) const SCRIPT: &str = r#"
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
