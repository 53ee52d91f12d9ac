"""Upstream faults: many concurrent requests, about 20 % of them meeting an injected fault.

The shared gateway has one target per alias, ``retry.max_attempts`` 3,
``timeout_s`` 2, ``deadline_s`` 4 and ``retry_after_cap_s`` 1.5. Checked for
every request: no 500; done within the deadline plus one second; at most 3
attempts; no retry earlier than the upstream's ``Retry-After``; no retry once
a stream's first chunk was taken; a stream that fails midway ends with
exactly one error event, no end marker and no chunk replayed.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.hostile.harness import Exposure, is_envelope, scaled
from tests.support.gateway import GatewayProcess
from tests.support.sse import StreamSeen, parse
from tests.support.upstream import FakeUpstream, Received, directive

pytestmark = pytest.mark.slow

MAX_ATTEMPTS = 3
DEADLINE_S = 4.0
CAP_S = 1.5
FAULT_SHARE = 0.2

FAULTS = [
    "reset:0,ok",
    "reset:2",
    "reset:4",
    "fin:3",
    "fin:2",
    "fin:0,ok",
    "drip",
    "stall",
    "html",
    "empty",
    "weird",
    "status:503:1,ok",
    "status:429:date+1,ok",
    "status:503:garbage,ok",
    "status:500",
    "status:429:5",
    "status:503:0.3,status:503:0.3,ok",
    "status:502:1,status:502:1,status:502:1",
    "delay:2.5,ok",
]


@dataclass
class Outcome:
    rid: str
    plan: str
    route: str
    stream: bool
    status: int
    elapsed: float
    body: bytes
    seen: StreamSeen | None = None


async def _one(client: httpx.AsyncClient, index: int, rng: random.Random) -> Outcome:
    plan = rng.choice(FAULTS) if rng.random() < FAULT_SHARE else "ok"
    route = rng.choice(["/v1/chat/completions", "/v1/chat/completions", "/v1/messages"])
    stream = rng.random() < 0.5
    rid = f"fault-{index}"
    body: dict[str, Any] = {
        "model": "chat",
        "stream": stream,
        "messages": [{"role": "user", "content": directive(rid, plan)}],
    }
    if route == "/v1/messages":
        body["max_tokens"] = 50
    started = time.monotonic()
    async with client.stream("POST", route, json=body) as response:
        raw = await response.aread()
    outcome = Outcome(
        rid, plan, route, stream, response.status_code, time.monotonic() - started, raw
    )
    if stream and response.status_code == 200:
        outcome.seen = parse(raw, anthropic=route == "/v1/messages")
    return outcome


async def _run(base_url: str, count: int, concurrency: int) -> list[Outcome]:
    rng = random.Random(10)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=20, limits=limits) as client:

        async def bounded(index: int) -> Outcome:
            async with gate:
                return await _one(client, index, rng)

        return await asyncio.gather(*(bounded(i) for i in range(count)))


def _early_retries(attempts: list[Received]) -> list[str]:
    """Retries that came before the previous attempt's Retry-After allowed."""
    early = []
    for previous, retry in itertools.pairwise(attempts):
        value = previous.retry_after
        if value is None or previous.ended_at is None:
            continue
        try:
            wait = float(value)
        except ValueError:
            try:
                not_before = email.utils.parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                continue  # garbage: no constraint
            if retry.wall < not_before - 0.02:
                early.append(f"{previous.rid}: retried {not_before - retry.wall:.3f} s early")
            continue
        if wait <= CAP_S and retry.at - previous.ended_at < wait - 0.02:
            early.append(f"{previous.rid}: waited {retry.at - previous.ended_at:.3f} s of {wait}")
    return early


def test_injected_upstream_faults_never_break_the_gateways_promises(
    gateway: GatewayProcess, upstream: FakeUpstream, exposure: Exposure, figures: Any
) -> None:
    outcomes = asyncio.run(_run(gateway.base_url, scaled(500), 24))
    for outcome in outcomes:
        exposure.text(outcome.body.decode("utf-8", "replace"))
    attempts = {o.rid: upstream.of(o.rid) for o in outcomes}

    server_errors = [o for o in outcomes if o.status == 500]
    late = [o for o in outcomes if o.elapsed > DEADLINE_S + 1]
    too_many = [o.rid for o in outcomes if len(attempts[o.rid]) > MAX_ATTEMPTS]
    early = [e for o in outcomes for e in _early_retries(attempts[o.rid])]
    after_first_byte = [
        o.rid for o in outcomes if o.stream and any(a.events_sent for a in attempts[o.rid][:-1])
    ]
    unenveloped = [
        o for o in outcomes if o.status >= 400 and not is_envelope(o.status, o.body, o.route)
    ]
    streams = [(o, o.seen) for o in outcomes if o.seen is not None]
    mid_stream = [(o, seen) for o, seen in streams if not seen.ended_cleanly]
    bad_ends = [o for o, seen in mid_stream if not (seen.failed_once and seen.in_order)]
    replayed = [o for o, seen in streams if not seen.in_order]
    clean_but_wrong = [o for o, seen in streams if seen.ended_cleanly and len(seen.pieces) != 5]
    faulted = [o for o in outcomes if o.plan != "ok"]
    unfaulted_failures = [o for o in outcomes if o.plan == "ok" and o.status != 200]

    figures.record(
        "faults",
        requests=len(outcomes),
        injected_faults=len(faulted),
        fault_share=round(len(faulted) / len(outcomes), 3),
        gateway_500s=len(server_errors),
        past_deadline_plus_1s=len(late),
        max_attempts_seen=max(len(a) for a in attempts.values()),
        attempts_bound=MAX_ATTEMPTS,
        retries_before_retry_after=len(early),
        retries_after_first_byte=len(after_first_byte),
        mid_stream_failures=len(mid_stream),
        mid_stream_failures_not_one_error_event=len(bad_ends),
        replayed_or_skipped_chunks=len(replayed),
        slowest_s=round(max(o.elapsed for o in outcomes), 2),
    )
    assert not server_errors, [(o.plan, o.body[:200]) for o in server_errors]
    assert not late, [(o.plan, o.route, o.stream, round(o.elapsed, 2)) for o in late]
    assert not too_many, too_many
    assert not early, early
    assert not after_first_byte, after_first_byte
    assert not unenveloped, [(o.plan, o.status, o.body[:200]) for o in unenveloped]
    assert not bad_ends, [(o.plan, o.route, o.seen) for o in bad_ends]
    assert not replayed, [(o.plan, o.seen) for o in replayed]
    assert not clean_but_wrong, [(o.plan, o.seen) for o in clean_but_wrong]
    assert not unfaulted_failures, [(o.status, o.body[:200]) for o in unfaulted_failures]
    assert mid_stream, "the mix produced mid-stream failures to check"
    assert any(a.retry_after for o in faulted for a in attempts[o.rid]), "Retry-After was exercised"
