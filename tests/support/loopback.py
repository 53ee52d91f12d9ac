"""Servers on 127.0.0.1 for the tests: a free port, an asyncio server in a thread, polling.

``LoopbackServer`` runs its own event loop in a background thread, so a test
(sync or async) can start it with ``with``, talk to it over a real socket and
read what it recorded. ``Sentinel`` is the smallest one: it counts connections
and answers nothing, for hosts no request may ever make the gateway call.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Self, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float = 3.0, interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; return it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class LoopbackServer:
    """A TCP server on ``127.0.0.1:<free port>`` whose ``connection`` runs in a thread's loop.

    Stopping closes the listener and cancels every connection still open. An
    exception escaping ``connection`` is a bug in the fake: it is printed, not hidden.
    """

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        name = type(self).__name__
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError(f"{name} did not start")
        return self

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(
            asyncio.start_server(self._track, "127.0.0.1", 0, backlog=1024)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(self._server.serve_forever())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    async def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the peer left, or the server is stopping
        except Exception:
            traceback.print_exc()
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class Sentinel(LoopbackServer):
    """Counts every connection made to it (``connections``); answers nothing."""

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return
