"""Approximate token counts, for when an upstream reports no usage (stub mode).

The rule, also stated in SPEC.md (Token counting): a message counts the whitespace-separated
words of its text plus one for its role; a completion counts the words of its
text. It is deliberately simple and deterministic; it over-counts code and
under-counts long words, and it is only used where no real figure exists.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..providers.operations import content_text

__all__ = ["completion_tokens", "content_text", "messages_prompt_tokens",
           "messages_prompt_tokens_async", "prompt_tokens", "prompt_tokens_async",
           "responses_prompt_tokens", "words"]  # fmt: skip

_SLICE = 2000  # messages counted between two yields to the event loop


def words(text: str) -> int:
    return len(text.split())


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(
        words(content_text(message.get("content"))) + 1
        for message in messages
        if isinstance(message, dict)
    )


def messages_prompt_tokens(body: dict[str, Any]) -> int:
    """An Anthropic Messages body: its messages, and its ``system`` text."""
    messages = body.get("messages")
    counted = prompt_tokens(messages) if isinstance(messages, list) else 0
    return counted + words(content_text(body.get("system")))


async def messages_prompt_tokens_async(body: dict[str, Any]) -> int:
    """``messages_prompt_tokens``, yielding to the event loop between slices of a long list."""
    messages = body.get("messages")
    counted = await prompt_tokens_async(messages) if isinstance(messages, list) else 0
    return counted + words(content_text(body.get("system")))


def responses_prompt_tokens(body: dict[str, Any]) -> int:
    """A Responses API body: its ``instructions`` and ``input`` (a string, or items)."""
    counted = words(content_text(body.get("instructions")))
    value = body.get("input")
    if isinstance(value, str):
        return counted + words(value) + 1
    for item in value if isinstance(value, list) else ():
        if isinstance(item, dict):
            text = content_text(item.get("content")) or content_text(item.get("output"))
            counted += words(text or str(item.get("arguments") or "")) + 1
    return counted


async def prompt_tokens_async(messages: list[dict[str, Any]]) -> int:
    """``prompt_tokens``, yielding to the event loop between slices of a long list."""
    if len(messages) <= _SLICE:
        return prompt_tokens(messages)
    total = 0
    for start in range(0, len(messages), _SLICE):
        total += prompt_tokens(messages[start : start + _SLICE])
        await asyncio.sleep(0)
    return total


def completion_tokens(text: str) -> int:
    return words(text)


class WordCount:
    """``words`` of a text that arrives in pieces, without keeping the text.

    ``count`` equals ``words("".join(pieces))``: a word cut between two pieces
    counts once.
    """

    __slots__ = ("_inside", "count")

    def __init__(self) -> None:
        self.count = 0
        self._inside = False  # the last piece ended inside a word

    def add(self, piece: str) -> None:
        if not piece:
            return
        count = len(piece.split())
        if count and self._inside and not piece[0].isspace():
            count -= 1  # the first word of this piece continues the last one
        self.count += count
        self._inside = not piece[-1].isspace()
