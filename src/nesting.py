"""How deep a decoded JSON document nests, checked without recursion.

The gateway re-encodes what it forwards, and its encoder (orjson) refuses
documents nested deeper than 254 levels: a body the decoder took (up to 1024
levels) could then fail after admission. Bodies are therefore held to one
explicit bound (``max_json_depth``) where they are read, and so is any JSON a
translator decodes from inside a body (tool-call arguments).

Depth counts containers: ``{}`` and ``[]`` are 1, ``{"a": [1]}`` is 2, a scalar 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

_CONTAINERS = (dict, list)
# Containers looked at between two yields to the event loop (about a millisecond of work).
_SLICE = 20_000


def deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` levels of objects and arrays."""
    return any(_levels(value, limit, None))


async def deeper_than_async(value: object, limit: int) -> bool:
    """``deeper_than``, yielding to the event loop every few thousand containers."""
    for exceeded in _levels(value, limit, _SLICE):
        if exceeded:
            return True
        await asyncio.sleep(0)
    return False


def _levels(value: object, limit: int, slice_size: int | None) -> Iterator[bool]:
    """Walk ``value`` level by level; yield ``True`` once past ``limit`` (then stop), and
    ``False`` after every ``slice_size`` containers (never when ``slice_size`` is ``None``)."""
    level: list[Any] = [value] if type(value) in _CONTAINERS else []
    depth = 0
    seen = 0
    while level:
        depth += 1
        if depth > limit:
            yield True
            return
        below: list[Any] = []
        for node in level:
            children: Iterable[object] = node.values() if type(node) is dict else node
            for child in children:
                if type(child) in _CONTAINERS:
                    below.append(child)
            seen += 1
            if slice_size is not None and seen % slice_size == 0:
                yield False
        level = below
