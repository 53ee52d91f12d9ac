"""The HTTP layer: translates requests into the pipeline and its results back into HTTP.

``create_app`` reads the config (a bad one stops start-up with one line naming
the file and the field); the lifespan opens what the gateway holds (one pooled
HTTP client per provider, the state backend with its limiter, the telemetry writer) and closes it at
shutdown. ``app`` is what ``uvicorn src.app:app`` serves.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .config import ConfigError, GatewayConfig, load_config
from .errors import GatewayError, InvalidRequest, MethodNotAllowed, RouteNotFound
from .models import MAX_CLIENT_ID, ChatCompletionRequest, SeedChatRequest, validate_body
from .providers import Providers, TransportFactory
from .service import Gateway, Ticket
from .state_backend import open_backend
from .streaming import Relay, SSEResponse, open_stream
from .telemetry import CallRecord, LineWriter, Telemetry
from .wire import error_response, json_response, new_request_id, read_json

_STARTED = int(time.time())


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
        self._direct: dict[str, Callable[[Request], Awaitable[Response | SSEResponse]]] = {
            "/v1/chat/completions": chat_completions,
            "/v1/chat": seed_chat,
        }

    def lifespan(self) -> Any:
        return self.api.router.lifespan_context(self.api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._direct.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.api(scope, receive, send)
            return
        scope["app"] = self.api
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:
            response = await _unexpected(request, exc)
        await response(scope, receive, send)


def create_app(
    config: GatewayConfig | None = None, *, transport: TransportFactory | None = None
) -> GatewayApp:
    """The gateway app for ``config`` (default: the file named by ``GATEWAY_CONFIG``).

    ``transport`` replaces the HTTP transport of every provider client, for
    example with ``httpx.MockTransport``.
    """
    config = config or load_config()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The telemetry line is the access log: uvicorn's own would double every request.
        logging.getLogger("uvicorn.access").disabled = True
        providers = Providers(config, transport)
        telemetry = Telemetry(LineWriter(config.log_file))
        backend = await open_backend(config.state)
        app.state.gateway = Gateway(config, providers, backend.limiter)
        app.state.telemetry = telemetry
        app.state.backend = backend
        try:
            yield
        finally:
            await providers.aclose()
            await backend.aclose()
            telemetry.close()

    app = FastAPI(title="Governed LLM Gateway", version="0.1.0", lifespan=lifespan)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)
    app.add_api_route(
        "/v1/chat/completions", chat_completions, methods=["POST"], response_model=None
    )
    app.add_api_route("/v1/chat", seed_chat, methods=["POST"])
    app.add_api_route("/v1/models", list_models, methods=["GET"])
    app.add_api_route("/healthz", healthz, methods=["GET"])
    return GatewayApp(app)


async def chat_completions(request: Request) -> Response | SSEResponse:
    """OpenAI's chat completions, streamed or not; the caller is ``X-Client-Id`` or anonymous."""
    gateway: Gateway = request.app.state.gateway
    telemetry: Telemetry = request.app.state.telemetry
    client_id = (request.headers.get("x-client-id") or "anonymous")[:MAX_CLIENT_ID]
    record = CallRecord(new_request_id(), "/v1/chat/completions", client_id)
    streaming = False
    try:
        body = await read_json(request, gateway.config.max_body_bytes)
        chat = validate_body(ChatCompletionRequest, body)
        ticket = await gateway.admit(record, chat, body)
        headers = {**ticket.headers, "x-request-id": record.request_id}
        if chat.stream:
            opened = await _guarded(gateway, ticket, open_stream(gateway, record, ticket, body))
            streaming = True
            relay = Relay(gateway, telemetry, record, ticket, chat, opened)
            return SSEResponse(relay, {**headers, "cache-control": "no-cache"})
        answer = await _guarded(gateway, ticket, gateway.complete(record, ticket, body))
        return json_response(answer, headers=headers)
    except GatewayError as exc:
        return await _refuse(gateway, record, exc, openai=True)
    except BaseException:
        record.status, record.error_type, record.outcome = 500, "internal_error", "error"
        raise
    finally:
        if not streaming:
            telemetry.emit(record)


async def seed_chat(request: Request) -> Response:
    """The gateway's own simple dialect: the caller in the body, a flat answer."""
    gateway: Gateway = request.app.state.gateway
    telemetry: Telemetry = request.app.state.telemetry
    record = CallRecord(new_request_id(), "/v1/chat", "anonymous")
    try:
        body = await read_json(request, gateway.config.max_body_bytes)
        if isinstance(body, dict) and isinstance(body.get("client_id"), str) and body["client_id"]:
            record.client_id = body["client_id"][:MAX_CLIENT_ID]
        chat = validate_body(SeedChatRequest, body)
        if chat.stream:
            raise InvalidRequest(
                "/v1/chat does not stream; use /v1/chat/completions with stream=true.",
                param="stream",
            )
        upstream_body = {k: v for k, v in body.items() if k != "client_id"}
        ticket = await gateway.admit(record, chat, upstream_body)
        answer = await _guarded(gateway, ticket, gateway.complete(record, ticket, upstream_body))
        reply = {
            "id": record.request_id,
            "model": ticket.alias,
            "provider": record.provider,
            "usage": answer["usage"],
            "message": _first_message(answer),
        }
        return json_response(reply, headers={**ticket.headers, "x-request-id": record.request_id})
    except GatewayError as exc:
        return await _refuse(gateway, record, exc, openai=False)
    except BaseException:
        record.status, record.error_type, record.outcome = 500, "internal_error", "error"
        raise
    finally:
        telemetry.emit(record)


async def list_models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    data = [
        {"id": alias, "object": "model", "created": _STARTED, "owned_by": "gateway"}
        for alias in gateway.router.aliases
    ]
    return json_response({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def _guarded(gateway: Gateway, ticket: Ticket, work: Any) -> Any:
    """Await ``work``; a refusal after admission still carries the client's limit headers."""
    try:
        return await work
    except GatewayError as exc:
        exc.headers = {**ticket.headers, **exc.headers}
        raise


async def _refuse(
    gateway: Gateway, record: CallRecord, exc: GatewayError, *, openai: bool
) -> Response:
    record.status, record.error_type = exc.status, exc.type
    record.outcome = "upstream_error" if exc.type.startswith("upstream") else "refused"
    headers = {"x-request-id": record.request_id}
    if "x-ratelimit-limit-requests" not in exc.headers:
        headers.update(await gateway.quota_headers(record.client_id))
    return error_response(exc, openai=openai, headers=headers)


def _first_message(answer: dict[str, Any]) -> dict[str, Any]:
    first = answer["choices"][0] if answer["choices"] else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        return {"role": "assistant", "content": None}
    reply = {"role": message.get("role", "assistant"), "content": message.get("content")}
    if message.get("tool_calls"):
        reply["tool_calls"] = message["tool_calls"]
    return reply


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
    return error_response(error, openai=request.url.path != "/v1/chat")


async def _unexpected(request: Request, exc: Exception) -> Response:
    error = GatewayError("The gateway failed unexpectedly; the failure is logged.")
    logging.getLogger("gateway").error(
        "unexpected error on %s: %s", request.url.path, type(exc).__name__
    )
    return error_response(error, openai=request.url.path != "/v1/chat")


def _load() -> GatewayApp:
    try:
        return create_app()
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


app = _load()
