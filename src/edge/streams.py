"""The ASGI response of a stream: the relay's bytes out as they come, the upstream cut when
the client leaves.

The pipeline's ``Relay`` makes the bytes and does the accounting; this is
the part that speaks ASGI. ``CONNECTION_CUT`` is the scope key under which
the HTTP layer (``protocol``) leaves the ``GatewayError`` for which it cut a
connection (``ClientTooSlow``): the stream records it as its end.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope, Send

from ..pipeline.streaming import Relay

__all__ = ["CONNECTION_CUT", "SSEResponse"]

CONNECTION_CUT = "gateway.connection_cut"


class SSEResponse:
    """The ASGI response of a stream: events out as they come, upstream cut when the client leaves.

    A watcher task waits for the server's ``http.disconnect`` and cancels the
    sending task, which is then awaiting the upstream or the client: the
    relay's ``finish`` closes the upstream at once. (Plain asyncio tasks
    rather than an anyio task group per stream: same behaviour, less work.)
    A client that reads nothing blocks ``send``; the HTTP layer cuts it at its
    write timeout (or at the shutdown deadline), which is such a disconnect.
    """

    def __init__(self, relay: Relay, headers: dict[str, str]) -> None:
        self._relay = relay
        self._headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        self._disconnected = False
        self._sender: asyncio.Task[None] | None = None
        self._last_event: bytes | None = None

    def interrupt(self, message: str) -> None:
        """End this stream now with one error event (the gateway is shutting down)."""
        if self._sender is None or self._last_event is not None or self._disconnected:
            return
        self._last_event = self._relay.interrupt(message)
        self._sender.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = self._sender = asyncio.current_task()
        assert sender is not None
        watcher = asyncio.create_task(self._watch(receive, sender))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            async for event in self._relay.events():
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if self._disconnected:
                sender.uncancel()  # our own cancellation: the client left, nothing more to do
            elif self._last_event is not None:
                sender.uncancel()  # our own cancellation: interrupted, say so and end
                await send({"type": "http.response.body", "body": self._last_event})
            else:
                raise
        except OSError:
            pass  # the connection broke under a send: the client is gone
        finally:
            watcher.cancel()
            cut = scope.get(CONNECTION_CUT)
            if cut is not None:
                self._relay.client_cut(cut)
            await self._relay.finish()

    async def _watch(self, receive: Receive, sender: asyncio.Task[None]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._disconnected = True
        sender.cancel()
