"""The HTTP layer: translates requests into the pipeline and its results back into HTTP.

``create_app`` reads the config and loads its policy hooks (a bad one stops
start-up with one line naming the file and the field); the lifespan opens what
the gateway holds (one pooled transport per provider; the state backend, i.e.
the limiter and the spend store, in memory with the ledger or in Redis; the
telemetry writer and its sinks: metrics, the dashboard's rolling aggregate,
tracing; the SIGHUP reload handler) and closes it at shutdown.
``app_from_environment`` is the factory the console command and ``src.app`` use.

Each request takes ``state.gateway`` once, when it starts, and uses that
gateway to its end: a reload swaps ``state.gateway`` without touching the
requests already running.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .. import __version__
from ..config import ConfigError, GatewayConfig, load_config
from ..config import config_path as default_config_path
from ..config.check import refuse_errors
from ..errors import GatewayError, InvalidRequest, MethodNotAllowed, RouteNotFound, ShuttingDown
from ..governance.identity import OPEN_MODE_WARNING
from ..governance.policies import Policies
from ..observability import metrics as metrics_module
from ..observability.labels import Labels
from ..observability.logfile import LineWriter
from ..observability.metrics import InFlight, Metrics
from ..observability.rolling import Rolling
from ..observability.telemetry import CircuitListener, Sink, Telemetry
from ..observability.tracing import Tracing, exporter_names
from ..pipeline.waiting import CapacityQueue
from ..providers import TransportFactory
from ..providers.pool import raise_open_files_limit
from ..state.backend import open_backend
from .admin import AdminGuard
from .protocol import GatewayProtocol
from .reload import Reloader, build_gateway
from .routes import API_ROUTES, OTHER_ROUTES, dialect_for
from .schemas import openapi_body
from .shutdown import on_sigterm
from .streams import SSEResponse

_WATCH_AFTER_S = 0.05
# The cyclic collector's thresholds: young collections as Python's defaults, full ones
# after 1,000 middle ones instead of 10. A full pass walks every live object: with
# thousands of open streams that is over 100,000 objects and a pause of 100 ms or more
# for every stream at once. The relay makes no reference cycles, so that little waits.
GC_THRESHOLDS = (700, 10, 1000)
_SHUTTING_DOWN = "The gateway is shutting down and takes no new requests; retry."
_INTERRUPTED = "The gateway is shutting down; the stream was ended at its drain deadline."


class GatewayApp:
    """The ASGI entry point: the chat routes straight to their handlers, the rest through FastAPI.

    The chat routes carry all the traffic; FastAPI's middleware and request
    plumbing cost more per call than the rest of the gateway. FastAPI still
    declares those routes (405s, OpenAPI) and serves every other path, and
    runs the lifespan. ``state`` is FastAPI's, so handlers read it the same way.
    """

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self.state = api.state
        self.draining = False
        self._streams: set[SSEResponse] = set()
        self._direct: dict[str, Callable[[Request], Awaitable[Response | SSEResponse]]] = {
            route.path: route.endpoint() for route in API_ROUTES
        }

    def endpoint(self, path: str) -> Callable[[Request], Awaitable[Response | SSEResponse]]:
        """The handler of an API route, for FastAPI's declaration of it (405s, OpenAPI)."""
        return self._direct[path]

    def lifespan(self) -> Any:
        return self.api.router.lifespan_context(self.api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        raw = scope.get("raw_path")
        if raw is not None and b"%" in raw.partition(b"?")[0]:
            # Routes match their path literally: "/v1/chat%2fcompletions" is not the chat
            # route, whatever the decoded path says (a proxy in front would not think so).
            error = RouteNotFound(f"No route {raw.partition(b'?')[0].decode('latin-1')}.")
            await _render(Request(scope), error)(scope, receive, send)
            return
        handler = self._direct.get(scope["path"])
        if handler is None or scope["method"] != "POST":
            await self.api(scope, receive, send)
            return
        if self.draining:
            await _render(Request(scope), ShuttingDown(_SHUTTING_DOWN))(scope, receive, send)
            return
        scope["app"] = self.api
        watch = _DisconnectWatch(receive)
        request = Request(scope, watch.receive)
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            if watch.stop():
                return  # the client left while the answer was being made
            raise
        except Exception as exc:
            response = await _unexpected(request, exc)
        watch.stop()
        if type(response) is not SSEResponse:
            await response(scope, receive, send)
            return
        del request, watch  # not kept while the stream lasts
        self._streams.add(response)
        try:
            await response(scope, receive, send)
        finally:
            self._streams.discard(response)

    def drain(self, deadline_s: float) -> None:
        """Shutdown began: refuse new requests; after ``deadline_s``, end the streams still open.

        Requests already admitted run on; a stream still open at the deadline
        ends with one error event (``service_unavailable``) and is logged as
        ``interrupted``.
        """
        if self.draining:
            return
        self.draining = True
        asyncio.get_running_loop().call_later(deadline_s, self._interrupt_streams)

    def _interrupt_streams(self) -> None:
        for stream in list(self._streams):
            stream.interrupt(_INTERRUPTED)


class _DisconnectWatch:
    """Cancels the handler when the client leaves before its answer is ready.

    Once the body has been read and the answer has taken ``_WATCH_AFTER_S``, a
    watcher task waits for ``http.disconnect``; cancelling the handler cancels
    the upstream call, so an abandoned request stops costing upstream work
    within that delay. (A watcher for every request cost about 40 µs of CPU
    each; most answers come before the delay, and a model call that runs for
    seconds is watched for nearly all of them.) Streams watch for themselves
    (``SSEResponse``), so the watcher stops before the response is sent.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._handler = asyncio.current_task()
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._fired = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body"):
            self._timer = asyncio.get_running_loop().call_later(_WATCH_AFTER_S, self._start)
        return message

    def _start(self) -> None:
        self._timer = None
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._fired = True
        if self._handler is not None:
            self._handler.cancel()

    def stop(self) -> bool:
        """Stop watching; true when the watcher cancelled the handler (the client left)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self._fired and self._handler is not None:
            self._handler.uncancel()
        return self._fired


def create_app(
    config: GatewayConfig | None = None,
    *,
    transport: TransportFactory | None = None,
    config_path: str | os.PathLike[str] | None = None,
) -> GatewayApp:
    """The gateway app for ``config``, or the one in ``config_path`` (default: the file
    named by ``GATEWAY_CONFIG``). Reloads read ``config_path`` (same default).

    ``transport`` replaces the HTTP transport of every provider client, for
    example with ``httpx.MockTransport``.
    """
    config = config or load_config(config_path)
    refuse_errors(config, str(config_path or default_config_path()))
    policies = Policies(config, str(config_path or default_config_path()))
    tracing_exporters = exporter_names(config)
    metrics_module.check_multiproc_dir()
    labels = Labels(config)
    metrics = Metrics(config, labels) if config.metrics.enabled else None
    in_flight = InFlight(metrics)
    rolling = Rolling(config, labels, in_flight) if metrics is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The telemetry line is the access log: uvicorn's own would double every request.
        logging.getLogger("uvicorn.access").disabled = True
        GatewayProtocol.configure(
            config.request_read_timeout_s,
            config.max_header_bytes,
            config.response_write_timeout_s,
            config.shutdown_drain_s,
        )
        if config.clients is None:
            print(OPEN_MODE_WARNING, file=sys.stderr, flush=True)
        short = raise_open_files_limit(sum(p.max_connections for p in config.providers.values()))
        if short is not None:
            print(short, file=sys.stderr, flush=True)
        backend = app.state.backend = await open_backend(config)
        tracing = Tracing(config, tracing_exporters) if tracing_exporters else None
        writer = LineWriter(
            config.log_file, max_bytes=config.log_max_bytes, backups=config.log_backups
        )
        telemetry = Telemetry(writer, *_views(metrics, rolling, tracing))
        app.state.telemetry = telemetry
        app.state.gateway = build_gateway(
            config, policies, backend.limiter, backend.spend, transport,
            telemetry.circuit_changed, CapacityQueue(backend.limiter, metrics), in_flight,
            metrics.pool if metrics is not None else None,
        )  # fmt: skip
        app.state.admin = AdminGuard(config)
        app.state.metrics, app.state.rolling = metrics, rolling
        reloader = app.state.reloader = Reloader(app.state, config_path, transport)
        reloader.install_signal()
        # What start-up built lives as long as the process: keep it out of the cyclic
        # collector's full passes, which otherwise stall the loop for milliseconds.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            with on_sigterm(lambda: gateway_app.drain(config.shutdown_drain_s)):
                yield
        finally:
            reloader.remove_signal()
            await reloader.aclose()
            await backend.aclose()
            telemetry.close()
            if tracing is not None:
                tracing.close()
            metrics_module.mark_process_dead()

    app = FastAPI(title="Governed LLM Gateway", version=__version__, lifespan=lifespan)
    # No redirect from "/path/" to "/path": its Location would be built from the Host header.
    app.router.redirect_slashes = False
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(Exception, _unexpected)
    gateway_app = GatewayApp(app)
    for route in API_ROUTES:
        app.add_api_route(
            route.path, gateway_app.endpoint(route.path), methods=["POST"], response_model=None,
            openapi_extra=openapi_body(route.schema),
        )  # fmt: skip
    for other in OTHER_ROUTES:
        if metrics is not None or not other.needs_metrics:
            app.add_api_route(other.path, other.serve, methods=[other.method])
    return gateway_app


def _views(
    metrics: Metrics | None, rolling: Rolling | None, tracing: Tracing | None
) -> tuple[list[Sink], list[CircuitListener]]:
    """What the telemetry emit feeds: the sinks of each request, the circuit listeners."""
    sinks: list[Sink] = []
    listeners: list[CircuitListener] = []
    if metrics is not None and rolling is not None:
        sinks += [metrics.observe, rolling.observe]
        listeners += [metrics.circuit_changed, rolling.circuit_changed]
    if tracing is not None:
        sinks.append(tracing.observe)
    return sinks, listeners


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: GatewayError
    if exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.")
    elif exc.status_code == 404:
        error = RouteNotFound(f"No route {request.url.path}.")
    else:
        error = InvalidRequest(str(exc.detail))
        error.status = exc.status_code
    return _render(request, error)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _render(request, exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    error = GatewayError("The gateway failed unexpectedly; the failure is logged.")
    logging.getLogger("gateway").error(
        "unexpected error on %s: %s", request.url.path, type(exc).__name__
    )
    return _render(request, error)


def _render(request: Request, error: GatewayError) -> Response:
    """An error in the dialect of the path it answers."""
    return dialect_for(request.url.path).error_response(error)


def app_from_environment() -> GatewayApp:
    """The app for the config ``GATEWAY_CONFIG`` names (else the example config).

    A config that cannot be used stops the process with one line naming the file and
    the field, and exit status 1. ``llm-gateway serve`` runs this factory, in each worker.
    """
    try:
        return create_app()
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
