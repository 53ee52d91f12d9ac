"""The connection cap of one provider: how many requests may hold an upstream connection at once.

Both transports put every request through a ``ConnectionCap`` before they take
or open a connection, and give its place back when the response body is
closed. A request that finds every place taken waits, first come first
served, for at most the request's pool timeout (httpx's ``pool`` timeout),
then gets ``httpx.PoolTimeout``: a bounded wait that ends in a clear error,
never an unbounded queue. A ``PoolObserver`` (the metrics) is told the
places in use, the requests waiting, and how long each waiting request waited.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httpx


class PoolObserver(Protocol):
    """Told every change of one provider's pool; called in the event loop, must not block."""

    def in_use(self, delta: int) -> None: ...

    def waiting(self, delta: int) -> None: ...

    def waited(self, seconds: float) -> None:
        """A request that had to wait got a place, or gave up, after ``seconds``."""
        ...


class ConnectionCap:
    """At most ``limit`` requests at once; ``acquire`` then ``release`` exactly once each."""

    def __init__(self, limit: int, observer: PoolObserver | None = None) -> None:
        self.limit = limit
        self.in_use = 0
        self.waiting = 0
        self._places = asyncio.Semaphore(limit)
        self._observer = observer

    async def acquire(self, timeout: float | None) -> None:
        """A place, at once or within ``timeout`` seconds; else ``httpx.PoolTimeout``."""
        if self._places.locked():
            await self._wait(timeout)
        else:
            await self._places.acquire()  # a free place: returns without suspending
        self.in_use += 1
        if self._observer is not None:
            self._observer.in_use(1)

    async def _wait(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        observer = self._observer
        self.waiting += 1
        if observer is not None:
            observer.waiting(1)
        try:
            async with asyncio.timeout(timeout):
                await self._places.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"all {self.limit} connections were in use for {timeout:g} s"
            ) from None
        finally:
            self.waiting -= 1
            if observer is not None:
                observer.waiting(-1)
                observer.waited(loop.time() - started)

    def release(self) -> None:
        self.in_use -= 1
        if self._observer is not None:
            self._observer.in_use(-1)
        self._places.release()


def raise_open_files_limit(needed: int) -> str | None:
    """Raise this process's soft limit of open files to its hard limit; a warning if short.

    Every upstream connection is a file descriptor, and so is every client
    connection; a soft limit of 1,024 (a common default) would fail connections
    long before the pools are full. ``needed`` is what the pools may hold.
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, needed * 2)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < needed:
        return (
            f"gateway: warning: the open-files limit is {soft}, below the {needed} upstream"
            " connections the providers' max_connections allow (and each has a client"
            " connection too); raise it (ulimit -n, LimitNOFILE) or lower max_connections"
        )
    return None
