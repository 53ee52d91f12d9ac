"""The shared spend store: each client's spend per UTC day and month, in Redis.

Per client (``<prefix>spend:<client_id>`` = B):

- ``B:d:<day>`` (days since the epoch) and ``B:m:<YYYY-MM>``: USD charged, as
  Redis floats; the day key lives two days, the month key 32 days after its
  last charge, so both outlast their period and then vanish;
- ``B:holds``, a hash: each admitted request's held estimate, and ``total``;
  ``B:holdt``, a sorted set: when each hold was taken. A hold older than an
  hour is dropped (its gateway died before settling it).

Each operation is one Lua script: the budget check and the hold are one atomic
step, so replicas cannot all pass a budget only one request fits in. The day
and month come from the Redis server's ``TIME``, inside the script, so every
replica rolls over at the same instant. Spend survives gateway restarts as
long as Redis keeps its data (enable persistence for budgets).

Redis down: ``fail_open`` admits without a hold and a failed charge is lost;
``fail_closed`` refuses with 503 ``limiter_unavailable``.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from ...config import BudgetConfig
from ...errors import LimiterUnavailable
from ..redis_store import RedisStore, Script, StateUnavailable
from . import BudgetDecision, Spend

_NO_BUDGET = -1
_EXCEEDED = {"d": "usd_per_day", "m": "usd_per_month"}

_PRELUDE = """
local HOLD_MAX_S = 3600
local function period(base)
  local now = tonumber(redis.call('TIME')[1])
  local days = math.floor(now / 86400)
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
  return now, base .. ':d:' .. string.format('%d', days),
    base .. ':m:' .. string.format('%04d-%02d', year, month)
end
local function held(base, now)
  local holds, times = base .. ':holds', base .. ':holdt'
  local stale = redis.call('ZRANGEBYSCORE', times, '-inf', now - HOLD_MAX_S)
  for i = 1, #stale do
    local usd = redis.call('HGET', holds, stale[i])
    if usd then redis.call('HINCRBYFLOAT', holds, 'total', -tonumber(usd)) end
    redis.call('HDEL', holds, stale[i])
    redis.call('ZREM', times, stale[i])
  end
  return math.max(0, tonumber(redis.call('HGET', holds, 'total') or '0'))
end
local function usd(x) return string.format('%.17g', x) end
"""

# KEYS: B. ARGV: hold id, estimate, usd_per_day (-1: none), usd_per_month (-1: none).
# Reply: {allowed 0/1, day spend, month spend, held (all with holds), exceeded ('', 'd', 'm')}.
_ADMIT = Script.of(
    "spend_admit",
    _PRELUDE
    + """
local base, id, estimate = KEYS[1], ARGV[1], tonumber(ARGV[2])
local per_day, per_month = tonumber(ARGV[3]), tonumber(ARGV[4])
local now, day_key, month_key = period(base)
local holding = held(base, now)
local day = tonumber(redis.call('GET', day_key) or '0') + holding
local month = tonumber(redis.call('GET', month_key) or '0') + holding
if per_day >= 0 and day >= per_day then return {0, usd(day), usd(month), usd(holding), 'd'} end
if per_month >= 0 and month >= per_month then
  return {0, usd(day), usd(month), usd(holding), 'm'}
end
redis.call('HSET', base .. ':holds', id, ARGV[2])
redis.call('HINCRBYFLOAT', base .. ':holds', 'total', estimate)
redis.call('ZADD', base .. ':holdt', now, id)
redis.call('EXPIRE', base .. ':holds', HOLD_MAX_S)
redis.call('EXPIRE', base .. ':holdt', HOLD_MAX_S)
return {1, usd(day + estimate), usd(month + estimate), usd(holding + estimate), ''}
""",
)

# KEYS: B. ARGV: hold id, cost. Releases the hold (if still there) and charges the cost.
_SETTLE = Script.of(
    "spend_settle",
    _PRELUDE
    + """
local base, id, cost = KEYS[1], ARGV[1], tonumber(ARGV[2])
local reserved = redis.call('HGET', base .. ':holds', id)
if reserved then
  redis.call('HINCRBYFLOAT', base .. ':holds', 'total', -tonumber(reserved))
  redis.call('HDEL', base .. ':holds', id)
  redis.call('ZREM', base .. ':holdt', id)
end
if cost > 0 then
  local _, day_key, month_key = period(base)
  redis.call('INCRBYFLOAT', day_key, ARGV[2])
  redis.call('EXPIRE', day_key, 2 * 86400)
  redis.call('INCRBYFLOAT', month_key, ARGV[2])
  redis.call('EXPIRE', month_key, 32 * 86400)
end
return 1
""",
)

# KEYS: B. Reply: {day spend, month spend, held}, holds included.
_SPENT = Script.of(
    "spend_read",
    _PRELUDE
    + """
local now, day_key, month_key = period(KEYS[1])
local holding = held(KEYS[1], now)
local day = tonumber(redis.call('GET', day_key) or '0') + holding
local month = tonumber(redis.call('GET', month_key) or '0') + holding
return {usd(day), usd(month), usd(holding)}
""",
)

SCRIPTS = (_ADMIT, _SETTLE, _SPENT)


class _Hold:
    __slots__ = ("base", "id")

    def __init__(self, base: str, hold_id: str) -> None:
        self.base = base
        self.id = hold_id


class RedisSpendStore:
    """``SpendStore`` over a ``RedisStore`` (which must have ``SCRIPTS`` registered)."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._prefix = f"{store.key_prefix}spend:"
        self._node = os.urandom(6).hex()
        self._serial = itertools.count()

    async def admit(
        self, client_id: str, budget: BudgetConfig | None, estimate_usd: float
    ) -> BudgetDecision:
        base = self._prefix + client_id
        hold_id = f"{self._node}.{next(self._serial)}"
        per_day: float = _NO_BUDGET
        per_month: float = _NO_BUDGET
        if budget is not None:
            per_day = _NO_BUDGET if budget.usd_per_day is None else budget.usd_per_day
            per_month = _NO_BUDGET if budget.usd_per_month is None else budget.usd_per_month
        args = (hold_id, repr(estimate_usd), repr(per_day), repr(per_month))
        try:
            reply = await self._store.run(_ADMIT, (base,), args)
        except StateUnavailable:
            if self._store.on_error == "fail_open":
                return BudgetDecision(True, Spend(0.0, 0.0))
            raise LimiterUnavailable(
                "The budget store is unavailable, so the request was not served; retry shortly.",
                headers={"retry-after": "1"},
            ) from None
        values = _values(reply, 5)
        spend = Spend(float(values[1]), float(values[2]), float(values[3]))
        if values[0] == 1:
            return BudgetDecision(True, spend, hold=_Hold(base, hold_id))
        return BudgetDecision(False, spend, _EXCEEDED[values[4].decode()])

    async def settle(self, hold: object, cost_usd: float) -> None:
        if not isinstance(hold, _Hold):
            return  # admitted while Redis was down: nothing was held
        try:
            await self._store.run(_SETTLE, (hold.base,), (hold.id, repr(cost_usd)))
        except StateUnavailable:
            return  # the hold expires within the hour; this charge is lost (and logged)

    async def spent(self, client_id: str) -> Spend:
        try:
            reply = await self._store.run(_SPENT, (self._prefix + client_id,), ())
        except StateUnavailable:
            return Spend(0.0, 0.0)
        values = _values(reply, 3)
        return Spend(float(values[0]), float(values[1]), float(values[2]))

    async def aclose(self) -> None:
        """Nothing of its own: the ``RedisStore`` is closed by its owner."""


def _values(reply: object, count: int) -> list[Any]:
    """The script's reply: integers, and USD amounts as bytes (Lua would truncate numbers)."""
    if not isinstance(reply, list) or len(reply) != count:
        raise TypeError(f"unexpected script reply {reply!r}")
    return reply
