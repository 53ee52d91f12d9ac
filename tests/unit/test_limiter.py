"""The limiter, one suite for every backend and algorithm: exact under concurrency, a sliding
window or a cell rate, tokens reserved then reconciled.

Each test that takes ``backend`` runs against the memory limiter, the Redis
limiter on a real Redis and on a real Redis Cluster; those that take
``algorithm`` also run once per algorithm. Time is moved forward by
``backend.advance``: the memory limiter reads a settable clock; for Redis,
whose clock cannot be set, every stored time is moved back by the same amount.
GCRA gives capacity back continuously, so on Redis's real clock its figures
may grow by ``backend.drift(limit)`` while a test runs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
import redis.asyncio.cluster

from src.config import StateConfig
from src.state.limiter import Limiter, Limits
from src.state.limiter.memory import MemoryLimiter
from src.state.limiter.redis import RedisLimiter
from src.state.redis_scripts import SCRIPTS
from src.state.redis_state import RedisState
from src.state.redis_store import RedisStore

# Moves a limiter key's stored times ARGV[1] seconds into the past.
_SHIFT = """
local kind = redis.call('TYPE', KEYS[1])['ok']
local seconds = tonumber(ARGV[1])
if kind == 'zset' then
  local log = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #log, 2 do
    local score = tonumber(log[i + 1]) - seconds * 1000000
    redis.call('ZADD', KEYS[1], string.format('%d', score), log[i])
  end
elseif kind == 'hash' and string.sub(KEYS[1], -5) == ':gcra' then
  for _, cell in ipairs({'r', 't'}) do
    local v = redis.call('HMGET', KEYS[1], cell, cell .. 'l')
    if v[1] then
      local tat = tonumber(v[1]) - seconds * tonumber(v[2]) / 60
      redis.call('HSET', KEYS[1], cell, string.format('%.17g', tat))
    end
  end
end
"""


@pytest.fixture(params=["sliding_log", "gcra"])
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryBackend:
    def __init__(self) -> None:
        self.clock = Clock()
        self.limiter: Limiter = MemoryLimiter(self.clock)

    def now(self) -> float:
        return self.clock.now

    def drift(self, limit: int) -> int:
        return 0

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds


class RedisBackend:
    def __init__(self, state: dict[str, Any]) -> None:
        self.store = RedisStore(StateConfig(**state), SCRIPTS)
        self.state = RedisState(self.store)
        self.limiter = RedisLimiter(self.state)
        self.prefix = state["key_prefix"]
        url = state["redis_url"]
        self.cluster = state["redis_mode"] == "cluster"
        self.client: Any = (
            redis.asyncio.cluster.RedisCluster.from_url(url)
            if self.cluster
            else redis.asyncio.Redis.from_url(url)
        )
        self.started = time.monotonic()
        self.advanced = 0.0

    def now(self) -> float:
        return 1000.0 + self.advanced + time.monotonic() - self.started

    def drift(self, limit: int) -> int:
        """What GCRA may have given back since the test started: its limit per minute."""
        return math.ceil((time.monotonic() - self.started) * limit / 60)

    async def advance(self, seconds: float) -> None:
        await self.state.flush()
        self.advanced += seconds
        keys = [key async for key in self.client.scan_iter(match=f"{self.prefix}rl:*")]
        for key in keys:
            await self.client.eval(_SHIFT, 1, key, seconds)

    async def aclose(self) -> None:
        await self.state.aclose()
        await self.store.aclose()
        await self.client.aclose()


@pytest.fixture
async def backend(state: dict[str, Any]) -> AsyncIterator[Any]:
    if state["backend"] == "memory":
        yield MemoryBackend()
        return
    redis_backend = RedisBackend(state)
    await redis_backend.store.start()
    yield redis_backend
    await redis_backend.aclose()


async def test_concurrent_admissions_admit_exactly_the_limit(backend, algorithm):
    limits = Limits(requests_per_minute=40, algorithm=algorithm)
    decisions = await asyncio.gather(*(backend.limiter.admit("c", limits, 0) for _ in range(150)))
    assert sum(d.allowed for d in decisions) == 40
    assert {d.exceeded for d in decisions if not d.allowed} == {"requests"}


async def test_the_twenty_first_of_twenty_one_rapid_requests_is_refused(backend, algorithm):
    limits = Limits(requests_per_minute=20, algorithm=algorithm)
    decisions = [await backend.limiter.admit("test", limits, 0) for _ in range(21)]
    assert [d.allowed for d in decisions] == [True] * 20 + [False]
    refused = decisions[-1]
    assert refused.exceeded == "requests" and refused.quota.remaining_requests == 0
    # the log waits for its oldest admission to leave; GCRA for one emission interval
    assert refused.retry_after_s == (60 if algorithm == "sliding_log" else 3)


async def test_remaining_is_what_could_be_admitted_now(backend, algorithm):
    limits = Limits(requests_per_minute=5, tokens_per_minute=1000, algorithm=algorithm)
    for admitted in range(1, 6):
        decision = await backend.limiter.admit("c", limits, 100)
        assert decision.allowed
        assert decision.quota.remaining_requests == 5 - admitted
        assert decision.quota.remaining_tokens == 1000 - 100 * admitted
    quota = await backend.limiter.peek("c", limits)
    assert quota.remaining_requests <= backend.drift(5)
    assert 500 <= quota.remaining_tokens <= 500 + backend.drift(1000)


async def test_a_refusal_counts_nothing(backend, algorithm):
    limiter = backend.limiter
    limits = Limits(requests_per_minute=5, tokens_per_minute=100, algorithm=algorithm)
    assert not (await limiter.admit("c", limits, 500)).allowed
    quota = await limiter.peek("c", limits)
    assert quota.remaining_requests == 5 and quota.remaining_tokens == 100


async def test_clients_are_counted_apart(backend, algorithm):
    limits = Limits(requests_per_minute=2, algorithm=algorithm)
    for _ in range(2):
        assert (await backend.limiter.admit("a", limits, 0)).allowed
    assert not (await backend.limiter.admit("a", limits, 0)).allowed
    assert (await backend.limiter.admit("b", limits, 0)).allowed
    assert (await backend.limiter.peek("b", limits)).remaining_requests == 1


async def test_client_ids_with_braces_are_counted_apart(backend, algorithm):
    limits = Limits(requests_per_minute=1, tokens_per_minute=10, algorithm=algorithm)
    ids = ["a", "{a}", "%7Ba%7D", "a}", "}{", "{", "", "%", "x{y}z"]
    first = [await backend.limiter.admit(client_id, limits, 1) for client_id in ids]
    second = [await backend.limiter.admit(client_id, limits, 1) for client_id in ids]
    assert all(d.allowed for d in first)
    assert not any(d.allowed for d in second)
    for decision in first:
        await backend.limiter.reconcile(decision.reservation, 0)
    for client_id in ids:
        quota = await backend.limiter.peek(client_id, limits)
        assert quota.remaining_tokens == 10


async def test_tokens_are_reserved_at_admission_and_reconciled_with_usage(backend, algorithm):
    limiter = backend.limiter
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000, algorithm=algorithm)
    first = await limiter.admit("c", limits, 600)
    assert first.allowed and first.quota.remaining_tokens == 400
    refused = await limiter.admit("c", limits, 600)
    assert not refused.allowed and refused.exceeded == "tokens"
    await limiter.reconcile(first.reservation, 100)
    assert 900 <= (await limiter.peek("c", limits)).remaining_tokens <= 900 + backend.drift(1000)
    assert (await limiter.admit("c", limits, 600)).allowed


async def test_using_more_than_reserved_counts_the_excess(backend, algorithm):
    limiter = backend.limiter
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000, algorithm=algorithm)
    first = await limiter.admit("c", limits, 100)
    await limiter.reconcile(first.reservation, 700)
    assert 300 <= (await limiter.peek("c", limits)).remaining_tokens <= 300 + backend.drift(1000)
    refused = await limiter.admit("c", limits, 400)
    assert not refused.allowed and refused.exceeded == "tokens"


@pytest.mark.parametrize("tokens", [0, 50])
async def test_concurrent_token_reservations_never_overshoot(backend, algorithm, tokens):
    limits = Limits(requests_per_minute=10**6, tokens_per_minute=1000, algorithm=algorithm)
    decisions = await asyncio.gather(
        *(backend.limiter.admit("c", limits, 100 + tokens) for _ in range(50))
    )
    admitted = sum(d.allowed for d in decisions)
    assert admitted * (100 + tokens) <= 1000 + backend.drift(1000)
    assert admitted == 1000 // (100 + tokens)


async def test_a_changed_limit_keeps_what_was_used(backend, algorithm):
    before = Limits(requests_per_minute=10, algorithm=algorithm)
    for _ in range(4):
        assert (await backend.limiter.admit("c", before, 0)).allowed
    after = Limits(requests_per_minute=20, algorithm=algorithm)
    assert (
        16 <= (await backend.limiter.peek("c", after)).remaining_requests <= 16 + backend.drift(20)
    )
    lowered = Limits(requests_per_minute=3, algorithm=algorithm)
    refused = await backend.limiter.admit("c", lowered, 0)
    assert not refused.allowed and refused.exceeded == "requests"


async def test_window_slides_rather_than_resetting_at_a_boundary(backend):
    limiter, limits = backend.limiter, Limits(requests_per_minute=3)
    assert (await limiter.admit("c", limits, 0)).allowed
    await backend.advance(20)
    assert (await limiter.admit("c", limits, 0)).allowed
    await backend.advance(20)
    assert (await limiter.admit("c", limits, 0)).allowed
    await backend.advance(19)
    refused = await limiter.admit("c", limits, 0)
    assert not refused.allowed and refused.exceeded == "requests"
    assert refused.retry_after_s == 1
    await backend.advance(1.5)  # the first admission has left the 60 s window, the others have not
    assert (await limiter.admit("c", limits, 0)).allowed
    assert not (await limiter.admit("c", limits, 0)).allowed


async def test_no_sixty_second_span_holds_more_than_the_limit(backend):
    limits = Limits(requests_per_minute=10)
    admitted: list[float] = []
    for _ in range(800):
        if (await backend.limiter.admit("c", limits, 0)).allowed:
            admitted.append(backend.now())
        await backend.advance(0.25)
    assert len(admitted) >= 30  # 200 s of steady demand: the limit each minute, no less
    for i, start in enumerate(admitted):
        inside = [t for t in admitted[i:] if t < start + 60]
        assert len(inside) <= 10


async def test_gcra_admits_a_burst_of_the_limit_then_one_per_interval(backend):
    limiter, limits = backend.limiter, Limits(requests_per_minute=3, algorithm="gcra")
    assert [(await limiter.admit("c", limits, 0)).allowed for _ in range(4)] == [True] * 3 + [False]
    await backend.advance(15)
    refused = await limiter.admit("c", limits, 0)
    assert not refused.allowed and refused.retry_after_s == 5  # the interval is 20 s
    await backend.advance(5.5)
    assert (await limiter.admit("c", limits, 0)).allowed
    assert not (await limiter.admit("c", limits, 0)).allowed
    await backend.advance(61)
    assert (await limiter.peek("c", limits)).remaining_requests == 3


async def test_gcra_admits_no_more_than_the_burst_plus_the_rate_in_any_span(backend):
    limits = Limits(requests_per_minute=10, algorithm="gcra")
    admitted: list[float] = []
    for _ in range(800):
        if (await backend.limiter.admit("c", limits, 0)).allowed:
            admitted.append(backend.now())
        await backend.advance(0.25)
    # 200 s of steady demand: the burst, then one every 6 s
    assert 10 + 200 // 6 - 1 <= len(admitted) <= 10 + 200 // 6 + 1
    for i, start in enumerate(admitted):
        for span in (1, 30, 60, 120):
            inside = [t for t in admitted[i:] if t < start + span]
            assert len(inside) <= 10 + span * 10 / 60


async def test_gcra_gives_back_no_more_than_is_owed(backend):
    limiter = backend.limiter
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000, algorithm="gcra")
    first = await limiter.admit("c", limits, 100)
    await limiter.reconcile(first.reservation, 0)
    assert (await limiter.peek("c", limits)).remaining_tokens == 1000
    assert (await limiter.admit("c", limits, 1000)).allowed
    assert not (await limiter.admit("c", limits, 10)).allowed


async def test_token_retry_after_is_when_enough_reservations_leave_the_window(backend):
    limiter = backend.limiter
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000)
    assert (await limiter.admit("c", limits, 600)).allowed
    await backend.advance(10)
    assert (await limiter.admit("c", limits, 300)).allowed
    refused = await limiter.admit("c", limits, 500)
    assert not refused.allowed and refused.exceeded == "tokens"
    assert refused.retry_after_s == 50  # the 600 reserved 10 s ago leave in 50 s
    too_big = await limiter.admit("c", limits, 1001)
    assert not too_big.allowed and too_big.retry_after_s == 60


async def test_reservations_leave_the_window_and_late_reconciles_change_nothing(backend):
    limiter = backend.limiter
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000)
    first = await limiter.admit("c", limits, 600)
    await backend.advance(61)
    assert (await limiter.peek("c", limits)).remaining_tokens == 1000
    await limiter.reconcile(first.reservation, 900)
    quota = await limiter.peek("c", limits)
    assert quota.remaining_tokens == 1000 and quota.remaining_requests == 100


@pytest.mark.parametrize("algorithm", ["sliding_log", "gcra"])
async def test_idle_clients_are_forgotten(algorithm):
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(requests_per_minute=5, tokens_per_minute=100, algorithm=algorithm)
    for i in range(5000):
        await limiter.admit(f"client-{i}", limits, 10)
    clock.now += 120
    for _ in range(5000):
        await limiter.admit("steady", Limits(requests_per_minute=10**6), 0)
    assert len(limiter._windows) + len(limiter._meters) < 100
