"""The chat encoder's pass-through: a chunk edited on its bytes, or re-serialised when that
is not certain; either way the client reads the same object."""

from __future__ import annotations

import orjson
import pytest

from src.config import PriceConfig
from src.edge.encoders import ChatEncoder
from src.providers import Event

CHUNK = (
    b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"up",'
    b'"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}'
)


def encoded(data: bytes, include_usage: bool, price: PriceConfig | None = None) -> bytes:
    encoder = ChatEncoder(include_usage, "alias", "r1", price, None)
    return encoder.event(Event(None, data, orjson.loads(data)))


def sent_object(frame: bytes) -> dict[str, object]:
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n") and frame.count(b"\n") == 2
    sent: dict[str, object] = orjson.loads(frame[6:-2])
    return sent


def test_only_the_model_changes_when_the_client_asked_for_usage():
    assert encoded(CHUNK, True) == b"data: " + CHUNK.replace(b'"up"', b'"alias"') + b"\n\n"


@pytest.mark.parametrize(
    "data",
    [
        CHUNK,
        # usage first, in the middle, spaced, the model spelled with spaces, the key
        # texts also inside a value: edited or re-serialised, the same object
        b'{"usage":null,"model":"up","choices":[{"delta":{"content":"x"}}]}',
        b'{"model":"up","usage":null,"choices":[{"delta":{"content":"x"}}]}',
        b'{"model" : "up", "choices": [{"delta": {"content": "x"}}], "usage" : null}',
        b'{"model":"up","choices":[{"delta":{"content":"\\"model\\":\\"up\\" usage"}}],'
        b'"usage":null}',
        b'{"model":"up","choices":[{"delta":{"content":"model"}}],"usage":null}',
    ],
)
def test_a_null_usage_is_taken_out_and_the_model_replaced_however_the_chunk_is_written(data):
    expected = {k: v for k, v in orjson.loads(data).items() if k != "usage"}
    assert sent_object(encoded(data, False)) == {**expected, "model": "alias"}


def test_a_usage_chunk_goes_only_when_asked_and_is_priced_when_the_model_has_a_price():
    usage = (
        b'{"id":"c","model":"up","choices":[],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}'
    )
    assert encoded(usage, False) == b""
    assert encoded(usage, True) == b"data: " + usage.replace(b'"up"', b'"alias"') + b"\n\n"
    price = PriceConfig(input_usd_per_mtok=1_000_000, output_usd_per_mtok=1_000_000)
    priced = sent_object(encoded(usage, True, price))
    assert priced["usage"] == {
        "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost_usd": 3.0
    }  # fmt: skip


def test_a_chunk_without_a_model_gets_the_alias():
    data = b'{"id":"c","choices":[{"delta":{"content":"x"}}]}'
    assert sent_object(encoded(data, True))["model"] == "alias"
