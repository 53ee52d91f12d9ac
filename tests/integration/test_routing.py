"""Routing: weighted targets, rules (first match wins, named in telemetry), and the cheapest strategy."""

from __future__ import annotations

import json
import random
from collections import Counter

import httpx
import pytest

from src.pipeline.cost import PriceTable
from src.routing import Router
from tests.support.configs import UPSTREAM, log_lines, make_config
from tests.support.payloads import completion

PRIMARY = f"{UPSTREAM}/chat/completions"


def echo_model(request: httpx.Request) -> httpx.Response:
    """An upstream that answers with the model it was asked for, so tests see which target ran."""
    model = json.loads(request.content)["model"]
    return httpx.Response(200, json=completion(model, model=model))


def ask(client, model="default-chat", content="hi", headers=None, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers or {})


def weighted_config(tmp_path, **extra):
    return make_config(
        tmp_path,
        aliases={
            "default-chat": {
                "targets": [
                    {"provider": "primary", "model": "heavy", "weight": 3},
                    {"provider": "primary", "model": "light", "weight": 1},
                ],
                "fallbacks": [{"provider": "secondary", "model": "spare"}],
            }
        },
        rate_limit={"requests_per_minute": 100000},
        **extra,
    )


def test_weights_split_a_large_sample_within_one_point(tmp_path):
    """100,000 plans at weights 3:1: the first target's share is 0.75 ± 0.01 (over 7 sigma)."""
    config = weighted_config(tmp_path)
    router = Router(config, PriceTable(config))
    route, _ = router.resolve("default-chat", "c", None, 1)
    rng = random.Random(7)
    firsts = Counter(route.plan(1, 1, rng)[0].model for _ in range(100_000))
    assert abs(firsts["heavy"] / 100_000 - 0.75) < 0.01
    plan = route.plan(1, 1, rng)
    assert {t.model for t in plan[:2]} == {"heavy", "light"} and plan[2].model == "spare"


@pytest.mark.slow
async def test_traffic_through_the_gateway_splits_by_weight(
    gateway_client, upstream, tmp_path, provider_key
):
    """2,000 requests at weights 3:1: the heavy target's share is 0.75 ± 0.04 (4 sigma)."""
    upstream.post(PRIMARY).mock(side_effect=echo_model)
    client = await gateway_client(weighted_config(tmp_path))
    counts: Counter[str] = Counter()
    for _ in range(2000):
        response = await ask(client)
        counts[response.json()["choices"][0]["message"]["content"]] += 1
    assert counts["heavy"] + counts["light"] == 2000
    assert abs(counts["heavy"] / 2000 - 0.75) < 0.04


async def test_open_breaker_takes_a_target_out_of_the_split(
    gateway_client, upstream, tmp_path, provider_key
):
    def heavy_down(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        return httpx.Response(500) if model == "heavy" else echo_model(request)

    route = upstream.post(PRIMARY).mock(side_effect=heavy_down)
    config = weighted_config(tmp_path, breaker={"failure_threshold": 2, "cooldown_s": 60})
    client = await gateway_client(config)
    for _ in range(30):
        response = await ask(client)
        assert response.json()["choices"][0]["message"]["content"] == "light"
    heavy_calls = [c for c in route.calls if json.loads(c.request.content)["model"] == "heavy"]
    assert len(heavy_calls) == 2  # then its breaker opened and it was skipped


def rules_config(tmp_path):
    return make_config(
        tmp_path,
        aliases={
            "default-chat": {"provider": "primary", "model": "general"},
            "cheap": {"provider": "primary", "model": "small"},
            "claude": {"provider": "primary", "model": "claude-up"},
            "big": {"provider": "primary", "model": "long-context"},
        },
        routes=[
            {
                "name": "support-desk",
                "match": {"use_case": ["support", "helpdesk"]},
                "alias": "cheap",
            },
            {"name": "claude-family", "match": {"model": ["claude-*"]}, "alias": "claude"},
            {"name": "batch-jobs", "match": {"client": ["batch-*"]}, "alias": "cheap"},
            {
                "name": "long-prompts",
                "match": {"model": ["default-chat"], "min_prompt_tokens": 50},
                "alias": "big",
            },
        ],
    )


@pytest.mark.parametrize(
    ("model", "headers", "words", "expected", "rule"),
    [
        ("default-chat", {}, 1, "general", None),
        ("default-chat", {"X-Use-Case": "support"}, 1, "small", "support-desk"),
        ("claude-sonnet-4-5", {}, 1, "claude-up", "claude-family"),
        ("claude-sonnet-4-5", {"X-Use-Case": "helpdesk"}, 1, "small", "support-desk"),
        ("default-chat", {"X-Client-Id": "batch-nightly"}, 1, "small", "batch-jobs"),
        ("default-chat", {}, 60, "long-context", "long-prompts"),
        ("cheap", {}, 60, "small", None),
    ],
    ids=[
        "no-rule",
        "use-case",
        "model-family",
        "first-match-wins",
        "client",
        "prompt-size",
        "size-scoped-by-model",
    ],
)
async def test_rules_choose_the_alias_and_telemetry_names_the_rule(
    gateway_client, upstream, tmp_path, provider_key, model, headers, words, expected, rule
):
    upstream.post(PRIMARY).mock(side_effect=echo_model)
    config = rules_config(tmp_path)
    client = await gateway_client(config)
    response = await ask(client, model, " ".join(["word"] * words), headers)
    assert response.status_code == 200
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == expected
    assert answer["model"] == model  # the client gets the name it asked for
    client.app.state.telemetry.writer.close()
    [line] = log_lines(config)
    assert line["route"] == rule and line["requested_model"] == model
    assert line["upstream_model"] == expected


async def test_an_unknown_model_no_rule_matches_is_404(
    gateway_client, upstream, tmp_path, provider_key
):
    client = await gateway_client(rules_config(tmp_path))
    response = await ask(client, "gpt-9")
    assert response.status_code == 404 and response.json()["error"]["type"] == "model_not_found"


def cheapest_config(tmp_path, **extra):
    return make_config(
        tmp_path,
        aliases={
            "default-chat": {
                "strategy": "cheapest",
                "targets": [
                    {"provider": "primary", "model": "premium"},
                    {"provider": "primary", "model": "unpriced"},
                    {"provider": "primary", "model": "reader"},
                    {"provider": "primary", "model": "writer"},
                ],
            }
        },
        pricing={
            "primary": {
                "premium": {"input_usd_per_mtok": 10, "output_usd_per_mtok": 30},
                # cheap to read, dear to write
                "reader": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 10},
                # dear to read, cheap to write
                "writer": {"input_usd_per_mtok": 5, "output_usd_per_mtok": 2},
            }
        },
        **extra,
    )


@pytest.mark.parametrize(
    ("words", "max_tokens", "expected"),
    [(1000, 1, "reader"), (1, 1000, "writer")],
    ids=["long-prompt-short-answer", "short-prompt-long-answer"],
)
async def test_cheapest_picks_the_lowest_price_for_the_request(
    gateway_client, upstream, tmp_path, provider_key, words, max_tokens, expected
):
    upstream.post(PRIMARY).mock(side_effect=echo_model)
    client = await gateway_client(cheapest_config(tmp_path))
    response = await ask(client, content=" ".join(["w"] * words), max_tokens=max_tokens)
    assert response.json()["choices"][0]["message"]["content"] == expected


async def test_cheapest_skips_an_open_breaker_for_the_next_cheapest(
    gateway_client, upstream, tmp_path, provider_key
):
    def reader_down(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        return httpx.Response(503) if model == "reader" else echo_model(request)

    upstream.post(PRIMARY).mock(side_effect=reader_down)
    config = cheapest_config(tmp_path, breaker={"failure_threshold": 1, "cooldown_s": 60})
    client = await gateway_client(config)
    long_prompt = " ".join(["w"] * 1000)
    first = await ask(client, content=long_prompt, max_tokens=1)
    assert (
        first.json()["choices"][0]["message"]["content"] == "writer"
    )  # reader failed, next cheapest
    second = await ask(client, content=long_prompt, max_tokens=1)
    assert second.json()["choices"][0]["message"]["content"] == "writer"
    client.app.state.telemetry.writer.close()
    lines = log_lines(config)
    assert lines[0]["targets_tried"] == 2 and lines[1]["targets_tried"] == 1
    assert lines[1]["skipped_targets"] == 1
