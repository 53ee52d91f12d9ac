"""Request shapes the gateway validates, and the pieces of answers it builds.

Validation is strict (no coercion of ``"5"`` into ``5``), because the body the
gateway validated is the body it forwards: what passes here must be what the
upstream receives. Fields the gateway does not use are kept (``extra="allow"``)
and passed through unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidRequest

MAX_TOKENS_CEILING = 10_000_000
MAX_CLIENT_ID = 256


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: str = Field(min_length=1)
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's request, the fields the gateway reads."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_CEILING)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_CEILING)

    def completion_budget(self) -> int | None:
        """The most completion tokens the client allows, if it says."""
        return self.max_completion_tokens or self.max_tokens


class SeedChatRequest(ChatCompletionRequest):
    """``POST /v1/chat``: the gateway's own simple dialect, with the caller in the body."""

    client_id: str = Field(min_length=1, max_length=MAX_CLIENT_ID)


class KeyedSeedChatRequest(ChatCompletionRequest):
    """``POST /v1/chat`` with an API key: the key names the client, so ``client_id`` is optional."""

    client_id: str | None = Field(default=None, min_length=1, max_length=MAX_CLIENT_ID)


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``: OpenAI's request, the fields the gateway reads."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(default=None, ge=1)

    def input_tokens(self) -> int:
        """The token approximation for strings; token arrays count their length."""
        items = self.input if isinstance(self.input, list) else [self.input]
        total = 0
        for item in items:
            if isinstance(item, str):
                total += len(item.split())
            elif isinstance(item, list):
                total += len(item)
            else:
                total += 1
        return total


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(BaseModel):
    """``POST /v1/messages``: Anthropic's request, the fields the gateway checks."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1, le=MAX_TOKENS_CEILING)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool = False


class CountTokensRequest(BaseModel):
    """``POST /v1/messages/count_tokens``: Anthropic's request, the fields the gateway checks."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``: OpenAI's Responses API request, the fields the gateway reads."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    stream: bool = False
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_CEILING)


Body = TypeVar("Body", bound=BaseModel)


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra``: ``model``'s JSON schema as its required JSON request body.

    The handlers read raw bodies (``validate_body``), so FastAPI cannot see
    the shape; this puts it in the OpenAPI description for clients and
    generated tests. Sub-models are inlined: the description has no
    ``components`` entries for them.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    content = {"application/json": {"schema": _inlined(schema, defs)}}
    return {"requestBody": {"required": True, "content": content}}


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return _inlined(defs[ref.rsplit("/", 1)[-1]], defs)
        return {key: _inlined(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inlined(item, defs) for item in node]
    return node


def validate_body(model: type[Body], body: object) -> Body:
    """Validate a decoded JSON body; raise ``InvalidRequest`` naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        reason = error["msg"]
        message = f"{field}: {reason}" if field else reason
        raise InvalidRequest(f"Invalid request: {message}.", param=field) from None
