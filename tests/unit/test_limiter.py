"""The limiter, one suite for every backend: exact under concurrency, a sliding window,
tokens reserved then reconciled.

Each test that takes ``backend`` runs against the memory limiter and against the
Redis limiter on a real Redis. Time is moved forward by ``backend.advance``:
the memory limiter reads a settable clock; for Redis, whose clock cannot be
set, every logged admission is moved back in time by the same amount.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from src.config import StateConfig
from src.state.limiter import Limiter, Limits
from src.state.limiter.memory import MemoryLimiter
from src.state.limiter.redis import SCRIPTS, RedisLimiter
from src.state.redis_store import RedisStore

_SHIFT = """
local log = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #log, 2 do
  redis.call('ZADD', KEYS[1], string.format('%d', tonumber(log[i + 1]) - tonumber(ARGV[1])), log[i])
end
"""


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

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds


class RedisBackend:
    def __init__(self, url: str, prefix: str) -> None:
        self.store = RedisStore(
            StateConfig(backend="redis", redis_url=url, key_prefix=prefix, timeout_s=5), SCRIPTS
        )
        self.limiter = RedisLimiter(self.store)
        self.prefix = prefix
        self.client = redis.asyncio.Redis.from_url(url)
        self.started = time.monotonic()
        self.advanced = 0.0

    def now(self) -> float:
        return 1000.0 + self.advanced + time.monotonic() - self.started

    async def advance(self, seconds: float) -> None:
        self.advanced += seconds
        async for key in self.client.scan_iter(match=f"{self.prefix}rl:*:req"):
            await self.client.eval(_SHIFT, 1, key, int(seconds * 1_000_000))

    async def aclose(self) -> None:
        await self.store.aclose()
        await self.client.aclose()


@pytest.fixture
async def backend(state: dict[str, Any]) -> AsyncIterator[Any]:
    if state["backend"] == "memory":
        yield MemoryBackend()
        return
    redis_backend = RedisBackend(state["redis_url"], state["key_prefix"])
    await redis_backend.store.start()
    yield redis_backend
    await redis_backend.aclose()


async def test_concurrent_admissions_admit_exactly_the_limit(backend):
    limits = Limits(requests_per_minute=40)
    decisions = await asyncio.gather(*(backend.limiter.admit("c", limits, 0) for _ in range(150)))
    assert sum(d.allowed for d in decisions) == 40
    assert {d.exceeded for d in decisions if not d.allowed} == {"requests"}


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


async def test_tokens_are_reserved_at_admission_and_reconciled_with_usage(backend):
    limiter = backend.limiter
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000)
    first = await limiter.admit("c", limits, 600)
    assert first.allowed and first.quota.remaining_tokens == 400
    refused = await limiter.admit("c", limits, 600)
    assert not refused.allowed and refused.exceeded == "tokens"
    await limiter.reconcile(first.reservation, 100)
    assert (await limiter.peek("c", limits)).remaining_tokens == 900
    assert (await limiter.admit("c", limits, 600)).allowed


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


async def test_a_refusal_counts_nothing(backend):
    limiter = backend.limiter
    limits = Limits(requests_per_minute=5, tokens_per_minute=100)
    assert not (await limiter.admit("c", limits, 500)).allowed
    quota = await limiter.peek("c", limits)
    assert quota.remaining_requests == 5 and quota.remaining_tokens == 100


async def test_clients_are_counted_apart(backend):
    limits = Limits(requests_per_minute=2)
    for _ in range(2):
        assert (await backend.limiter.admit("a", limits, 0)).allowed
    assert not (await backend.limiter.admit("a", limits, 0)).allowed
    assert (await backend.limiter.admit("b", limits, 0)).allowed
    assert (await backend.limiter.peek("b", limits)).remaining_requests == 1


@pytest.mark.parametrize("tokens", [0, 50])
async def test_concurrent_token_reservations_never_overshoot(backend, tokens):
    limits = Limits(requests_per_minute=10**6, tokens_per_minute=1000)
    decisions = await asyncio.gather(
        *(backend.limiter.admit("c", limits, 100 + tokens) for _ in range(50))
    )
    admitted = sum(d.allowed for d in decisions)
    assert admitted * (100 + tokens) <= 1000
    assert admitted == 1000 // (100 + tokens)


async def test_idle_clients_are_forgotten():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(requests_per_minute=5)
    for i in range(5000):
        await limiter.admit(f"client-{i}", limits, 0)
    clock.now += 120
    for _ in range(5000):
        await limiter.admit("steady", Limits(requests_per_minute=10**6), 0)
    assert len(limiter._windows) < 100
