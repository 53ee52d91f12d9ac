"""Server-sent events: bytes in, the name and ``data`` of each complete event out.

A small incremental decoder rather than httpx's line iterator: it works on
the raw bytes (``orjson`` reads bytes directly), so a streamed chunk costs one
split and no text decoding. Per the SSE format, an event ends at a blank line,
its ``data:`` lines are joined with newlines, its ``event:`` line names it
(the name is kept, so that a pass-through relays it as sent), and other
fields (``id:``, comments) are ignored.

Linear in what it is fed, however the bytes are cut: each chunk is searched
for newlines once, and an unfinished line waits in a buffer that is appended
to, never re-joined with everything before it. One event (its ``data`` so far
and its unfinished line) may be at most ``max_event_bytes``; past that,
``feed`` raises ``EventTooLarge``.
"""

from __future__ import annotations


class EventTooLarge(Exception):
    """An event grew past the decoder's ``max_event_bytes``."""


class SSEDecoder:
    def __init__(self, max_event_bytes: int = 1024 * 1024) -> None:
        self._limit = max_event_bytes
        self._partial = bytearray()  # the unfinished last line
        self._data: list[bytes] = []
        self._size = 0  # bytes of the current event's data lines
        self._name: bytes | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event that ``chunk`` completes, in order."""
        return [data for _, data in self.feed_named(chunk)]

    def feed_named(self, chunk: bytes) -> list[tuple[bytes | None, bytes]]:
        """``(event name or None, data)`` of every event that ``chunk`` completes, in order."""
        if not self._partial and not self._data and self._name is None:
            if chunk.startswith(b"data: ") and chunk.find(b"\n") == len(chunk) - 2:
                if len(chunk) - 8 > self._limit:  # one whole event, one line: the usual read
                    raise EventTooLarge
                return [(None, chunk[6:-2])]
            if chunk.endswith(b"\n\n"):
                events = self._whole(chunk)
                if events is not None:
                    return events
        if chunk.find(b"\n") < 0:
            self._partial += chunk
            if self._size + len(self._partial) > self._limit:
                raise EventTooLarge
            return []
        if self._partial:
            self._partial += chunk
            lines: list[bytes] | list[bytearray] = self._partial.split(b"\n")
        else:
            lines = chunk.split(b"\n")
        self._partial = bytearray(lines.pop())  # an unfinished line waits for the next chunk
        events = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append((self._name, b"\n".join(self._data)))
                    self._data = []
                    self._size = 0
                self._name = None
            elif line.startswith(b"data:"):
                value = line[5:]
                value = value[1:] if value.startswith(b" ") else value
                self._size += len(value)
                if self._size > self._limit:
                    raise EventTooLarge
                self._data.append(bytes(value))
            elif line.startswith(b"event:"):
                value = line[6:]
                self._name = bytes(value[1:] if value.startswith(b" ") else value)
        if self._size + len(self._partial) > self._limit:
            raise EventTooLarge
        return events

    def _whole(self, chunk: bytes) -> list[tuple[bytes | None, bytes]] | None:
        """The events of a chunk that holds whole events in the common shape (``data: `` on
        one line, an ``event: `` line before it at most, ``\\n`` line ends); ``None`` for
        anything else, which the line by line decoding takes."""
        if b"\r" in chunk:
            return None
        events: list[tuple[bytes | None, bytes]] = []
        for block in chunk[:-2].split(b"\n\n"):
            name = None
            if block.startswith(b"event: "):
                end = block.find(b"\n")
                if end < 0:
                    return None
                name, block = block[7:end], block[end + 1 :]
            if not block.startswith(b"data: ") or b"\n" in block:
                return None
            if len(block) - 6 > self._limit:
                raise EventTooLarge
            events.append((name, block[6:]))
        self._name = None
        return events
