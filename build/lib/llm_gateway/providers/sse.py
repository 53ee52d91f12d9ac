"""Server-sent events: bytes in, the ``data`` of each complete event out.

A small incremental decoder rather than httpx's line iterator: it works on
the raw bytes (``orjson`` reads bytes directly), so a streamed chunk costs one
split and no text decoding. Per the SSE format, an event ends at a blank line,
its ``data:`` lines are joined with newlines, and other fields (``event:``,
``id:``, comments) are ignored.
"""

from __future__ import annotations


class SSEDecoder:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event that ``chunk`` completes, in order."""
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()  # an unfinished line waits for the next chunk
        events = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events
