"""The Redis connection every shared counter uses: one client, scripts, one failure policy.

Counters that must hold across replicas (request and token limits, spend)
each check-and-count in one Lua script, so no two gateways can both read
"one left" and both take it. ``RedisStore`` runs those scripts by EVALSHA:
the SHA is computed here, the scripts are loaded at start-up, and a server
that answers NOSCRIPT (restarted, flushed, or a cluster node that joined
later) gets the script's source by EVAL, which also caches it there.

``state.redis_mode`` picks the client: one server (``standalone``), a Redis
Cluster (``cluster``: redis-py's cluster client follows MOVED and ASK and
re-reads the slot map after a failover) or the primary a Sentinel names
(``sentinel``: redis-py's Sentinel client asks again after a failover). A
script's keys share one hash slot (``slot_tag``), so it runs on one node.

Failures are the store's job too, so every counter behaves alike: each call
has short connect and reply timeouts and no backoff; at most
``max_connections`` calls are in flight, a call waiting at most ``timeout_s``
for its turn; a failed call is counted (``failures``), logged on stderr
(never in the telemetry log) and raised as ``StateUnavailable``, and the
caller applies ``on_error``. Connections are made on demand, so the gateway
starts while Redis is down and uses it again with the first call after it is
back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from ..config import StateConfig

log = logging.getLogger("gateway.state")

Arg = str | int | float
# What a call to an unreachable, slow or broken Redis raises (OSError covers timeouts).
_FAILURES = (RedisError, RedisClusterException, OSError)
# Calls of one flush sent at once to a cluster (each also takes its turn).
_CLUSTER_BATCH = 8


class StateUnavailable(Exception):
    """Redis did not answer in time, or answered with an error; already counted and logged."""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1, the name EVALSHA runs it by."""

    name: str
    source: str
    sha: str

    @classmethod
    def of(cls, name: str, source: str) -> Script:
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


def slot_tag(client_id: str) -> str:
    """``{<client_id>}``, the hash tag that puts all of a client's keys in one cluster slot.

    Redis hashes the text between the first ``{`` and the next ``}``, so braces
    in the id are escaped (as ``%7B`` and ``%7D``, and ``%`` as ``%25``, which
    keeps distinct ids distinct); an empty id becomes ``%``, as ``{}`` would
    hash the whole key.
    """
    if "{" in client_id or "}" in client_id or "%" in client_id:
        client_id = client_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + (client_id or "%") + "}"


class RedisStore:
    """An asyncio Redis client (one server, a cluster, or a Sentinel's primary) that runs
    registered scripts under one failure policy."""

    def __init__(self, config: StateConfig, scripts: Sequence[Script]) -> None:
        self.key_prefix = config.key_prefix
        self.on_error = config.on_error
        self.failures = 0
        """Failed Redis calls since start-up (each one also logged)."""
        self._scripts = tuple(scripts)
        self._timeout_s = config.timeout_s
        self._client: Any = _client(config)
        self._cluster = config.redis_mode == "cluster"
        # The cluster and Sentinel pools refuse a call beyond max_connections instead of
        # waiting for a connection: calls wait here for their turn, as long as timeout_s.
        self._turns = asyncio.Semaphore(config.max_connections)

    async def start(self) -> None:
        """Load the scripts; when Redis is not reachable yet, log it and start anyway."""
        try:
            for script in self._scripts:
                await self._client.script_load(script.source)
        except _FAILURES as exc:
            log.warning("gateway: redis not reachable at start-up (%s); will retry", _why(exc))

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> object:
        """The script's reply; ``StateUnavailable`` when Redis fails."""
        try:
            await self._take_turn()
            try:
                return await self._eval(script, keys, args)
            finally:
                self._turns.release()
        except _FAILURES as exc:
            raise self._failed(script.name, exc) from None

    async def run_many(
        self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
    ) -> None:
        """Run ``script`` once per ``(keys, args)``: pipelined in one round trip on one server;
        on a cluster (whose pipelines refuse scripts) as concurrent calls, a batch at a time.

        Replies are dropped; a call that fails is run again on its own (so a NOSCRIPT
        loads the script); ``StateUnavailable`` when Redis fails.
        """
        try:
            if self._cluster:
                await self._run_concurrently(script, calls)
                return
            await self._take_turn()
            try:
                pipe = self._client.pipeline(transaction=False)
                for keys, args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
                for (keys, args), reply in zip(calls, replies, strict=True):
                    if isinstance(reply, Exception):
                        await self._eval(script, keys, args)
            finally:
                self._turns.release()
        except _FAILURES as exc:
            raise self._failed(script.name, exc) from None

    async def _run_concurrently(
        self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
    ) -> None:
        async def one(keys: Sequence[str], args: Sequence[Arg]) -> object:
            await self._take_turn()
            try:
                return await self._eval(script, keys, args)
            finally:
                self._turns.release()

        for start in range(0, len(calls), _CLUSTER_BATCH):
            batch = calls[start : start + _CLUSTER_BATCH]
            replies = await asyncio.gather(*(one(*call) for call in batch), return_exceptions=True)
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _take_turn(self) -> None:
        if not self._turns.locked():
            await self._turns.acquire()  # free: returns at once
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._turns.acquire()
        except TimeoutError:
            raise RedisConnectionError("no connection free within timeout_s") from None

    async def _eval(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> object:
        try:
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._client.eval(script.source, len(keys), *keys, *args)

    def _failed(self, operation: str, exc: BaseException) -> StateUnavailable:
        self.failures += 1
        log.warning(
            "gateway: redis unavailable (%s: %s); on_error=%s, failures=%d",
            operation,
            _why(exc),
            self.on_error,
            self.failures,
        )
        return StateUnavailable(operation)


def _client(config: StateConfig) -> Any:
    """The redis-py client for ``redis_mode``: short timeouts, one retry on a new connection.

    The one immediate retry, only after a connection error, covers pooled sockets that
    a restart or a failover closed; a timeout is not retried and nothing backs off, so
    a dead or stuck Redis costs a call one timeout, not a series. (The cluster client
    re-reads the slot map before its one retry, and retries a timeout too.)
    """
    timeouts: dict[str, Any] = {
        "socket_timeout": config.timeout_s,
        "socket_connect_timeout": config.timeout_s,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if config.redis_mode == "cluster":
        return RedisCluster.from_url(
            config.redis_url, max_connections=config.max_connections, **timeouts
        )
    if config.redis_mode == "sentinel":
        assert config.sentinel_service is not None
        parts = urlsplit(config.redis_url)
        hosts = [_host_port(item) for item in parts.netloc.rpartition("@")[2].split(",")]
        primary: dict[str, Any] = {"db": int(parts.path.strip("/") or 0)}
        if parts.scheme == "rediss":  # TLS to the Sentinels and to the primary
            timeouts["ssl"] = True
        if parts.password is not None:
            primary["password"] = unquote(parts.password)
            primary["username"] = unquote(parts.username) if parts.username else None
        # A Sentinel that does not answer is skipped for the next one, not retried.
        asking = {**timeouts, "retry": Retry(NoBackoff(), 0)}
        sentinel = Sentinel(hosts, sentinel_kwargs=asking, **timeouts)  # type: ignore[no-untyped-call]
        return sentinel.master_for(
            config.sentinel_service, max_connections=config.max_connections, **primary
        )
    pool = ConnectionPool.from_url(
        config.redis_url, max_connections=config.max_connections, **timeouts
    )
    return Redis.from_pool(pool)


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit():
        return item or "127.0.0.1", 26379
    return host.strip("[]"), int(port)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
