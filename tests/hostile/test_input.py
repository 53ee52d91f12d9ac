"""Hostile input: generated (schemathesis) and hand-written bodies against the real gateway.

Every answer must be below 500, and every refusal the gateway's error envelope
in the route's dialect. Figures: cases tried, answers >= 500, refusals outside
the envelope.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core.result import Ok

from tests.hostile.harness import Exposure, is_envelope, scaled
from tests.support.gateway import GatewayProcess
from tests.support.upstream import FakeUpstream, directive

pytestmark = pytest.mark.slow

ROUTES = ("/v1/chat/completions", "/v1/chat", "/v1/embeddings", "/v1/messages")


class Tally:
    def __init__(self) -> None:
        self.cases = 0
        self.server_errors: list[str] = []
        self.outside_envelope: list[str] = []

    def check(self, label: str, path: str, status: int, body: bytes) -> None:
        self.cases += 1
        if status >= 500:
            self.server_errors.append(f"{label}: {status} {body[:200]!r}")
        elif status >= 400 and not is_envelope(status, body, path):
            self.outside_envelope.append(f"{label}: {status} {body[:200]!r}")


@pytest.fixture(scope="module")
def tally(figures: Any) -> Iterator[Tally]:
    found = Tally()
    yield found
    figures.record(
        "input",
        cases=found.cases,
        answered_5xx=len(found.server_errors),
        rejections_outside_envelope=len(found.outside_envelope),
    )


def _base_body(path: str, content: Any = "hi") -> dict[str, Any]:
    if path == "/v1/embeddings":
        return {"model": "chat", "input": content}
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": content}]}
    if path == "/v1/messages":
        body["max_tokens"] = 16
    if path == "/v1/chat":
        body["client_id"] = "hostile"
    return body


def _raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before taking it all
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def _status_and_body(raw: bytes) -> tuple[int, bytes]:
    """The first answer's status and body (a later request on the connection gets its own)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    if length is not None:
        body = body[: int(length.group(1))]
    return int(head.split(b" ", 2)[1]), body


def _hand_written(path: str) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(label, raw body, headers) of the hand-written hostile bodies for ``path``."""
    json_type = {"content-type": "application/json"}

    def body(**changes: Any) -> bytes:
        value = _base_body(path)
        value.update(changes)
        return json.dumps(value).encode()

    yield "not json", b"{nope", json_type
    yield "empty", b"", json_type
    yield "array", b"[1, 2]", json_type
    yield "string", b'"hello"', json_type
    yield "null", b"null", json_type
    yield "number", b"12", json_type
    yield "invalid utf-8", b'{"model": "chat\xff\xfe", "messages": []}', json_type
    yield (
        "lone surrogate escape",
        b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
        json_type,
    )
    yield "lone surrogate bytes", b'{"model": "chat\xed\xa0\x80"}', json_type
    yield "nul bytes", body(model="ch\u0000at"), json_type
    yield "nul in content", json.dumps(_base_body(path, "a\u0000b")).encode(), json_type
    yield "nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, json_type
    yield "nested object 100000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, json_type
    yield (
        "nested in messages",
        body(messages=[{"role": "user", "content": "x", "x": None}])[:-1]
        + b', "deep": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        json_type,
    )
    yield "huge string", body(model="m" * 2_000_000), json_type
    yield "wrong type model", body(model=12), json_type
    yield "wrong type messages", body(messages="hi"), json_type
    yield "wrong type message", body(messages=[1, 2]), json_type
    yield "wrong type content", body(messages=[{"role": "user", "content": 5}]), json_type
    yield "wrong type stream", body(stream="yes"), json_type
    yield (
        "missing model",
        json.dumps({k: v for k, v in _base_body(path).items() if k != "model"}).encode(),
        json_type,
    )
    yield "missing everything", b"{}", json_type
    yield "empty messages", body(messages=[]), json_type
    for value in (2**63, 10**400, -1, 0, 1.5, True, "10", None):
        yield f"max_tokens {value!r}", body(max_tokens=value), json_type
    for literal in (b"1e999", b"-1e999", b"NaN", b"Infinity", b"-Infinity"):
        yield (
            f"max_tokens {literal.decode()}",
            body()[:-1] + b', "max_tokens": ' + literal + b"}",
            json_type,
        )
    yield (
        "duplicate keys",
        b'{"model": "nope", "model": "chat"' + body()[1:].replace(b'"model": "chat", ', b", ", 1),
        json_type,
    )
    yield (
        "multipart",
        b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nchat\r\n--x--\r\n',
        {"content-type": "multipart/form-data; boundary=x"},
    )
    yield "form", b"model=chat&messages=hi", {"content-type": "application/x-www-form-urlencoded"}
    yield "text/plain", body(), {"content-type": "text/plain"}
    yield "json with charset", body(), {"content-type": "application/json; charset=utf-8"}
    yield "no content type", body(), {}


@pytest.mark.parametrize("path", ROUTES)
def test_hand_written_bodies_never_answer_5xx_and_every_refusal_is_the_envelope(
    gateway: GatewayProcess, exposure: Exposure, tally: Tally, path: str
) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=15) as client:
        for label, raw, headers in _hand_written(path):
            response = client.post(path, content=raw, headers=headers)
            exposure.answer(response)
            tally.check(f"{path} {label}", path, response.status_code, response.content)
    assert not tally.server_errors, tally.server_errors
    assert not tally.outside_envelope, tally.outside_envelope


def test_100_000_messages_are_handled_below_5xx(
    gateway: GatewayProcess, exposure: Exposure, tally: Tally
) -> None:
    messages = [{"role": "user", "content": "x"}] * 100_000
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        response = client.post("/v1/chat/completions", json={"model": "chat", "messages": messages})
    exposure.answer(response)
    tally.check("100000 messages", "/v1/chat/completions", response.status_code, response.content)
    # About 3 MB: within the default 32 MiB body limit, so it is answered.
    assert response.status_code == 200


def test_duplicate_keys_mean_one_thing_for_routing_limits_and_the_upstream_body(
    gateway: GatewayProcess, upstream: FakeUpstream, exposure: Exposure, tally: Tally
) -> None:
    # JSON with repeated keys: the last one wins, once, for every later step.
    raw = (
        b'{"model": "nope", "messages": [{"role": "user", "content": "x"}],'
        b' "max_tokens": 99999999999, "model": "chat", "max_tokens": 7,'
        b' "messages": [{"role": "user", "content": "'
        + directive("dup-keys", "ok").encode()
        + b'"}]}'
    )
    response = httpx.post(gateway.base_url + "/v1/chat/completions", content=raw, timeout=10)
    exposure.answer(response)
    tally.check("duplicate keys", "/v1/chat/completions", response.status_code, response.content)
    assert response.status_code == 200, response.text
    sent = upstream.of("dup-keys")
    assert len(sent) == 1
    assert sent[0].body["max_tokens"] == 7
    assert sent[0].body["model"] == "m1"
    assert sent[0].body["messages"][0]["content"] == directive("dup-keys", "ok")
    assert response.json()["model"] == "chat"


def test_http_level_abuse_is_refused_below_5xx(
    gateway: GatewayProcess, tally: Tally, exposure: Exposure
) -> None:
    body = json.dumps(_base_body("/v1/chat/completions")).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    cases = {
        "oversized header": head
        + b"X-Big: "
        + b"a" * 200_000
        + b"\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body,
        "many headers": head
        + b"".join(b"X-H%d: v\r\n" % i for i in range(8000))
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body,
        "content-length too small": head + b"Content-Length: 5\r\n\r\n" + body,
        "content-length negative": head + b"Content-Length: -5\r\n\r\n" + body,
        "content-length garbage": head + b"Content-Length: 12abc\r\n\r\n" + body,
        "two content-lengths": head
        + b"Content-Length: 3\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body,
        "content-length and chunked": head
        + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(body)
        + body
        + b"\r\n0\r\n\r\n",
        "content-length huge": head + b"Content-Length: 99999999999999\r\n\r\n" + body,
    }
    statuses = {}
    for label, request in cases.items():
        raw = _raw(gateway.port, request)
        exposure.text(raw.decode("latin-1"))
        status, answer = _status_and_body(raw)
        statuses[label] = status
        tally.check(label, "/v1/chat/completions", status, answer.split(b"\r\n\r\n")[0])
    assert not tally.server_errors, tally.server_errors
    assert not tally.outside_envelope, tally.outside_envelope
    assert statuses["oversized header"] == statuses["many headers"] == 431
    assert statuses["content-length huge"] == 413, statuses
    malformed = [
        label for label in cases if label.startswith(("content", "two")) and "huge" not in label
    ]
    assert all(statuses[label] == 400 for label in malformed), statuses


def test_content_length_larger_than_the_body_ends_in_a_refusal_not_a_hang(
    gateway: GatewayProcess, tally: Tally
) -> None:
    body = json.dumps(_base_body("/v1/chat/completions")).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (len(body) + 100) + body
    )
    raw = _raw(gateway.port, request, timeout=10)  # we half-close: the body can never complete
    tally.cases += 1
    if raw:
        status, _ = _status_and_body(raw)
        assert status < 500


# -- generated --------------------------------------------------------------------------


def test_generated_cases_never_answer_5xx_and_every_refusal_is_the_envelope(
    gateway: GatewayProcess, exposure: Exposure, tally: Tally
) -> None:
    schema = schemathesis.openapi.from_url(gateway.base_url + "/openapi.json")
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    api = [op for op in operations if op.path in ROUTES]
    assert {op.path for op in api} == set(ROUTES)
    assert all(op.body for op in api), "every API route describes its request body"
    session = requests.Session()
    reached = {"upstream": 0}

    def run(case: Any) -> None:
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("model"), str) and case.id[-1] in "02468":
            body["model"] = "chat"  # half the cases past routing, into the pipeline
        response = case.call(base_url=gateway.base_url, session=session, timeout=15)
        exposure.text(response.text)
        if response.status_code == 200:
            reached["upstream"] += 1
        tally.check(
            f"generated {case.method} {case.path} {body!r:.200}",
            case.path,
            response.status_code,
            response.content,
        )

    examples = scaled(40)
    for operation in operations:
        modes = [schemathesis.GenerationMode.POSITIVE]
        if operation.body:  # a GET without parameters has no wrong form to generate
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def generated(case: Any) -> None:
                run(case)

            generated()
    session.close()
    assert reached["upstream"] > 0, "some generated cases reach the upstream"
    assert not tally.server_errors, tally.server_errors[:10]
    assert not tally.outside_envelope, tally.outside_envelope[:10]
