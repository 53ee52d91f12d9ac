"""SSRF: nothing a client sends changes which host the gateway calls or which key it sends.

A ``Sentinel`` listener stands for every host outside the configured providers
(an internal service, the cloud metadata address): request fields and headers
name it, upstream redirects point at it, and it must never see a connection.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.hostile.harness import PROVIDER_KEY, Exposure, is_envelope
from tests.support.gateway import GatewayProcess
from tests.support.loopback import Sentinel
from tests.support.upstream import FakeUpstream, directive

pytestmark = pytest.mark.slow

CLIENT_SECRETS = {
    "authorization": "Bearer client-secret-authz",
    "x-api-key": "client-secret-x-api-key",
    "api-key": "client-secret-api-key",
    "cookie": "session=client-secret-cookie",
    "x-goog-api-key": "client-secret-goog",
    "proxy-authorization": "Basic client-secret-proxy",
    "anthropic-api-key": "client-secret-anthropic",
    "openai-organization": "client-secret-org",
}


def _hostile_fields(sentinel_url: str) -> dict[str, Any]:
    return {
        "api_base": sentinel_url,
        "base_url": sentinel_url,
        "api_key": "client-chosen-key",
        "api_version": "../../../",
        "deployment_id": "../../evil",
        "extra_headers": {"Host": "127.0.0.1", "Authorization": "Bearer attacker"},
        "extra_body": {"api_base": sentinel_url},
        "extra_query": {"api-version": "x"},
        "custom_llm_provider": "openai",
        "proxy": sentinel_url,
        "url": sentinel_url,
    }


def _hostile_headers(sentinel: Sentinel) -> dict[str, str]:
    host = f"127.0.0.1:{sentinel.port}"
    return {
        "x-forwarded-host": host,
        "x-forwarded-for": "169.254.169.254",
        "forwarded": f"host={host}",
        "x-original-url": f"http://{host}/",
        "x-api-base": f"http://{host}/v1",
        "openai-base-url": f"http://{host}/v1",
        **CLIENT_SECRETS,
    }


def _image_message(rid: str, url: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": directive(rid, "ok")},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", ["chat", "az"])
def test_request_fields_and_headers_never_change_the_host_or_the_key(
    gateway: GatewayProcess,
    upstream: FakeUpstream,
    sentinel: Sentinel,
    exposure: Exposure,
    figures: Any,
    alias: str,
    stream: bool,
) -> None:
    sentinel_url = f"http://127.0.0.1:{sentinel.port}/v1"
    rid = f"ssrf-{alias}-{stream}"
    body = {
        "model": alias,
        "messages": _image_message(rid, sentinel_url + "/image.png"),
        "stream": stream,
        **_hostile_fields(sentinel_url),
    }
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers=_hostile_headers(sentinel),
        timeout=10,
    )
    exposure.answer(response)
    assert response.status_code == 200, response.text
    (sent,) = upstream.of(rid)
    if alias == "chat":
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    else:
        assert sent.path == "/openai/deployments/dep1/chat/completions?api-version=2024-10-21"
        assert "authorization" not in sent.headers
    assert sent.headers["host"] == f"127.0.0.1:{upstream.port}"
    for value in CLIENT_SECRETS.values():
        assert all(value not in header for header in sent.headers.values())
    assert sentinel.connections == 0
    figures.add("ssrf", requests=1)
    figures.record("ssrf", outbound_connections_outside_providers=sentinel.connections)


def test_anthropic_route_fields_never_change_the_host(
    gateway: GatewayProcess,
    upstream: FakeUpstream,
    sentinel: Sentinel,
    exposure: Exposure,
    figures: Any,
) -> None:
    sentinel_url = f"http://127.0.0.1:{sentinel.port}/v1"
    body = {
        "model": "chat",
        "max_tokens": 10,
        **_hostile_fields(sentinel_url),
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": directive("ssrf-messages", "ok")},
                    {"type": "image", "source": {"type": "url", "url": sentinel_url}},
                ],
            }
        ],
    }
    response = httpx.post(
        gateway.base_url + "/v1/messages", json=body, headers=_hostile_headers(sentinel), timeout=10
    )
    exposure.answer(response)
    assert response.status_code < 500
    assert all(a.path == "/v1/chat/completions" for a in upstream.of("ssrf-messages"))
    assert sentinel.connections == 0
    figures.add("ssrf", requests=1)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_redirects_are_not_followed(
    gateway: GatewayProcess,
    upstream: FakeUpstream,
    sentinel: Sentinel,
    exposure: Exposure,
    figures: Any,
    stream: bool,
) -> None:
    requests = 0
    for target in (f"127.0.0.1:{sentinel.port}", "169.254.169.254:80"):
        rid = f"redirect-{target}-{stream}"
        body = {
            "model": "chat",
            "stream": stream,
            "messages": [{"role": "user", "content": directive(rid, f"redirect:{target}")}],
        }
        response = httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=10)
        requests += 1
        exposure.answer(response)
        assert response.status_code == 502
        assert is_envelope(502, response.content, "/v1/chat/completions")
        assert "302" in response.json()["error"]["message"]
        assert len(upstream.of(rid)) == 1  # a redirect is not retried either
        # Following it to the metadata address would take the whole connect timeout.
        assert response.elapsed.total_seconds() < 1.5
    assert sentinel.connections == 0
    figures.add("ssrf", requests=requests)
    figures.record("ssrf", outbound_connections_outside_providers=sentinel.connections)
