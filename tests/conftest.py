"""Shared fixtures: configs, the app in-process with its lifespan, and a respx upstream."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from src.config import GatewayConfig, parse_config
from src.edge.app import create_app
from tests import redis_support
from tests.redis_topologies import LocalCluster, delete_cluster_prefix

UPSTREAM = "http://upstream.test/v1"
PROVIDER_KEY = "sk-Qz7f3a9c1e5b2d4086Xw"
SCHEMA_PATH = Path(__file__).parent / "fixtures" / "openai-chat-subset.json"


def make_config(tmp_path: Path, **overrides: Any) -> GatewayConfig:
    """A config with provider ``primary`` (keyed) and ``secondary`` (keyless) at the respx upstream."""
    data: dict[str, Any] = {
        "providers": {
            "primary": {
                "type": "openai",
                "base_url": UPSTREAM,
                "api_key_env": "TEST_PRIMARY_KEY",
                "timeout_s": 2,
            },
            "secondary": {"type": "openai", "base_url": "http://secondary.test/v1", "timeout_s": 2},
        },
        "aliases": {
            "default-chat": {
                "provider": "primary",
                "model": "up-model-a",
                "fallbacks": [{"provider": "secondary", "model": "up-model-b"}],
            },
            "solo": {"provider": "primary", "model": "up-model-a"},
        },
        "rate_limit": {"requests_per_minute": 1000},
        "log_file": str(tmp_path / "logs" / "gateway.log"),
    }
    data.update(overrides)
    return parse_config(data)


@pytest.fixture
def provider_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TEST_PRIMARY_KEY", PROVIDER_KEY)
    return PROVIDER_KEY


@pytest.fixture
def upstream() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False)


@pytest.fixture
async def gateway_client(
    upstream: respx.MockRouter,
) -> AsyncIterator[Callable[[GatewayConfig], Any]]:
    """``await gateway_client(config)`` → an httpx client on the app, lifespan running."""
    stack: list[Any] = []

    async def open_client(config: GatewayConfig) -> httpx.AsyncClient:
        app = create_app(config, transport=lambda spec: httpx.MockTransport(upstream.async_handler))
        lifespan = app.lifespan()
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
        )
        stack.append((lifespan, client))
        client.app = app  # type: ignore[attr-defined]
        return client

    yield open_client
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def completion(
    content: str = "Hello there.", *, model: str = "up-model-a", usage: bool = True
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "chatcmpl-up1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }
    if usage:
        answer["usage"] = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    return answer


def chat_body(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "default-chat", "messages": [{"role": "user", "content": content}], **extra}


def log_lines(config: GatewayConfig) -> list[dict[str, Any]]:
    path = Path(config.log_file)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def openai_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="session")
def validate_schema(openai_schema: dict[str, Any]) -> Callable[[Any, str], None]:
    """``validate_schema(instance, "CreateChatCompletionResponse")`` against OpenAI's description."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resource = Resource.from_contents(openai_schema, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:openai", resource)

    def validate(instance: Any, name: str) -> None:
        schema = {"$ref": f"urn:openai#/components/schemas/{name}"}
        jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)

    return validate


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis that answers: ``REDIS_URL``, else a private ``redis-server`` for the session."""
    if redis_support.answers(redis_support.REDIS_URL):
        yield redis_support.REDIS_URL
        return
    if not redis_support.has_redis_server():
        redis_support.unavailable(
            f"no Redis answers at {redis_support.REDIS_URL} and no redis-server on PATH:"
            f" {redis_support.HOW_TO_GET_ONE}"
        )
    server = redis_support.RedisServer(redis_support.redis_server_binary(), free_port())
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix for this test alone; its keys are deleted afterwards."""
    yield from redis_support.prefix_for(redis_url)


@pytest.fixture
def redis_server() -> Iterator[redis_support.RedisServer]:
    """A private ``redis-server`` on a free port, for tests that stop and restart it."""
    server = redis_support.RedisServer(redis_support.redis_server_binary(), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A private Redis Cluster of three primaries for the session (``redis_topologies``)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_prefix(redis_cluster: LocalCluster) -> Iterator[str]:
    """A key prefix for this test alone on the session's cluster; deleted afterwards."""
    prefix = redis_support.new_prefix()
    yield prefix
    delete_cluster_prefix(redis_cluster.url, prefix)


@pytest.fixture(params=["memory", "redis", "cluster"])
def state(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``state`` config of each backend (memory, one Redis, a Redis Cluster): tests that
    take it run once per backend."""
    if request.param == "memory":
        return {"backend": "memory"}
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
        prefix = request.getfixturevalue("cluster_prefix")
        mode = "cluster"
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        mode = "standalone"
    # A generous timeout: on a loaded machine a short one would fail open and break exactness.
    return {
        "backend": "redis", "redis_mode": mode, "redis_url": url, "key_prefix": prefix,
        "timeout_s": 5,
    }  # fmt: skip
