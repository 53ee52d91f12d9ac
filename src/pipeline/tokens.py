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
