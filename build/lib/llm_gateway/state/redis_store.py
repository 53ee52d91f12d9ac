"""The Redis connection every shared counter uses: one pool, scripts, one failure policy.

Counters that must hold across replicas (request and token windows, and
spend) each check-and-count in one Lua script, so no two gateways can both
read "one left" and both take it. ``RedisStore`` runs those scripts by
EVALSHA: the SHA is computed here, the script is loaded once at start-up and
loaded again when Redis answers NOSCRIPT (after a restart or a SCRIPT FLUSH).

Failures are the store's job too, so every counter behaves alike: each call
has short connect and reply timeouts and no backoff; a failed call is counted
(``failures``), logged on stderr (never in the telemetry log) and raised as
``StateUnavailable``, and the caller applies ``on_error``. Connections are
made on demand, so the gateway starts while Redis is down and uses it again
with the first call after it is back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from ..config import StateConfig

log = logging.getLogger("gateway.state")

Arg = str | int
# What a call to an unreachable, slow or broken Redis raises (OSError covers timeouts).
_FAILURES = (RedisError, OSError)


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


class RedisStore:
    """A pooled asyncio Redis client that runs registered scripts under one failure policy."""

    def __init__(self, config: StateConfig, scripts: Sequence[Script]) -> None:
        self.key_prefix = config.key_prefix
        self.on_error = config.on_error
        self.failures = 0
        """Failed Redis calls since start-up (each one also logged)."""
        self._scripts = tuple(scripts)
        # One immediate retry on a fresh connection, only after a connection error, covers
        # pooled sockets that a Redis restart closed; a timeout is not retried and nothing
        # backs off, so a dead or stuck Redis costs a request one timeout, not a series.
        pool = BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            timeout=config.timeout_s,
            socket_timeout=config.timeout_s,
            socket_connect_timeout=config.timeout_s,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._client = Redis.from_pool(pool)

    async def start(self) -> None:
        """Load the scripts; when Redis is not reachable yet, log it and start anyway."""
        try:
            await self._load()
        except _FAILURES as exc:
            log.warning("gateway: redis not reachable at start-up (%s); will retry", _why(exc))

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> object:
        """The script's reply; ``StateUnavailable`` when Redis fails."""
        try:
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self._load()
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except _FAILURES as exc:
            self.failures += 1
            log.warning(
                "gateway: redis unavailable (%s: %s); on_error=%s, failures=%d",
                script.name,
                _why(exc),
                self.on_error,
                self.failures,
            )
            raise StateUnavailable(script.name) from None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _load(self) -> None:
        for script in self._scripts:
            await self._client.script_load(script.source)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
