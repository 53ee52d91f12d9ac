"""``n`` choices against the token limit, the client's token cap and the cost ceiling.

A chat request asks for ``n`` choices of up to ``max_tokens`` each: every
estimate of its size (the reservation against ``tokens_per_minute``, the
client's ``max_tokens`` cap, the budget hold, the quote under
``X-Max-Cost-USD``) counts ``n`` of them. The fake upstream "honours" ``n`` by
reporting the usage ``n`` one-token choices would have (``ok:128``).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.hostile.faulty_upstream import FaultyUpstream, directive
from tests.hostile.harness import (
    CLIENT_KEY,
    Exposure,
    HostileGateway,
    gateway_config,
    is_envelope,
)

TOKENS_PER_MINUTE = 3000
CAPPED_KEY = "gw-capped-" + secrets.token_urlsafe(16)
CAP = 1000


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def limited(
    upstream: FaultyUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileGateway]:
    """Alice: 3000 tokens a minute; capped: at most 1000 completion tokens per request."""
    home = tmp_path_factory.mktemp("hostile-token-limits")
    config = gateway_config(upstream.base_url, home / "gateway.log")
    config["clients"] = {
        "alice": {
            "key_sha256": _digest(CLIENT_KEY),
            "rate_limit": {"requests_per_minute": 100_000, "tokens_per_minute": TOKENS_PER_MINUTE},
        },
        "capped": {"key_sha256": _digest(CAPPED_KEY), "max_tokens": CAP},
    }
    config["pricing"] = {"up": {"m1": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1000}}}
    process = HostileGateway(home, config).start()
    exposure.files += [process.log_file, process.stdout_file, process.stderr_file]
    yield process
    process.stop()


def _chat(rid: str, plan: str = "ok", **extra: Any) -> dict[str, Any]:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": directive(rid, plan)}],
        **extra,
    }


async def _flood(base_url: str, count: int) -> list[httpx.Response]:
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=15) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions",
                        json=_chat(f"n-flood-{i}", "ok:128", n=128, max_tokens=1),
                    )
                    for i in range(count)
                )
            )
        )


def test_n_choices_cannot_carry_a_client_past_its_tokens_per_minute(
    limited: HostileGateway, exposure: Exposure, figures: Any
) -> None:
    count = 40
    answers = asyncio.run(_flood(limited.base_url, count))
    for answer in answers:
        exposure.answer(answer)
    admitted = [a for a in answers if a.status_code == 200]
    used = sum(a.json()["usage"]["total_tokens"] for a in admitted)
    refused = [a for a in answers if a.status_code == 429]
    figures.record(
        "n_choices",
        concurrent_requests=count,
        admitted=len(admitted),
        tokens_used_in_the_minute=used,
        tokens_per_minute=TOKENS_PER_MINUTE,
    )
    assert admitted, "some of them fit"
    assert len(admitted) + len(refused) == count, [a.status_code for a in answers]
    assert all(a.json()["error"]["type"] == "rate_limit_exceeded" for a in refused)
    assert used <= TOKENS_PER_MINUTE, (len(admitted), used)


def test_a_request_whose_n_could_never_fit_the_minute_is_refused_up_front(
    limited: HostileGateway, upstream: FaultyUpstream, exposure: Exposure, figures: Any
) -> None:
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    with httpx.Client(base_url=limited.base_url, headers=headers, timeout=10) as client:
        never = client.post("/v1/chat/completions", json=_chat("n-never", n=128, max_tokens=100))
        silent = client.post("/v1/chat/completions", json=_chat("n-silent", n=64))
        explained = client.post("/v1/explain", json=_chat("n-explain", n=128, max_tokens=100))
    for answer in (never, silent, explained):
        exposure.answer(answer)
    assert never.status_code == 400, never.text
    assert never.json()["error"]["type"] == "invalid_request_error"
    assert never.json()["error"]["param"] == "n"
    # n x the default reservation (256) is past the minute too
    assert silent.status_code == 400, silent.text
    assert upstream.of("n-never") == upstream.of("n-silent") == []
    report = explained.json()
    assert report["completion_tokens"] == 128 * 100
    assert report["decision"]["allowed"] is False
    figures.add("n_choices", cases=3)


def test_the_clients_token_cap_counts_every_choice(
    limited: HostileGateway, upstream: FaultyUpstream, exposure: Exposure
) -> None:
    headers = {"authorization": f"Bearer {CAPPED_KEY}"}
    with httpx.Client(base_url=limited.base_url, headers=headers, timeout=10) as client:
        over = client.post("/v1/chat/completions", json=_chat("cap-over", n=2, max_tokens=600))
        shared = client.post("/v1/chat/completions", json=_chat("cap-shared", n=4))
        too_many = client.post("/v1/chat/completions", json=_chat("cap-many", n=128, max_tokens=8))
    for answer in (over, shared, too_many):
        exposure.answer(answer)
    assert over.status_code == 400, over.text
    assert over.json()["error"]["param"] == "max_tokens"
    assert too_many.status_code == 400, too_many.text
    # silent about max_tokens: the cap is shared among the choices
    assert shared.status_code == 200, shared.text
    assert upstream.of("cap-shared")[0].body["max_tokens"] == CAP // 4


def test_the_cost_ceiling_quotes_every_choice(
    limited: HostileGateway, upstream: FaultyUpstream, exposure: Exposure
) -> None:
    headers = {"authorization": f"Bearer {CAPPED_KEY}", "x-max-cost-usd": "0.01"}
    with httpx.Client(base_url=limited.base_url, headers=headers, timeout=10) as client:
        one = client.post("/v1/chat/completions", json=_chat("ceiling-one", max_tokens=1))
        many = client.post("/v1/chat/completions", json=_chat("ceiling-n", n=128, max_tokens=1))
    for answer in (one, many):
        exposure.answer(answer)
    assert one.status_code == 200, one.text
    assert many.status_code == 400, many.text
    assert many.json()["error"]["type"] == "cost_ceiling_exceeded"
    assert upstream.of("ceiling-n") == []


@pytest.mark.parametrize("value", [0, 129, -1, 1.5, "2", True, [2], {"n": 2}])
def test_a_bad_n_is_a_400_naming_n(
    limited: HostileGateway, exposure: Exposure, figures: Any, value: Any
) -> None:
    headers = {"authorization": f"Bearer {CAPPED_KEY}"}
    for path in ("/v1/chat/completions", "/v1/chat"):
        body = _chat("bad-n", n=value)
        response = httpx.post(limited.base_url + path, json=body, headers=headers, timeout=10)
        exposure.answer(response)
        assert response.status_code == 400, response.text
        assert is_envelope(400, response.content, path)
        if path == "/v1/chat/completions":
            assert response.json()["error"]["param"] == "n"
    figures.add("n_choices", cases=2)
