"""Path tricks: a request reaches a route only by that route's own path, and never a 500.

``Host`` headers, absolute-form targets, ``//``, ``..``, ``%2e``, encoded
slashes, trailing bits and rewrite headers. The gateway matches the path
uvicorn decoded, exactly: no normalisation, so no trick turns one path into
another. (Client keys are issue 7's; once routes are protected, these same
requests must also never reach one without a key.)
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.hostile.faulty_upstream import FaultyUpstream, directive
from tests.hostile.harness import HostileGateway, is_envelope

CHAT = "/v1/chat/completions"

# (request target, extra headers, whether it is the chat route itself)
TRICKS: list[tuple[str, str, bool]] = [
    (CHAT, "", True),
    (CHAT + "?x=1", "", True),
    ("http://evil.example" + CHAT, "", True),  # absolute-form: the path is still the route's
    ("http://169.254.169.254" + CHAT, "", True),
    (CHAT, "Host: 169.254.169.254\r\n", True),
    (CHAT, "X-Original-URL: /healthz\r\nX-Rewrite-URL: /healthz\r\n", True),
    (CHAT, "X-Forwarded-Prefix: /admin\r\nX-Forwarded-Host: evil\r\n", True),
    ("//v1/chat/completions", "", False),
    ("/v1//chat/completions", "", False),
    ("/v1/chat/completions/", "", False),
    ("/v1/chat/./completions", "", False),
    ("/./v1/chat/completions", "", False),
    ("/v1/x/../chat/completions", "", False),
    ("/v1/%2e%2e/v1/chat/completions", "", False),
    ("/v1/chat/%2e/completions", "", False),
    ("/v1/chat%2fcompletions", "", False),
    ("/v1/chat/completions%00", "", False),
    ("/v1/chat/completions;x=1", "", False),
    ("/V1/CHAT/COMPLETIONS", "", False),
    ("/v1/chat/completions%20", "", False),
    ("/%76%31/chat/completions", "", False),  # routes match literally, encoded or not
    ("/v1/chat/completions/", "Host: evil.example\r\n", False),  # no redirect built from Host
    ("/healthz/../v1/chat/completions", "", False),
    ("/v1/models/../chat/completions", "", False),
    ("*", "", False),
]


def _send(port: int, target: str, headers: str, body: bytes) -> tuple[int, bytes, bytes]:
    request = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
               "Connection: close\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, answer = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, answer


@pytest.mark.parametrize(("target", "headers", "is_route"), TRICKS)
def test_path_tricks_reach_only_the_route_they_name_and_never_500(
    gateway: HostileGateway, upstream: FaultyUpstream, figures: Any,
    target: str, headers: str, is_route: bool,
) -> None:
    rid = f"path-{TRICKS.index((target, headers, is_route))}"
    body = json.dumps({"model": "chat",
                       "messages": [{"role": "user", "content": directive(rid, "ok")}]}).encode()
    status, head, answer = _send(gateway.port, target, headers, body)
    figures.add("auth_path", requests=1, answered_5xx=int(status >= 500))
    assert status < 500
    reached = len(upstream.of(rid))
    if is_route:
        assert status == 200, answer
        assert reached == 1
    else:
        assert status in {400, 404, 405}, (status, answer)
        assert is_envelope(status, answer, target)
        assert reached == 0
        assert b"x-request-id" not in head.lower()
        assert b"location" not in head.lower()
