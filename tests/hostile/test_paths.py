"""Path tricks: a request reaches a route only by that route's own path, and never a 500.

``Host`` headers, absolute-form targets, ``//``, ``..``, ``%2e``, encoded
slashes, trailing bits and rewrite headers. The gateway matches the raw path
exactly: no normalisation, no percent-decoding into a route, so no trick turns
one path into another. With a ``clients`` section, no trick reaches a
protected route (or the upstream) without a key.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.hostile.harness import CLIENT_KEY, is_envelope
from tests.support.gateway import GatewayProcess
from tests.support.upstream import FakeUpstream, directive

pytestmark = pytest.mark.slow

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


PROTECTED = [
    "/v1/chat/completions",
    "/v1/chat",
    "/v1/embeddings",
    "/v1/messages",
    "/admin/reload",
    "/metrics",
    "/dashboard/data",
]
# Credentials that are not the client's key in its place.
NOT_A_KEY = [
    "",
    "Authorization: Bearer\r\n",
    "Authorization: Bearer \r\n",
    "Authorization: Basic YWxpY2U6\r\n",
    f"Authorization: Bearer {CLIENT_KEY[:-1]}\r\n",
    f"Authorization: Bearer {CLIENT_KEY}x\r\n",
    f"Authorization: {CLIENT_KEY}\r\n",
    f"Cookie: key={CLIENT_KEY}\r\n",
    f"X-Forwarded-Authorization: Bearer {CLIENT_KEY}\r\n",
    "X-Client-Id: alice\r\n",
]


def _send(port: int, target: str, headers: str, body: bytes) -> tuple[int, bytes, bytes]:
    request = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, answer = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, answer


@pytest.mark.parametrize(("target", "headers", "is_route"), TRICKS)
def test_path_tricks_reach_only_the_route_they_name_and_never_500(
    gateway: GatewayProcess,
    upstream: FakeUpstream,
    figures: Any,
    target: str,
    headers: str,
    is_route: bool,
) -> None:
    rid = f"path-{TRICKS.index((target, headers, is_route))}"
    body = json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": directive(rid, "ok")}]}
    ).encode()
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


@pytest.mark.parametrize(("target", "headers", "is_route"), TRICKS)
def test_with_client_keys_no_path_trick_reaches_a_protected_route_without_a_key(
    keyed_gateway: GatewayProcess,
    upstream: FakeUpstream,
    figures: Any,
    target: str,
    headers: str,
    is_route: bool,
) -> None:
    rid = f"keyed-path-{TRICKS.index((target, headers, is_route))}"
    body = json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": directive(rid, "ok")}]}
    ).encode()
    for credential in NOT_A_KEY:
        status, _, answer = _send(keyed_gateway.port, target, headers + credential, body)
        figures.add(
            "auth_path",
            keyed_requests=1,
            reached_without_key=int(status == 200 or bool(upstream.of(rid))),
        )
        assert status < 500
        assert status in ({401} if is_route else {400, 401, 404, 405}), (status, answer)
        assert is_envelope(status, answer, target)
    assert upstream.of(rid) == []


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_every_protected_route_refuses_every_non_key(
    keyed_gateway: GatewayProcess,
    upstream: FakeUpstream,
    figures: Any,
    path: str,
    method: str,
) -> None:
    rid = f"protected-{path}-{method}"
    body = json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": directive(rid, "ok")}]}
    ).encode()
    for credential in NOT_A_KEY:
        for host in ("Host: localhost\r\n", "Host: 169.254.169.254\r\n"):
            request = (
                f"{method} {path} HTTP/1.1\r\n{host}{credential}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode() + body
            with socket.create_connection(("127.0.0.1", keyed_gateway.port), timeout=10) as sock:
                sock.sendall(request)
                raw = b""
                while chunk := sock.recv(65536):
                    raw += chunk
            status = int(raw.split(b" ", 2)[1])
            figures.add("auth_path", keyed_requests=1, reached_without_key=int(status == 200))
            assert status in {401, 403, 404, 405}, (path, method, credential, raw[:300])
    assert upstream.of(rid) == []


def test_the_key_itself_opens_the_route(keyed_gateway: GatewayProcess) -> None:
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "x"}]}).encode()
    status, _, answer = _send(
        keyed_gateway.port, CHAT, f"Authorization: Bearer {CLIENT_KEY}\r\n", body
    )
    assert status == 200, answer
