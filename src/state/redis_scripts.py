"""The Lua scripts behind the Redis backend, and the layout of its keys.

A client's keys all carry its hash tag ``{<tag>}`` (``redis_store.slot_tag``),
so in a Redis Cluster they share one hash slot and every script runs on one
node. With ``L = <prefix>rl:{<tag>}`` and ``S = <prefix>spend:{<tag>}``:

- ``L:req``, a sorted set (``sliding_log``): one member per admission in the
  last minute, scored by its time in microseconds of the Redis server's clock;
- ``L:tok``, a hash (``sliding_log`` with a token limit): each member's
  reserved or reconciled tokens, and ``total``;
- ``L:gcra``, a hash (``gcra``): ``r`` the request TAT in cells of ``rl``
  (the requests per minute it was counted in), ``t`` and ``tl`` the same for
  tokens (``limiter.gcra`` explains the arithmetic);
- ``S:m:<YYYY-MM>``, a hash: ``month`` the USD charged that UTC month and
  ``d:<day>`` (days since the epoch) each day's, the estimates of requests in
  flight included (charged at admission, corrected at settlement); it
  expires 32 days after the last charge;
- ``S:holds``, a sorted set: ``<hold id>:<estimate>`` of each request in
  flight, scored by when it was taken. A hold older than an hour leaves it
  (its gateway died), its estimate staying charged.

The limiter's keys expire when the last admission has left the window (the
GCRA key when both TATs have passed). Every script reads the server's
``TIME`` once, so replicas' clocks never matter.

Every script that touches one client first applies the settlements its
caller hands it (``ARGV`` from index ``first``: a count, then six values
each): ``l member used`` (a sliding-log reservation reconciled), ``g delta
tpm`` (a GCRA token TAT moved by ``delta`` tokens), ``s id estimate cost month
day`` (a hold settled at ``cost``).
"""

from __future__ import annotations

from .redis_store import Script

_COMMON = """
local function int(x) return string.format('%d', x) end
local function num(x) return string.format('%.17g', x) end
local T = redis.call('TIME')
local SECS = tonumber(T[1])
local NOW_US = SECS * 1000000 + tonumber(T[2])
-- GCRA's clock: seconds since 2023-11-14, so that time x limit stays exact in a double
local NOW_G = (SECS - 1700000000) + tonumber(T[2]) / 1000000
local EPS = 0.001
"""

_SLIDING_LOG = """
local function log_expire(req, tok, horizon, tracks_tokens)
  if tracks_tokens then
    local gone = redis.call('ZRANGEBYSCORE', req, '-inf', int(horizon))
    local freed = 0
    for i = 1, #gone, 500 do
      local page = {unpack(gone, i, math.min(i + 499, #gone))}
      local amounts = redis.call('HMGET', tok, unpack(page))
      for j = 1, #amounts do
        if amounts[j] then freed = freed + tonumber(amounts[j]) end
      end
      redis.call('HDEL', tok, unpack(page))
    end
    if freed ~= 0 then redis.call('HINCRBY', tok, 'total', -freed) end
  end
  redis.call('ZREMRANGEBYSCORE', req, '-inf', int(horizon))
end
local function log_reserved(tok, tpm)
  if tpm < 0 then return 0 end
  return tonumber(redis.call('HGET', tok, 'total') or '0')
end
local function log_quota(req, rpm, tpm, reserved)
  local left_tokens = -1
  if tpm >= 0 then left_tokens = math.max(0, tpm - reserved) end
  return math.max(0, rpm - redis.call('ZCARD', req)), left_tokens
end
local function log_token_wait(req, tok, reserved, tokens, tpm, window)
  if tokens > tpm then return window end
  local need, count = reserved + tokens - tpm, redis.call('ZCARD', req)
  for start = 0, count - 1, 500 do
    local page = redis.call('ZRANGE', req, start, start + 499, 'WITHSCORES')
    local members = {}
    for i = 1, #page, 2 do members[#members + 1] = page[i] end
    local amounts = redis.call('HMGET', tok, unpack(members))
    for i = 1, #members do
      need = need - tonumber(amounts[i] or '0')
      if need <= 0 then return tonumber(page[2 * i]) + window - NOW_US end
    end
  end
  return window
end
-- {admitted 0/1, remaining requests, remaining tokens (-1: none), exceeded 0/1/2, wait µs}
local function log_admit(base, member, rpm, tpm, tokens)
  local req, tok, window = base .. ':req', base .. ':tok', 60000000
  log_expire(req, tok, NOW_US - window, tpm >= 0)
  local reserved = log_reserved(tok, tpm)
  local left_requests, left_tokens = log_quota(req, rpm, tpm, reserved)
  if left_requests <= 0 then
    local oldest = redis.call('ZRANGE', req, 0, 0, 'WITHSCORES')
    return {0, 0, left_tokens, 1, tonumber(oldest[2]) + window - NOW_US}
  end
  if tpm >= 0 and reserved + tokens > tpm then
    return {0, left_requests, left_tokens, 2,
      log_token_wait(req, tok, reserved, tokens, tpm, window)}
  end
  redis.call('ZADD', req, int(NOW_US), member)
  redis.call('PEXPIRE', req, 61000)
  if tpm >= 0 then
    redis.call('HSET', tok, member, tokens)
    redis.call('HINCRBY', tok, 'total', tokens)
    redis.call('PEXPIRE', tok, 61000)
    left_tokens = math.max(0, tpm - reserved - tokens)
  end
  return {1, left_requests - 1, left_tokens, 0, 0}
end
local function log_peek(base, rpm, tpm)
  local req, tok = base .. ':req', base .. ':tok'
  log_expire(req, tok, NOW_US - 60000000, tpm >= 0)
  return log_quota(req, rpm, tpm, log_reserved(tok, tpm))
end
local function log_reconcile(base, member, used)
  local tok = base .. ':tok'
  local reserved = redis.call('HGET', tok, member)
  if not reserved then return end
  redis.call('HSET', tok, member, used)
  redis.call('HINCRBY', tok, 'total', tonumber(used) - tonumber(reserved))
end
"""

_GCRA = """
-- max(TAT, now) and now, in cells of `limit`; a TAT counted in another limit `was`
-- carries over the cells it still owes
local function cell(tat, was, limit)
  local now = NOW_G * limit / 60
  if not tat then return now, now end
  tat, was = tonumber(tat), tonumber(was)
  if was ~= limit then return now + math.max(0, tat - NOW_G * was / 60), now end
  return math.max(tat, now), now
end
local function left(limit, debt) return math.max(0, math.floor(limit - debt + EPS)) end
local function gcra_admit(key, rpm, tpm, tokens)
  local v = redis.call('HMGET', key, 'r', 'rl', 't', 'tl')
  local rbase, rnow = cell(v[1], v[2], rpm)
  local tbase, tnow, left_tokens = 0, 0, -1
  if tpm >= 0 then
    tbase, tnow = cell(v[3], v[4], tpm)
    left_tokens = left(tpm, tbase - tnow)
  end
  local over = rbase + 1 - rnow - rpm
  if over > EPS then return {0, left(rpm, rbase - rnow), left_tokens, 1, over * 60000000 / rpm} end
  if tpm >= 0 then
    over = tbase + tokens - tnow - tpm
    if over > EPS then
      return {0, left(rpm, rbase - rnow), left_tokens, 2, over * 60000000 / tpm}
    end
  end
  local ttl = (rbase + 1 - rnow) * 60000 / rpm
  if tpm >= 0 then
    redis.call('HSET', key, 'r', num(rbase + 1), 'rl', rpm, 't', num(tbase + tokens), 'tl', tpm)
    ttl = math.max(ttl, (tbase + tokens - tnow) * 60000 / tpm)
    left_tokens = left(tpm, tbase + tokens - tnow)
  else
    redis.call('HSET', key, 'r', num(rbase + 1), 'rl', rpm)
  end
  redis.call('PEXPIRE', key, int(math.ceil(ttl) + 1000))
  return {1, left(rpm, rbase + 1 - rnow), left_tokens, 0, 0}
end
local function gcra_peek(key, rpm, tpm)
  local v = redis.call('HMGET', key, 'r', 'rl', 't', 'tl')
  local rbase, rnow = cell(v[1], v[2], rpm)
  local left_tokens = -1
  if tpm >= 0 then
    local tbase, tnow = cell(v[3], v[4], tpm)
    left_tokens = left(tpm, tbase - tnow)
  end
  return left(rpm, rbase - rnow), left_tokens
end
-- move the token TAT by `delta` tokens, never before now (`tpm`: the limit, if none is stored)
local function gcra_reconcile(key, delta, tpm)
  local v = redis.call('HMGET', key, 't', 'tl')
  local limit = tonumber(v[2]) or tpm
  local base, now = cell(v[1], v[2], limit)
  local tat = math.max(base + delta, now)
  if tat <= now and not v[1] then return end
  redis.call('HSET', key, 't', num(tat), 'tl', limit)
  local ttl = math.ceil((tat - now) * 60000 / limit) + 1000
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
"""

_SPEND = """
local HOLD_MAX_S = 3600
-- the month's key suffix and the day's field: ('2026-12', 'd:20792')
local function period()
  local days = math.floor(SECS / 86400)
  -- civil date of a day number (H. Hinnant's days_from_civil, inverted)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d', year, month), 'd:' .. int(days)
end
-- the estimates of the requests in flight (members are '<hold id>:<estimate>')
local function held(base)
  local total = 0
  for _, hold in ipairs(redis.call('ZRANGE', base .. ':holds', 0, -1)) do
    total = total + tonumber(string.match(hold, ':([^:]*)$'))
  end
  return total
end
-- {exceeded ('', 'd', 'm'), day spend, month spend, month, day}; estimates in flight included
local function spend_read(base, per_day, per_month)
  local month, day = period()
  -- holds a dead gateway left leave the in-flight figure; their estimates stay charged
  redis.call('ZREMRANGEBYSCORE', base .. ':holds', '-inf', SECS - HOLD_MAX_S)
  local v = redis.call('HMGET', base .. ':m:' .. month, day, 'month')
  local d, m = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  local over = ''
  if per_day >= 0 and d >= per_day then over = 'd'
  elseif per_month >= 0 and m >= per_month then over = 'm' end
  return {over, d, m, month, day}
end
local function charge(base, month, day, usd)
  local key = base .. ':m:' .. month
  redis.call('HINCRBYFLOAT', key, day, usd)
  redis.call('HINCRBYFLOAT', key, 'month', usd)
  redis.call('EXPIRE', key, 32 * 86400)
end
local function spend_hold(base, id, estimate, month, day)
  if tonumber(estimate) <= 0 then return 0 end
  charge(base, month, day, estimate)
  redis.call('ZADD', base .. ':holds', SECS, id .. ':' .. estimate)
  redis.call('EXPIRE', base .. ':holds', HOLD_MAX_S)
  return tonumber(estimate)
end
local function spend_settle(base, id, estimate, cost, month, day)
  local delta = tonumber(cost) - tonumber(estimate)
  if delta ~= 0 then charge(base, month, day, num(delta)) end
  if tonumber(estimate) > 0 then redis.call('ZREM', base .. ':holds', id .. ':' .. estimate) end
end
"""

_SETTLE = """
local function settle(limits, spend, first)
  for at = first + 1, first + tonumber(ARGV[first]) * 6, 6 do
    local kind = ARGV[at]
    if kind == 'l' then
      log_reconcile(limits, ARGV[at + 1], ARGV[at + 2])
    elseif kind == 'g' then
      gcra_reconcile(limits .. ':gcra', tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]))
    else
      spend_settle(spend, ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5])
    end
  end
end
"""

_LIBRARY = _COMMON + _SLIDING_LOG + _GCRA + _SPEND + _SETTLE

# KEYS: L, S. ARGV: algorithm ('' no limits, 'sliding_log', 'gcra'), rpm, tpm (-1: none),
# tokens, member, hold id ('' no budget step), estimate, usd_per_day, usd_per_month (-1: none),
# then settlements. Reply: {1 admitted / 0 over a limit / 2 over budget, remaining requests,
# remaining tokens, exceeded (1 requests, 2 tokens), wait µs, budget exceeded ('', 'd', 'm'),
# day spend, month spend, held (with a budget refusal only), month, day}.
ADMIT = Script.of(
    "admit",
    _LIBRARY
    + """
settle(KEYS[1], KEYS[2], 10)
local reply = {1, 0, -1, 0, 0, '', '0', '0', '0', '', ''}
local spend
if ARGV[6] ~= '' then
  spend = spend_read(KEYS[2], tonumber(ARGV[8]), tonumber(ARGV[9]))
  reply[6], reply[7], reply[8] = spend[1], num(spend[2]), num(spend[3])
  reply[10], reply[11] = spend[4], spend[5]
  if spend[1] ~= '' then
    reply[1], reply[9] = 2, num(held(KEYS[2]))
    return reply
  end
end
if ARGV[1] ~= '' then
  local rpm, tpm, tokens = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local limit
  if ARGV[1] == 'gcra' then
    limit = gcra_admit(KEYS[1] .. ':gcra', rpm, tpm, tokens)
  else
    limit = log_admit(KEYS[1], ARGV[5], rpm, tpm, tokens)
  end
  for i = 1, 5 do reply[i] = limit[i] end
  if limit[1] == 0 then return reply end
end
if spend then
  local usd = spend_hold(KEYS[2], ARGV[6], ARGV[7], spend[4], spend[5])
  reply[7], reply[8] = num(spend[2] + usd), num(spend[3] + usd)
end
return reply
""",
)

# KEYS: L, S. ARGV: settlements.
SETTLE = Script.of("settle", _LIBRARY + "\nsettle(KEYS[1], KEYS[2], 1)\nreturn 1\n")

# KEYS: L, S. ARGV: algorithm, rpm, tpm (-1: none), then settlements.
# Reply: {remaining requests, remaining tokens (-1: none)}.
PEEK = Script.of(
    "peek",
    _LIBRARY
    + """
settle(KEYS[1], KEYS[2], 4)
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[1] == 'gcra' then return {gcra_peek(KEYS[1] .. ':gcra', rpm, tpm)} end
return {log_peek(KEYS[1], rpm, tpm)}
""",
)

# KEYS: L, S. ARGV: settlements. Reply: {day spend, month spend, held}, holds included.
SPENT = Script.of(
    "spend_read",
    _LIBRARY
    + """
settle(KEYS[1], KEYS[2], 1)
local spend = spend_read(KEYS[2], -1, -1)
return {num(spend[2]), num(spend[3]), num(held(KEYS[2]))}
""",
)

SCRIPTS = (ADMIT, SETTLE, PEEK, SPENT)
