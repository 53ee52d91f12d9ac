"""Request shapes the gateway validates, and the pieces of answers it builds.

Validation is strict (no coercion of ``"5"`` into ``5``), because the body the
gateway validated is the body it forwards: what passes here must be what the
upstream receives. Fields the gateway does not use are kept (``extra="allow"``)
and passed through unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)

from ..errors import InvalidRequest

MAX_TOKENS_CEILING = 10_000_000
MAX_CLIENT_ID = 256
MAX_CHOICES = 128  # OpenAI's own bound on n


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
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)

    def completion_budget(self) -> int | None:
        """The most completion tokens the client allows per choice, if it says."""
        return self.max_completion_tokens or self.max_tokens

    def choices(self) -> int:
        """How many choices the answer holds (``n``; each may use the whole budget)."""
        return self.n or 1


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


class _AnthropicPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class TextBlock(_AnthropicPart):
    type: Literal["text"]
    text: str


class Base64Source(_AnthropicPart):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(_AnthropicPart):
    type: Literal["url"]
    url: str


class ImageBlock(_AnthropicPart):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class ToolUseBlock(_AnthropicPart):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_AnthropicPart):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] | None = (
        None
    )
    is_error: bool | None = None


class ThinkingBlock(_AnthropicPart):
    type: Literal["thinking"]
    thinking: str


class RedactedThinkingBlock(_AnthropicPart):
    type: Literal["redacted_thinking"]
    data: str


class OtherBlock(_AnthropicPart):
    """A block of a type the gateway does not read (``document``, server tools' blocks)."""

    type: str


_BLOCKS = {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}


def _block_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in _BLOCKS else "other"


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[RedactedThinkingBlock, Tag("redacted_thinking")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(_block_kind),
]


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class AnthropicTool(_AnthropicPart):
    """A tool: a custom one has ``input_schema``; a server tool has a ``type`` instead."""

    name: str = Field(min_length=1)
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class AnthropicToolChoice(_AnthropicPart):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class AnthropicMetadata(_AnthropicPart):
    user_id: str | None = None


class MessagesRequest(BaseModel):
    """``POST /v1/messages``: Anthropic's request; every field the gateway reads is typed."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1, le=MAX_TOKENS_CEILING)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    metadata: AnthropicMetadata | None = None
    service_tier: str | None = None


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


async def validate_body(model: type[Body], body: object) -> Body:
    """Validate a decoded JSON body; raise ``InvalidRequest`` naming the first bad field.

    A long ``messages`` list is validated in slices of ``_SLICE``, yielding to
    the event loop between them, so a large body does not hold the loop for
    the whole of its validation; the model then holds the first message only
    (the handlers read the messages from the body).
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    messages = body.get("messages")
    long = isinstance(messages, list) and len(messages) > _SLICE
    if not long or "messages" not in model.model_fields:
        return _validated(model, body)
    assert isinstance(messages, list)
    checked = _validated(model, {**body, "messages": messages[:1]})
    items = _items_adapter(model)
    for start in range(1, len(messages), _SLICE):
        await asyncio.sleep(0)
        try:
            items.validate_python(messages[start : start + _SLICE])
        except ValidationError as exc:
            raise _invalid(exc, ("messages",), start) from None
    return checked


_SLICE = 1000
_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}


def _items_adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    """A validator of a slice of ``model``'s messages (built once per model)."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model.model_fields["messages"].annotation)
    return adapter


def _validated(model: type[Body], body: dict[str, Any]) -> Body:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "none"})


def _is_type_name(part: str | int) -> bool:
    """A union member's label in an error location (``str``, ``list[TextBlock]``)."""
    return isinstance(part, str) and (part in _TYPE_NAMES or "[" in part)


_TAGS = frozenset({*_BLOCKS, "other", "base64", "url"})


def _field_path(loc: list[str | int]) -> list[str | int]:
    """``loc`` without the tags of tagged unions (``content.0.text.text`` -> ``content.0.text``):
    a tag follows a list index (or ``source``) and is followed by the failing field."""
    return [
        part
        for i, part in enumerate(loc)
        if not (
            part in _TAGS
            and 0 < i < len(loc) - 1
            and (isinstance(loc[i - 1], int) or loc[i - 1] == "source")
        )
    ]


def _invalid(exc: ValidationError, prefix: tuple[str, ...] = (), offset: int = 0) -> InvalidRequest:
    """The first error of ``exc`` as a 400 naming its field (list indices moved by ``offset``).

    A value that fits none of a union's members fails once per member: the
    deepest of those failures is named, without the members' type names.
    """
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]["loc"][:1]
    error = max((e for e in errors if e["loc"][:1] == first), key=lambda e: len(e["loc"]))
    loc = _field_path([part for part in error["loc"] if not _is_type_name(part)])
    if prefix and loc and isinstance(loc[0], int):
        loc[0] += offset
    field = ".".join(str(part) for part in (*prefix, *loc)) or None
    reason = error["msg"]
    message = f"{field}: {reason}" if field else reason
    return InvalidRequest(f"Invalid request: {message}.", param=field)
