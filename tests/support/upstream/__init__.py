"""The one fake provider: a real HTTP/1.1 server on a free loopback port, steered per request.

It speaks what the gateway calls: OpenAI chat completions and Responses (whole
and SSE), OpenAI embeddings, Anthropic Messages (whole and SSE) and their
``count_tokens``, and ``GET .../models``.
It is raw asyncio in a thread of its own (``LoopbackServer``), so it controls
every byte and every close; respx stays the fake for the app in-process.

What it does with one request is chosen in this order:

1. A directive in the request body, ``"rid=r17 plan=status:503:1,ok"``,
   anywhere in its text (``directive()`` writes one). It survives every
   translation the gateway makes and needs no shared state, so concurrent
   tests and gateway processes can use one upstream. ``rid`` names the client
   request (all its attempts share it); ``plan`` is a comma-separated list of
   actions, one per attempt, the last one repeating. The actions are
   ``ACTIONS`` (their docstrings say what each does).
2. A ``Canned`` answer queued for the request's path, in order:
   ``upstream.answer("/v1/messages", Canned(json=...))`` or
   ``Canned(events=[...])``, written as given whatever the method.
3. The ``Behaviour`` programmed for the upstream model the body names:
   ``upstream.behave("model-b", first_delay_s=0.3)``.
4. The default: ``upstream.behave(status=500)`` (no model) sets it.

Every request is recorded as a ``Received`` (``requests``, ``of(rid)``,
``received(model)``, ``last(path)``): headers, the body's exact bytes (``raw``)
and its JSON (``body``), the action or canned answer it got, and the timeline of
its answer, including when the gateway closed the connection before the answer
ended.

A new fault is a function returning a ``Behaviour``, registered with
``@action("name")``. When no ``Behaviour`` field describes the bytes it needs
(an endless body, a gzip bomb, a stream without newlines), the behaviour's
``respond`` coroutine writes the whole response itself through the
``Exchange`` it is given. A new API is a ``Dialect`` in ``DIALECTS``. The
parts: ``behaviour.py``, ``actions.py``, ``dialects.py``, ``exchange.py`` (one
answer being written) and ``server.py``.

    with FakeUpstream() as up:
        up.behave("model-b", first_delay_s=0.3)
        ... base_url=up.base_url ...
"""

from __future__ import annotations

from tests.support.upstream.actions import ACTIONS, Action, action
from tests.support.upstream.behaviour import (
    Behaviour,
    Canned,
    Received,
    Responder,
    directive,
    drip,
)
from tests.support.upstream.dialects import DIALECTS, Dialect
from tests.support.upstream.exchange import Exchange
from tests.support.upstream.server import FakeUpstream

__all__ = [
    "ACTIONS",
    "DIALECTS",
    "Action",
    "Behaviour",
    "Canned",
    "Dialect",
    "Exchange",
    "FakeUpstream",
    "Received",
    "Responder",
    "action",
    "directive",
    "drip",
]
