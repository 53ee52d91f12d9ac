"""The actions of a plan (``rid=r17 plan=status:503:1,ok``): each word names a ``Behaviour``.

A new fault is a function of the action's arguments, registered with ``@action("name")``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import replace

import orjson

from tests.support.upstream.behaviour import Behaviour
from tests.support.upstream.exchange import Exchange, stream_headers

Action = Callable[[list[str]], Behaviour]
ACTIONS: dict[str, Action] = {}


def action(name: str) -> Callable[[Action], Action]:
    """Register ``function(args) -> Behaviour`` as the plan action ``name[:ARG[:ARG]]``."""

    def register(function: Action) -> Action:
        ACTIONS[name] = function
        return function

    return register


@action("ok")
def _ok(args: list[str]) -> Behaviour:
    """``ok[:PIECES[:INTERVAL]]``: ``PIECES`` (5) pieces ``p0 p1 ...``, ``INTERVAL`` s apart."""
    pieces = int(args[0]) if args else 5
    interval = float(args[1]) if len(args) > 1 else 0.0
    return Behaviour(
        pieces=tuple(f"p{i} " for i in range(pieces)),
        interval_s=interval,
        prompt_tokens=7,
        completion_tokens=pieces,
    )


@action("delay")
def _delay(args: list[str]) -> Behaviour:
    """``delay:S``: wait ``S`` seconds before the headers, then answer ``ok``."""
    return replace(_ok([]), headers_delay_s=float(args[0]))


@action("reset")
def _reset_after(args: list[str]) -> Behaviour:
    """``reset:N``: a stream breaks with a TCP reset after ``N`` events; a whole answer mid-body."""
    return replace(_ok([]), fail_after=int(args[0]), drop="reset")


@action("fin")
def _fin_after(args: list[str]) -> Behaviour:
    """``fin:N``: a stream's body ends cleanly after ``N`` events, without its end marker."""
    return replace(_ok([]), fail_after=int(args[0]), drop="end")


@action("status")
def _status(args: list[str]) -> Behaviour:
    """``status:CODE[:RETRY_AFTER]``: an error; ``RETRY_AFTER`` is seconds, ``date+S`` or text."""
    retry_after = _retry_after(args[1]) if len(args) > 1 else None
    return Behaviour(status=int(args[0]), retry_after=retry_after, error_message="injected fault")


@action("drip")
def _drip_bytes(args: list[str]) -> Behaviour:
    """``drip``: the headers of a stream, then one byte every 0.8 s (never a whole event)."""

    async def respond(exchange: Exchange) -> bool:
        await exchange.write_head(200, stream_headers("chunked"))
        while await exchange.pause(0.8):
            await exchange.write(b"1\r\nd\r\n")
        return exchange.peer_left()

    return Behaviour(respond=respond)


@action("stall")
def _stall(args: list[str]) -> Behaviour:
    """``stall``: read the request, never answer (until the gateway gives up)."""

    async def respond(exchange: Exchange) -> bool:
        await exchange.pause(None)
        return exchange.peer_left()

    return Behaviour(respond=respond)


@action("html")
def _html(args: list[str]) -> Behaviour:
    """``html``: status 200 with an HTML error page."""
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    return _fixed(200, "text/html", page)


@action("empty")
def _empty(args: list[str]) -> Behaviour:
    """``empty``: status 200 with ``{}``."""
    return _fixed(200, "application/json", b"{}")


@action("weird")
def _weird(args: list[str]) -> Behaviour:
    """``weird``: status 200 with an object whose fields have the wrong shapes."""
    payload = {"choices": [1, {"message": 5}, {"delta": []}], "usage": {"prompt_tokens": "x"}}
    return _fixed(200, "application/json", orjson.dumps(payload))


@action("redirect")
def _redirect(args: list[str]) -> Behaviour:
    """``redirect:HOST:PORT``: 302 to ``http://HOST:PORT/v1/chat/completions``."""
    location = f"http://{args[0]}:{args[1]}/v1/chat/completions"

    async def respond(exchange: Exchange) -> bool:
        return await exchange.send(302, {"location": location, "content-length": "0"})

    return Behaviour(respond=respond)


@action("echo")
def _echo_credentials(args: list[str]) -> Behaviour:
    """``echo:CODE``: an error whose message quotes every credential header received."""
    status = int(args[0])

    async def respond(exchange: Exchange) -> bool:
        names = {"authorization", "x-api-key", "api-key"}
        quoted = {k: v for k, v in exchange.request.headers.items() if k in names}
        message = f"Incorrect API key provided: {quoted}"
        return await exchange.send_json(status, exchange.dialect.error(status, message))

    return Behaviour(respond=respond)


def _fixed(status: int, content_type: str, body: bytes) -> Behaviour:
    async def respond(exchange: Exchange) -> bool:
        headers = {"content-type": content_type, "content-length": str(len(body))}
        return await exchange.send(status, headers, body)

    return Behaviour(respond=respond)


def _retry_after(value: str) -> str:
    if value.startswith("date+"):
        return email.utils.formatdate(time.time() + float(value[5:]), usegmt=True)
    return value
