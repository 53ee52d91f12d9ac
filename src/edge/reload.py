"""Config reload without downtime: ``POST /admin/reload`` and ``SIGHUP``.

A reload reads and validates the config file again and builds a new
``Gateway`` (routes, clients, policies, prices, provider connections) over the
same limiter and spend store, so rate-limit windows and spend carry over. The
new gateway takes every request that starts after the swap; requests already
running finish on the old one, which closes its provider connections once the
last of them has ended. A config that does not load is refused with its
reason, and the running one stays.

``log_file`` and ``ledger_file`` cannot change on reload (their writers hold
the files open); changing them needs a restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..config import ConfigError, GatewayConfig, config_path, load_config
from ..config.check import refuse_errors
from ..config.diff import diff
from ..errors import GatewayError, InvalidConfig
from ..governance.identity import OPEN_MODE_WARNING
from ..governance.policies import Policies
from ..observability.metrics import InFlight
from ..observability.telemetry import CircuitListener
from ..pipeline.gateway import Gateway
from ..pipeline.waiting import Waiting
from ..providers import PoolObservers, Providers, TransportFactory
from ..state.limiter import Limiter
from ..state.spend import SpendStore
from .admin import AdminGuard
from .dialects import OPENAI
from .wire import json_response

# uvicorn has already waited for running requests when the lifespan ends.
_DRAIN_AT_SHUTDOWN_S = 5.0


def build_gateway(
    config: GatewayConfig,
    policies: Policies,
    limiter: Limiter,
    spend: SpendStore,
    transport: TransportFactory | None,
    on_circuit: CircuitListener | None = None,
    queue: Waiting | None = None,
    in_flight: InFlight | None = None,
    pools: PoolObservers | None = None,
) -> Gateway:
    return Gateway(
        config, Providers(config, transport, pools), limiter, spend, policies, on_circuit,
        queue, in_flight,
    )  # fmt: skip


class Reloader:
    """Swaps ``state.gateway`` for one built from the config file, one reload at a time."""

    def __init__(
        self,
        state: Any,
        path: str | os.PathLike[str] | None,
        transport: TransportFactory | None,
    ) -> None:
        self._state = state
        self.path = Path(path) if path is not None else config_path()
        self._transport = transport
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._retired: list[Gateway] = []

    async def reload(self) -> Gateway:
        """The new gateway, now serving; ``ConfigError`` (and nothing changed) when refused."""
        async with self._lock:
            current: Gateway = self._state.gateway
            config = await asyncio.to_thread(load_config, self.path)
            refuse_errors(config, str(self.path))
            for name, old, new in (
                ("log_file", current.config.log_file, config.log_file),
                ("ledger_file", str(current.config.ledger_path()), str(config.ledger_path())),
            ):
                if old != new:
                    raise ConfigError(
                        f"config {self.path}: {name}: cannot change on reload"
                        f" ({old!r} -> {new!r}); restart the gateway"
                    )
            policies = Policies(config, str(self.path))
            gateway = build_gateway(
                config,
                policies,
                current.limiter,
                current.spend,
                self._transport,
                self._state.telemetry.circuit_changed,
                current.queue,
                current.process_in_flight,
                current.providers.observers,
            )
            self._state.gateway = gateway
            self._state.admin = AdminGuard(config)
            _log_changes(self.path, current.config, config)
            self._retired.append(current)
            self._spawn(self._retire(current))
            if config.clients is None and current.config.clients is not None:
                print(OPEN_MODE_WARNING, file=sys.stderr, flush=True)
            return gateway

    def install_signal(self) -> None:
        """Reload on SIGHUP where signal handlers can be set (the main thread, not Windows)."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_signal)
        except (NotImplementedError, RuntimeError, ValueError):
            return

    def remove_signal(self) -> None:
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError, ValueError):
            return

    def _on_signal(self) -> None:
        self._spawn(self._reload_and_report())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire(self, gateway: Gateway) -> None:
        await gateway.retire()
        self._retired.remove(gateway)

    async def _reload_and_report(self) -> None:
        try:
            await self.reload()
        except ConfigError as exc:
            print(f"gateway: reload refused, the running config stays: {exc}", file=sys.stderr)

    async def aclose(self) -> None:
        """At shutdown: give retiring gateways a moment to drain, then close every one."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_DRAIN_AT_SHUTDOWN_S)
            for task in self._tasks:
                task.cancel()
        for gateway in [*self._retired, self._state.gateway]:
            await gateway.providers.aclose()


def _log_changes(path: Path, old: GatewayConfig, new: GatewayConfig) -> None:
    """Name what the reload changed, on stderr (the operator's log, not the telemetry file)."""
    changes = diff(old, new)
    lines = [f"gateway: config reloaded from {path}: {len(changes) or 'no'} change(s)"]
    lines += [f"gateway:   {change}" for change in changes]
    print("\n".join(lines), file=sys.stderr, flush=True)


async def admin_reload(request: Request) -> Response:
    """``POST /admin/reload``: 200 and a summary of the new config, or why it was refused."""
    reloader: Reloader = request.app.state.reloader
    try:
        guard: AdminGuard = request.app.state.admin
        guard.check_control(request)
        try:
            gateway = await reloader.reload()
        except ConfigError as exc:
            raise InvalidConfig(f"Reload refused, the running config stays: {exc}") from None
    except GatewayError as exc:
        return OPENAI.error_response(exc)
    config = gateway.config
    return json_response(
        {
            "status": "reloaded",
            "config": str(reloader.path),
            "aliases": len(config.aliases),
            "clients": None if config.clients is None else len(config.clients),
            "policies": len(config.policies),
        }
    )
