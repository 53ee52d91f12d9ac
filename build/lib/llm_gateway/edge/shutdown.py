"""SIGTERM: let the gateway start draining the moment the signal arrives.

uvicorn handles SIGTERM itself: it stops accepting connections, waits for the
open ones to finish, and only then runs the app's lifespan shutdown. So the
app would not know that shutdown began until every stream had ended on its
own. ``on_sigterm`` chains a handler in front of the one installed before it
(uvicorn's): the gateway is told at once (it refuses new requests on open
connections and ends long streams at ``shutdown_drain_s``), then the previous
handler's job is done.

With uvicorn, the previous handler is its server's ``handle_exit``; the chain
asks that server to exit (``should_exit``, uvicorn's own switch for a graceful
stop) rather than calling it, because ``handle_exit`` also records the signal
and uvicorn re-raises it after the graceful shutdown, which would end the
process by SIGTERM instead of with exit status 0.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def on_sigterm(begin: Callable[[], None]) -> Iterator[None]:
    """While the block runs, SIGTERM calls ``begin`` in the event loop, then the previous handler.

    Signals can only be handled in the main thread; elsewhere (a server run in
    a thread, as tests do) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(begin)
        server = getattr(previous, "__self__", None)
        if server is not None and hasattr(server, "should_exit"):
            server.should_exit = True
        elif callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is handle:
            signal.signal(signal.SIGTERM, previous)
