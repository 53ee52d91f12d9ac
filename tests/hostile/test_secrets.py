"""Secrets: the canary keys appear nowhere the gateway speaks, over the whole hostile suite.

What every hostile test makes the gateway say (answer bodies and headers, the
telemetry file, the gateway processes' stdout and stderr) is scanned for every
form of every canary when that test ends (``conftest.py``), in any order. The
tests here add the cases most likely to leak: upstream error bodies quoting the
key, for every provider type, streamed or not, on every route, and the official
SDK's exception texts.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import openai
import pytest

from tests.hostile.harness import (
    ADMIN_KEY,
    ANTHROPIC_KEY,
    AZURE_KEY,
    CANARIES,
    CLIENT_KEY,
    PROVIDER_KEY,
    Exposure,
    leaks,
)
from tests.support.gateway import GatewayProcess
from tests.support.loopback import wait_until
from tests.support.upstream import FakeUpstream, directive

pytestmark = pytest.mark.slow

ROUTES = ("/v1/chat/completions", "/v1/chat", "/v1/messages", "/v1/embeddings")


def _body(route: str, alias: str, rid: str, plan: str, stream: bool) -> dict[str, Any]:
    text = directive(rid, plan)
    if route == "/v1/embeddings":
        return {"model": alias, "input": text}
    body: dict[str, Any] = {"model": alias, "messages": [{"role": "user", "content": text}]}
    if route == "/v1/messages":
        body["max_tokens"] = 10
    if route == "/v1/chat":
        body["client_id"] = "secrets"
    elif stream:
        body["stream"] = True
    return body


@pytest.mark.parametrize("alias", ["chat", "az", "anth"])
def test_upstream_errors_that_quote_the_key_never_reach_the_client(
    gateway: GatewayProcess, upstream: FakeUpstream, exposure: Exposure, alias: str
) -> None:
    key = {"chat": PROVIDER_KEY, "az": AZURE_KEY, "anth": ANTHROPIC_KEY}[alias]
    with httpx.Client(base_url=gateway.base_url, timeout=15) as client:
        for route in ROUTES:
            for status in (400, 401, 403, 429, 500):
                for stream in (False, True):
                    rid = f"echo-{alias}-{route}-{status}-{stream}"
                    body = _body(route, alias, rid, f"echo:{status}", stream)
                    response = client.post(route, json=body)
                    exposure.answer(response)
                    assert response.status_code >= 400
                    sent = upstream.of(rid)
                    if sent:  # the upstream did get the key, and quoted it back
                        assert any(key in str(a.headers) for a in sent)
                    assert not leaks([response.text, str(response.headers)], [key])


def test_sdk_exception_texts_carry_no_key(
    gateway: GatewayProcess, upstream: FakeUpstream, exposure: Exposure
) -> None:
    sdk = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="client-key", max_retries=0)
    for status in (400, 401, 500):
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(
                model="chat",
                messages=[
                    {"role": "user", "content": directive(f"sdk-{status}", f"echo:{status}")}
                ],
            )
        exposure.text(str(caught.value))
        exposure.text(repr(caught.value.body))
        assert not leaks([str(caught.value)], CANARIES)
    sdk.close()


def test_client_credential_headers_never_reach_an_upstream(
    gateway: GatewayProcess, upstream: FakeUpstream, exposure: Exposure
) -> None:
    client_secrets = {
        "authorization": "Bearer client-canary-authorization",
        "x-api-key": "client-canary-x-api-key",
        "api-key": "client-canary-api-key",
        "cookie": "sid=client-canary-cookie",
        "x-goog-api-key": "client-canary-goog",
        "anthropic-api-key": "client-canary-anthropic",
        "proxy-authorization": "Basic client-canary-proxy",
    }
    for alias in ("chat", "az", "anth"):
        for route in ("/v1/chat/completions", "/v1/messages"):
            rid = f"client-headers-{alias}-{route}"
            response = httpx.post(
                gateway.base_url + route,
                json=_body(route, alias, rid, "ok", False),
                headers=client_secrets,
                timeout=10,
            )
            exposure.answer(response)
            for attempt in upstream.of(rid):
                forwarded = str(attempt.headers)
                assert all(value not in forwarded for value in client_secrets.values())
                assert "client-canary" not in str(attempt.body)


def test_client_and_admin_keys_never_echo_and_never_reach_an_upstream(
    keyed_gateway: GatewayProcess, upstream: FakeUpstream, exposure: Exposure
) -> None:
    near_misses = [
        CLIENT_KEY,
        CLIENT_KEY[:-1],
        CLIENT_KEY + "x",
        CLIENT_KEY.upper(),
        CLIENT_KEY[::-1],
        ADMIN_KEY,
    ]
    with httpx.Client(base_url=keyed_gateway.base_url, timeout=15) as client:
        for index, key in enumerate(near_misses):
            for header in ("authorization", "x-api-key"):
                value = f"Bearer {key}" if header == "authorization" else key
                for route in ROUTES:
                    rid = f"client-key-{index}-{header}-{route}"
                    body = _body(route, "chat", rid, "echo:401", stream=False)
                    body["client_id"] = "mallory"  # an impostor claim, answered with a 403
                    response = client.post(
                        route, json=body, headers={header: value, "x-client-id": "mallory"}
                    )
                    exposure.answer(response)
                    for attempt in upstream.of(rid):
                        assert CLIENT_KEY not in str(attempt.headers)
                        assert CLIENT_KEY[:12] not in str(attempt.body)
            for admin_path in ("/admin/reload", "/metrics", "/dashboard/data"):
                method = "POST" if admin_path == "/admin/reload" else "GET"
                response = client.request(
                    method, admin_path, headers={"authorization": f"Bearer {key}x"}
                )
                exposure.answer(response)
                assert response.status_code in {401, 403, 404}


def test_no_form_of_any_canary_appears_in_what_leaky_upstream_errors_made_the_gateway_say(
    gateway: GatewayProcess, exposure: Exposure
) -> None:
    ids = []
    with httpx.Client(base_url=gateway.base_url, timeout=15) as client:
        for alias in ("chat", "az", "anth"):
            for route in ROUTES:
                rid = f"scan-{alias}-{route}"
                response = client.post(route, json=_body(route, alias, rid, "echo:401", False))
                exposure.answer(response)
                ids.append(response.headers["x-request-id"])
    assert wait_until(lambda: all(i in gateway.log_file.read_text() for i in ids), timeout=5)
    texts = list(exposure.everything())
    assert texts, "the suite collected what the gateway said"
    found = leaks(texts, CANARIES)
    assert not found, found[:5]


def test_the_scan_would_see_a_leak() -> None:
    # The detector itself: a key piece, a hash, a hash piece in the middle of text.
    digest = hashlib.sha256(PROVIDER_KEY.encode()).hexdigest()
    assert leaks([f"xx {PROVIDER_KEY[5:13]} yy"], [PROVIDER_KEY])
    assert leaks([f"key hash {digest}"], [PROVIDER_KEY])
    assert leaks([f"fingerprint={digest[20:28]}"], [PROVIDER_KEY])
    assert not leaks(["nothing to see gw-0123456789ab"], [PROVIDER_KEY])
