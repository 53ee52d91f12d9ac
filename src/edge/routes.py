"""The route table: every path the gateway serves, once.

``API_ROUTES`` are the pipeline's routes (``POST``, dispatched straight to their
handler by ``GatewayApp``, each in its dialect, its body described to OpenAPI by
its request schema); ``OTHER_ROUTES`` are served through FastAPI (models,
health, explain and the operator routes). ``dialect_for`` answers which dialect
a path speaks, for errors written before a route runs (the HTTP layer's own,
unknown paths, methods not allowed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from .dashboard import dashboard_data, dashboard_page, metrics_endpoint
from .dialects import ANTHROPIC, OPENAI, SEED, Dialect
from .endpoints import chat_completions, embeddings, healthz, seed_chat
from .exchange import Handler, Route, endpoint
from .explain import explain
from .messages_api import count_tokens, messages
from .models_api import list_models, retrieve_model
from .reload import admin_reload
from .responses_api import responses, stored_response
from .schemas import (
    ChatCompletionRequest,
    CountTokensRequest,
    EmbeddingsRequest,
    MessagesRequest,
    ResponsesRequest,
    SeedChatRequest,
)


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """A pipeline route: ``POST path`` in ``dialect``, its body shaped like ``schema``."""

    path: str
    dialect: Dialect
    handle: Handler
    schema: type[BaseModel]

    def endpoint(self) -> Route:
        return endpoint(self.path, self.dialect)(self.handle)


@dataclass(frozen=True, slots=True)
class OtherRoute:
    """A route served through FastAPI; ``operator`` routes exist only with metrics enabled."""

    path: str
    method: str
    serve: Callable[[Request], Awaitable[Any]]
    needs_metrics: bool = False


API_ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("/v1/chat/completions", OPENAI, chat_completions, ChatCompletionRequest),
    ApiRoute("/v1/chat", SEED, seed_chat, SeedChatRequest),
    ApiRoute("/v1/embeddings", OPENAI, embeddings, EmbeddingsRequest),
    ApiRoute("/v1/messages", ANTHROPIC, messages, MessagesRequest),
    ApiRoute("/v1/messages/count_tokens", ANTHROPIC, count_tokens, CountTokensRequest),
    ApiRoute("/v1/responses", OPENAI, responses, ResponsesRequest),
)

OTHER_ROUTES: tuple[OtherRoute, ...] = (
    OtherRoute("/v1/explain", "POST", explain),
    OtherRoute("/v1/models", "GET", list_models),
    OtherRoute("/v1/models/{model_id:path}", "GET", retrieve_model),
    OtherRoute("/v1/responses/{response_id}", "GET", stored_response),
    OtherRoute("/v1/responses/{response_id}", "DELETE", stored_response),
    OtherRoute("/v1/responses/{response_id}/cancel", "POST", stored_response),
    OtherRoute("/v1/responses/{response_id}/input_items", "GET", stored_response),
    OtherRoute("/healthz", "GET", healthz),
    OtherRoute("/metrics", "GET", metrics_endpoint, needs_metrics=True),
    OtherRoute("/dashboard", "GET", dashboard_page, needs_metrics=True),
    OtherRoute("/dashboard/data", "GET", dashboard_data, needs_metrics=True),
    OtherRoute("/admin/reload", "POST", admin_reload),
)

_BY_PATH = {route.path: route.dialect for route in API_ROUTES}
_PREFIXES = tuple((route.path + "/", route.dialect) for route in API_ROUTES)


def dialect_for(path: str) -> Dialect:
    """The dialect of ``path`` (its query ignored): its route's, or a route's it is under
    (``/v1/messages/batches`` answers in Anthropic's), else OpenAI's."""
    path = path.partition("?")[0]
    found = _BY_PATH.get(path)
    if found is not None:
        return found
    for prefix, dialect in _PREFIXES:
        if path.startswith(prefix):
            return dialect
    return OPENAI
