"""Where each value of a JSON document starts: its path mapped to a line number.

``line_map`` walks the text once (a small scanner for JSON's grammar; the
document has already been parsed, so it assumes valid input) and records the
line of every object member and array element, by path (``("clients",
"acme", "rate_limit")``). ``line_of`` finds the line of a path, or of its
nearest ancestor that exists (a missing field is reported where its parent
object starts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

Path = tuple[str | int, ...]

_SPACE = " \t\r\n"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[Path, int] = {}

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] in _SPACE:
            if text[self.pos] == "\n":
                self.line += 1
            self.pos += 1

    def value(self, path: Path) -> None:
        self.skip()
        self.lines.setdefault(path, self.line)
        char = self.text[self.pos] if self.pos < len(self.text) else ""
        if char == "{":
            self.members(path)
        elif char == "[":
            self.elements(path)
        elif char == '"':
            self.string()
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in ",]}" + _SPACE:
                self.pos += 1

    def members(self, path: Path) -> None:
        self.pos += 1
        while True:
            self.skip()
            if self.pos >= len(self.text) or self.text[self.pos] == "}":
                self.pos += 1
                return
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            line = self.line
            key = self.string()
            self.lines[(*path, key)] = line
            self.skip()
            self.pos += 1  # the colon
            self.value((*path, key))

    def elements(self, path: Path) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skip()
            if self.pos >= len(self.text) or self.text[self.pos] == "]":
                self.pos += 1
                return
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            self.value((*path, index))
            index += 1

    def string(self) -> str:
        text = self.text
        start = self.pos + 1
        self.pos = start
        while self.pos < len(text) and text[self.pos] != '"':
            self.pos += 2 if text[self.pos] == "\\" else 1
        raw = text[start : self.pos]
        self.pos += 1
        if "\\" not in raw:
            return raw
        decoded: str = json.loads(f'"{raw}"')
        return decoded


def line_map(text: str) -> dict[Path, int]:
    """The line (1-based) where each path's value (or member key) starts."""
    scanner = _Scanner(text)
    scanner.value(())
    return scanner.lines


def line_of(lines: dict[Path, int], path: Sequence[str | int]) -> int:
    """The line of ``path``, or of its nearest ancestor in the document (1 at worst)."""
    parts = tuple(path)
    while parts:
        if parts in lines:
            return lines[parts]
        parts = parts[:-1]
    return lines.get((), 1)
