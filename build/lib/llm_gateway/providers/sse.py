"""Server-sent events: bytes in, the ``event`` name and ``data`` of each complete event out.

A small incremental decoder rather than httpx's line iterator: it works on
the raw bytes (``orjson`` reads bytes directly), so a streamed chunk costs one
split and no text decoding. Per the SSE format, an event ends at a blank line,
its ``data:`` lines are joined with newlines, its ``event:`` line names it
(the name is kept, so that a pass-through relays it as sent), and other
fields (``id:``, comments) are ignored.
"""

from __future__ import annotations


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._name: bytes | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event that ``chunk`` completes, in order."""
        return [data for _, data in self.feed_named(chunk)]

    def feed_named(self, chunk: bytes) -> list[tuple[bytes | None, bytes]]:
        """``(event name or None, data)`` of every event that ``chunk`` completes, in order."""
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()  # an unfinished line waits for the next chunk
        events = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append((self._name, b"\n".join(self._data)))
                    self._data = []
                self._name = None
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                value = line[6:]
                self._name = value[1:] if value.startswith(b" ") else value
        return events
