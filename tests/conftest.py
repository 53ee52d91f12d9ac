"""Fixtures every folder shares: the app in-process with respx, Redis, a gateway process, the fake
upstream, OpenAI's schemas; and the markers derived from the fixtures a test uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from src.config import GatewayConfig
from src.edge.app import create_app
from tests.support import redis_servers
from tests.support.gateway import GatewayProcess
from tests.support.loopback import free_port
from tests.support.redis_topologies import LocalCluster, delete_cluster_prefix
from tests.support.schema import Validate, openai_validator
from tests.support.upstream import FakeUpstream

# Re-exported: older modules import these helpers from here; new ones import tests.support.
from tests.support.configs import PROVIDER_KEY as PROVIDER_KEY  # isort: skip
from tests.support.configs import UPSTREAM as UPSTREAM  # isort: skip
from tests.support.configs import log_lines as log_lines  # isort: skip
from tests.support.configs import make_config as make_config  # isort: skip
from tests.support.payloads import chat_body as chat_body  # isort: skip
from tests.support.payloads import completion as completion  # isort: skip

_REDIS_FIXTURES = {"redis_url", "redis_prefix", "redis_server", "redis_cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``redis`` every test that uses a Redis fixture or runs the Redis variant of ``state``;
    mark ``slow`` too every test that starts a ``redis-server`` of its own."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        variant = callspec.params.get("state") if callspec is not None else None
        if names & _REDIS_FIXTURES or variant in ("redis", "cluster"):
            item.add_marker(pytest.mark.redis)
        if "redis_server" in names or "redis_cluster" in names or variant == "cluster":
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def provider_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TEST_PRIMARY_KEY", PROVIDER_KEY)
    return PROVIDER_KEY


@pytest.fixture
def upstream() -> respx.MockRouter:
    """The network edge of the app in-process: routes set per test, nothing else reachable."""
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


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """The loopback fake provider (``tests/support/upstream/``), started."""
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def launch_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """``launch_gateway(config, **options)``: a started ``GatewayProcess``, stopped at the end."""
    started: list[GatewayProcess] = []

    def launch(config: dict[str, Any] | Path, **options: Any) -> GatewayProcess:
        gateway = GatewayProcess(config, tmp_path, **options)
        started.append(gateway)
        return gateway.start()

    yield launch
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def validate_schema() -> Validate:
    """``validate_schema(instance, "CreateChatCompletionResponse")``: OpenAI's description."""
    return openai_validator()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis that answers: ``REDIS_URL``, else a private ``redis-server`` for the session."""
    if redis_servers.answers(redis_servers.REDIS_URL):
        yield redis_servers.REDIS_URL
        return
    if not redis_servers.has_redis_server():
        redis_servers.unavailable(
            f"no Redis answers at {redis_servers.REDIS_URL} and no redis-server on PATH:"
            f" {redis_servers.HOW_TO_GET_ONE}"
        )
    server = redis_servers.RedisServer(redis_servers.redis_server_binary(), free_port())
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix for this test alone; its keys are deleted afterwards."""
    yield from redis_servers.prefix_for(redis_url)


@pytest.fixture
def redis_server() -> Iterator[redis_servers.RedisServer]:
    """A private ``redis-server`` on a free port, for tests that stop and restart it."""
    server = redis_servers.RedisServer(redis_servers.redis_server_binary(), free_port())
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
    prefix = redis_servers.new_prefix()
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
