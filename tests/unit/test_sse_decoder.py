"""The SSE decoder: complete events only, whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from src.providers.sse import EventTooLarge, SSEDecoder

STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"a":1}\n\n'
    b'event: message\r\ndata: {"b":2}\r\n\r\n'
    b"data: first line\ndata: second line\n\n"
    b"data:[DONE]\n\n"
)
EXPECTED = [b'{"a":1}', b'{"b":2}', b"first line\nsecond line", b"[DONE]"]


def decode(pieces: list[bytes]) -> list[bytes]:
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events


def test_whole_stream_in_one_chunk():
    assert decode([STREAM]) == EXPECTED


def test_every_split_point_gives_the_same_events():
    for cut in range(len(STREAM) + 1):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_byte_by_byte():
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_an_event_without_its_blank_line_is_not_dispatched():
    assert decode([b'data: {"a":1}\n']) == []


NAMED = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b'data: {"a":1}\n\n'
    b'event: ping\ndata: {"type":"ping"}\n\n'
)
NAMED_EXPECTED = [
    (b"message_start", b'{"type":"message_start"}'),
    (None, b'{"a":1}'),
    (b"ping", b'{"type":"ping"}'),
]


def test_named_events_keep_their_names_at_every_split_point():
    for cut in range(len(NAMED) + 1):
        decoder = SSEDecoder()
        events = decoder.feed_named(NAMED[:cut]) + decoder.feed_named(NAMED[cut:])
        assert events == NAMED_EXPECTED, cut


def test_an_event_over_the_limit_is_refused_however_it_arrives():
    event = b"data: " + b"x" * 2000 + b"\n\n"
    for pieces in ([event], [event[:100], event[100:]], [event + b'data: {"a":1}\n\n']):
        decoder = SSEDecoder(max_event_bytes=1024)
        with pytest.raises(EventTooLarge):
            for piece in pieces:
                decoder.feed_named(piece)
