"""The shared limiter: the memory backend's algorithm, kept in Redis for every replica.

Per client two keys (``<prefix>rl:<client_id>:req`` and ``:tok``):

- ``req``, a sorted set: one member per admitted request in the window, scored
  by its admission time in microseconds of the Redis server's clock (``TIME``,
  so replicas' clocks do not matter);
- ``tok``, a hash (only with a token limit): the same member → its reserved or
  reconciled tokens, and ``total`` → their sum.

Each operation is one Lua script, so a check and its count are one atomic
step on the server. Both keys get a TTL of the window (plus a second) on
every admission, and every member is older than the newest one, so an idle
client's keys vanish a minute after its last request.

Redis down: ``on_error`` ``fail_open`` admits (nothing counted, quota shown
whole); ``fail_closed`` refuses with ``exceeded="unavailable"`` (503). A
failed reconcile leaves the reservation to expire with the window.
"""

from __future__ import annotations

import itertools
import math
import os

from ..redis_store import RedisStore, Script, StateUnavailable
from . import WINDOW_S, Decision, Limits, Quota

_WINDOW_US = int(WINDOW_S * 1_000_000)
_TTL_MS = int(WINDOW_S * 1000) + 1000
_NO_LIMIT = -1
_EXCEEDED = {1: "requests", 2: "tokens"}

# Shared by the scripts: the server's clock, and removal of what left the window.
_PRELUDE = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function int(x) return string.format('%d', x) end
local function expire(req, tok, horizon, tracks_tokens)
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
local function total(tok, tpm)
  if tpm < 0 then return 0 end
  return tonumber(redis.call('HGET', tok, 'total') or '0')
end
local function quota(req, rpm, tpm, reserved)
  local left_tokens = -1
  if tpm >= 0 then left_tokens = math.max(0, tpm - reserved) end
  return math.max(0, rpm - redis.call('ZCARD', req)), left_tokens
end
"""

# KEYS: req, tok. ARGV: member, window_us, rpm, tpm (-1: none), tokens, ttl_ms.
# Reply: {admitted 0/1, remaining requests, remaining tokens (-1: none),
#         exceeded (0, 1 requests, 2 tokens), retry after in µs}.
_ADMIT = Script.of(
    "admit",
    _PRELUDE
    + """
local req, tok = KEYS[1], KEYS[2]
local member, window = ARGV[1], tonumber(ARGV[2])
local rpm, tpm, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_us()
expire(req, tok, now - window, tpm >= 0)
local reserved = total(tok, tpm)
local left_requests, left_tokens = quota(req, rpm, tpm, reserved)
if left_requests <= 0 then
  local oldest = redis.call('ZRANGE', req, 0, 0, 'WITHSCORES')
  return {0, 0, left_tokens, 1, tonumber(oldest[2]) + window - now}
end
if tpm >= 0 and reserved + tokens > tpm then
  local wait = window
  if tokens <= tpm then
    local need, count = reserved + tokens - tpm, redis.call('ZCARD', req)
    for start = 0, count - 1, 500 do
      local page = redis.call('ZRANGE', req, start, start + 499, 'WITHSCORES')
      local members = {}
      for i = 1, #page, 2 do members[#members + 1] = page[i] end
      local amounts = redis.call('HMGET', tok, unpack(members))
      for i = 1, #members do
        need = need - tonumber(amounts[i] or '0')
        if need <= 0 then
          wait = tonumber(page[2 * i]) + window - now
          break
        end
      end
      if need <= 0 then break end
    end
  end
  return {0, left_requests, left_tokens, 2, wait}
end
redis.call('ZADD', req, int(now), member)
redis.call('PEXPIRE', req, ARGV[6])
if tpm >= 0 then
  redis.call('HSET', tok, member, tokens)
  redis.call('HINCRBY', tok, 'total', tokens)
  redis.call('PEXPIRE', tok, ARGV[6])
  left_tokens = math.max(0, tpm - reserved - tokens)
end
return {1, left_requests - 1, left_tokens, 0, 0}
""",
)

# KEYS: tok. ARGV: member, used tokens. A reservation that already left the window is gone.
_RECONCILE = Script.of(
    "reconcile",
    """
local reserved = redis.call('HGET', KEYS[1], ARGV[1])
if not reserved then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'total', tonumber(ARGV[2]) - tonumber(reserved))
return 1
""",
)

# KEYS: req, tok. ARGV: window_us, rpm, tpm (-1: none). Reply: {remaining requests, tokens}.
_PEEK = Script.of(
    "peek",
    _PRELUDE
    + """
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
expire(KEYS[1], KEYS[2], now_us() - tonumber(ARGV[1]), tpm >= 0)
local left_requests, left_tokens = quota(KEYS[1], rpm, tpm, total(KEYS[2], tpm))
return {left_requests, left_tokens}
""",
)

SCRIPTS = (_ADMIT, _RECONCILE, _PEEK)


class _Reservation:
    __slots__ = ("key", "member")

    def __init__(self, key: str, member: str) -> None:
        self.key = key
        self.member = member


class RedisLimiter:
    """``Limiter`` over a ``RedisStore`` (which must have ``SCRIPTS`` registered)."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._prefix = f"{store.key_prefix}rl:"
        # Members only need to be unique within one client's window, across replicas.
        self._node = os.urandom(6).hex()
        self._serial = itertools.count()

    async def admit(self, client_id: str, limits: Limits, tokens: int) -> Decision:
        req, tok = self._keys(client_id)
        member = f"{self._node}.{next(self._serial)}"
        tpm = _NO_LIMIT if limits.tokens_per_minute is None else limits.tokens_per_minute
        args = (member, _WINDOW_US, limits.requests_per_minute, tpm, tokens, _TTL_MS)
        try:
            reply = await self._store.run(_ADMIT, (req, tok), args)
        except StateUnavailable:
            return self._unavailable(limits)
        admitted, left_requests, left_tokens, exceeded, wait_us = _ints(reply, 5)
        quota = Quota(left_requests, None if left_tokens == _NO_LIMIT else left_tokens)
        if admitted:
            reservation = _Reservation(tok, member) if tpm != _NO_LIMIT else None
            return Decision(True, quota, reservation=reservation)
        return Decision(False, quota, _EXCEEDED[exceeded], max(1, math.ceil(wait_us / 1e6)))

    async def reconcile(self, reservation: object, used_tokens: int) -> None:
        if not isinstance(reservation, _Reservation):
            return  # no token limit, or admitted while Redis was down
        try:
            await self._store.run(_RECONCILE, (reservation.key,), (reservation.member, used_tokens))
        except StateUnavailable:
            return  # the reservation stays counted until it leaves the window

    async def peek(self, client_id: str, limits: Limits) -> Quota:
        tpm = _NO_LIMIT if limits.tokens_per_minute is None else limits.tokens_per_minute
        try:
            reply = await self._store.run(
                _PEEK, self._keys(client_id), (_WINDOW_US, limits.requests_per_minute, tpm)
            )
        except StateUnavailable:
            return self._unavailable(limits).quota
        left_requests, left_tokens = _ints(reply, 2)
        return Quota(left_requests, None if left_tokens == _NO_LIMIT else left_tokens)

    def _keys(self, client_id: str) -> tuple[str, str]:
        base = self._prefix + client_id
        return base + ":req", base + ":tok"

    def _unavailable(self, limits: Limits) -> Decision:
        """fail_open: admitted, nothing counted; fail_closed: refused, nothing left."""
        if self._store.on_error == "fail_open":
            quota = Quota(limits.requests_per_minute, limits.tokens_per_minute)
            return Decision(True, quota)
        quota = Quota(0, None if limits.tokens_per_minute is None else 0)
        return Decision(False, quota, "unavailable", 1)


def _ints(reply: object, count: int) -> list[int]:
    if not isinstance(reply, list) or len(reply) != count:
        raise TypeError(f"unexpected script reply {reply!r}")
    return [int(value) for value in reply]
