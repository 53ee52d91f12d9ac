"""The fake upstream's server: reads each request, picks its behaviour, answers, records."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import replace
from typing import Any

import orjson

from tests.support.loopback import LoopbackServer
from tests.support.upstream.actions import ACTIONS
from tests.support.upstream.behaviour import Behaviour, Canned, Received
from tests.support.upstream.dialects import OpenAIChat, dialect_for
from tests.support.upstream.exchange import Exchange

_DIRECTIVE = re.compile(r"rid=([^\s\"\\]+)\s+plan=([^\s\"\\]+)")


class FakeUpstream(LoopbackServer):
    """The fake provider; a context manager, started on a free loopback port."""

    def __init__(self, default: Behaviour | None = None) -> None:
        super().__init__()
        self.default = default or Behaviour()
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[Received] = []
        self.by_rid: dict[str, list[Received]] = defaultdict(list)
        self._canned: dict[str, deque[Canned]] = defaultdict(deque)
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def behave(
        self, model: str | None = None, behaviour: Behaviour | None = None, **changes: Any
    ) -> Behaviour:
        """Set the behaviour for requests naming upstream ``model`` (the default when ``None``)."""
        chosen = replace(behaviour or Behaviour(), **changes)
        if model is None:
            self.default = chosen
        else:
            self.behaviours[model] = chosen
        return chosen

    def forget_behaviours(self) -> None:
        """Back to the default ``Behaviour()`` for every model, with no answer queued."""
        self.default = Behaviour()
        self.behaviours.clear()
        with self._lock:
            self._canned.clear()

    def answer(self, path: str, canned: Canned) -> None:
        """Queue the answer of the next request to ``path`` (``/v1/messages``, no query string).

        It comes before the model's and the default behaviour, after a directive,
        and whatever the method (``GET /v1/responses/resp_1``).
        """
        with self._lock:
            self._canned[path].append(canned)

    def last(self, path: str) -> Received:
        """The last request received on ``path`` (without its query string)."""
        with self._lock:
            found = next((r for r in reversed(self.requests) if r.route == path), None)
        if found is None:
            raise LookupError(f"the fake upstream received nothing on {path}")
        return found

    def received(self, model: str | None = None) -> list[Received]:
        return [r for r in self.requests if model is None or r.model == model]

    def of(self, rid: str) -> list[Received]:
        """Every attempt of the client request ``rid``, in order."""
        with self._lock:
            return list(self.by_rid.get(rid, ()))

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.requests)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            behaviour = self._choose(request)
            try:
                keep_alive = await self._answer(request, behaviour, reader, writer)
            finally:
                request.ended_at = time.monotonic()
                request.done.set()
            if not keep_alive:
                return

    def _choose(self, request: Received) -> Behaviour:
        """Record the request and pick its behaviour: directive, canned, model, default."""
        found = _DIRECTIVE.search(request.raw.decode("utf-8", "replace"))
        with self._lock:
            if found:
                request.rid, plan = found.groups()
                request.number = len(self.by_rid[request.rid]) + 1
                actions = plan.split(",")
                request.action = actions[min(request.number, len(actions)) - 1]
            else:
                queued = self._canned.get(request.route)
                request.canned = queued.popleft() if queued else None
            self.by_rid[request.rid].append(request)
            self.requests.append(request)
        if request.action:
            name, *args = request.action.split(":")
            if name not in ACTIONS:
                raise ValueError(f"unknown action {request.action!r}")
            return ACTIONS[name](args)
        return self.behaviours.get(request.model or "", self.default)

    async def _answer(
        self,
        request: Received,
        behaviour: Behaviour,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        dialect = dialect_for(request.path)
        exchange = Exchange(request, behaviour, dialect or OpenAIChat(), reader, writer)
        try:
            if request.canned is not None:
                return await exchange.send_canned(request.canned)
            if request.method == "GET" and request.path.endswith("/models"):
                return await exchange.send_json(200, {"object": "list", "data": []})
            if request.method != "POST" or dialect is None:
                return await exchange.send_json(404, {"error": {"message": "no route"}})
            return await exchange.answer()
        except ConnectionError:
            return exchange.peer_left()


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raw = await _read_chunked(reader)
    else:
        raw = await reader.readexactly(int(headers.get("content-length") or 0))
    received = Received(method, path, headers, raw, time.monotonic(), time.time())
    with contextlib.suppress(orjson.JSONDecodeError):
        received.body = orjson.loads(raw) if raw else None
    return received


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
