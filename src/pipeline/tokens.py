"""Approximate token counts, for when an upstream reports no usage (stub mode).

The rule, also stated in SPEC.md (Token counting): a message counts the whitespace-separated
words of its text plus one for its role; a completion counts the words of its
text. It is deliberately simple and deterministic; it over-counts code and
under-counts long words, and it is only used where no real figure exists.
"""

from __future__ import annotations

from typing import Any


def words(text: str) -> int:
    return len(text.split())


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(words(content_text(message.get("content"))) + 1 for message in messages)


def completion_tokens(text: str) -> int:
    return words(text)
