"""Reading the gateway's streams back: events, content pieces, how the stream ended."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamSeen:
    pieces: list[str] = field(default_factory=list)  # content pieces, in order
    errors: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0  # OpenAI's [DONE] / Anthropic's message_stop
    after_end: int = 0  # events after an error or the end: must be none

    @property
    def ended_cleanly(self) -> bool:
        return self.done == 1 and not self.errors and not self.after_end

    @property
    def failed_once(self) -> bool:
        """Exactly one error event, the last one, and no end marker."""
        return len(self.errors) == 1 and self.done == 0 and not self.after_end

    @property
    def in_order(self) -> bool:
        """Pieces ``p0 p1 ...`` each once, in order: nothing replayed, nothing skipped."""
        return [p.strip() for p in self.pieces] == [f"p{i}" for i in range(len(self.pieces))]


def parse(body: bytes, anthropic: bool) -> StreamSeen:
    seen = StreamSeen()
    ended = False
    for block in body.decode().split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if not data:
            continue
        if ended:
            seen.after_end += 1
        payload = "\n".join(data)
        if payload == "[DONE]":
            seen.done += 1
            ended = True
            continue
        event = json.loads(payload)
        if anthropic:
            kind = event.get("type")
            if kind == "error":
                seen.errors.append(event["error"])
                ended = True
            elif kind == "message_stop":
                seen.done += 1
                ended = True
            elif kind == "content_block_delta" and event["delta"].get("type") == "text_delta":
                seen.pieces.append(event["delta"]["text"])
            continue
        if "error" in event:
            seen.errors.append(event["error"])
            ended = True
            continue
        for choice in event.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                seen.pieces.append(content)
    return seen
