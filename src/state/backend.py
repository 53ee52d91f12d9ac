"""Where the gateway's counters live, chosen by ``config.state.backend`` at start-up.

``memory`` keeps the rate-limit state and the spend in this process (spend
also in the ledger file): nothing to run, but several workers or replicas
each enforce their own limits, which start-up says in one warning line when it
can tell there are several workers. ``redis`` keeps both in one Redis every
process shares (a server, a cluster or a Sentinel's primary: one
``RedisStore``), with the ``on_error`` policy. The backend is fixed at
start-up: a reload keeps it (changing ``state`` needs a restart).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import GatewayConfig
from .limiter import Limiter
from .limiter.memory import MemoryLimiter
from .spend import SpendStore
from .spend.memory import MemorySpendStore

if TYPE_CHECKING:
    from .redis_state import RedisState

log = logging.getLogger("gateway.state")


class StateBackend:
    """The limiter, the spend store and, with ``redis``, the state both run on."""

    def __init__(
        self, limiter: Limiter, spend: SpendStore, shared: RedisState | None = None
    ) -> None:
        self.limiter = limiter
        self.spend = spend
        self.shared = shared

    @property
    def failures(self) -> int:
        """Failed calls to the shared store since start-up; 0 with the memory backend."""
        return self.shared.store.failures if self.shared is not None else 0

    async def flush(self) -> None:
        """Apply the settlements a shared store holds back (``RedisState``); now, not later."""
        if self.shared is not None:
            await self.shared.flush()

    async def aclose(self) -> None:
        """Flush what is waiting and close the stores."""
        await self.spend.aclose()
        if self.shared is not None:
            await self.shared.aclose()
            await self.shared.store.aclose()


async def open_backend(gateway_config: GatewayConfig) -> StateBackend:
    """The configured backend, ready to serve; never fails because Redis is down."""
    config = gateway_config.state
    if config.backend == "memory":
        workers = worker_count(sys.argv, os.environ.get("WEB_CONCURRENCY"))
        if workers > 1:
            log.warning(
                "gateway: warning: state.backend is memory with %d workers: each worker enforces"
                " its own limits (up to %d times the configured limit); use state.backend redis",
                workers,
                workers,
            )
        spend = await MemorySpendStore.open(gateway_config.ledger_path())
        return StateBackend(MemoryLimiter(), spend)
    # Imported here: redis-py takes ~0.1 s to import, which the memory backend need not pay.
    from .limiter.redis import RedisLimiter
    from .redis_scripts import SCRIPTS
    from .redis_state import RedisState
    from .redis_store import RedisStore
    from .spend.redis import RedisSpendStore

    store = RedisStore(config, SCRIPTS)
    await store.start()
    shared = RedisState(store)
    return StateBackend(RedisLimiter(shared), RedisSpendStore(shared), shared)


def worker_count(argv: Sequence[str], web_concurrency: str | None) -> int:
    """How many worker processes serve the app, as far as this process can tell.

    uvicorn's workers are spawned with the supervisor's command line in
    ``sys.argv``, so ``--workers N`` is read from there; otherwise
    ``WEB_CONCURRENCY`` (which uvicorn and gunicorn also read); otherwise 1.
    """
    for index, arg in enumerate(argv):
        value: str | None = None
        if arg == "--workers" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        if value is not None:
            return int(value) if value.isdigit() else 1
    if web_concurrency and web_concurrency.isdigit():
        return int(web_concurrency)
    return 1
