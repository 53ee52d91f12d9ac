"""Log rotation by size: no line lost or split, files bounded, backups kept, several writers."""

from __future__ import annotations

import io
import json
import threading

from src.observability.logfile import LineWriter, rotated_paths
from tests.support.configs import UPSTREAM, make_config
from tests.support.payloads import chat_body, completion


def read_all(base) -> list[bytes]:
    return [line for path in rotated_paths(base) for line in path.read_bytes().splitlines()]


def test_rotation_keeps_every_line_in_order_and_files_under_the_limit(tmp_path):
    base = tmp_path / "g.log"
    writer = LineWriter(base, stdout=io.BytesIO(), max_bytes=1024, backups=100)
    lines = [b'{"n":%05d,"pad":"%s"}' % (i, b"x" * (i % 40)) for i in range(600)]
    for i, line in enumerate(lines):
        writer.write(line)
        if i % 50 == 0:
            writer._wake.set()  # flush now and then, so rotations fall between and inside batches
    writer.close()
    files = rotated_paths(base)
    assert len(files) > 10
    assert read_all(base) == lines
    assert all(path.stat().st_size <= 1024 for path in files)
    assert {p.name for p in files} == {"g.log", *(f"g.log.{n}" for n in range(1, len(files)))}


def test_only_the_configured_number_of_backups_is_kept(tmp_path):
    base = tmp_path / "g.log"
    writer = LineWriter(base, stdout=io.BytesIO(), max_bytes=1024, backups=2)
    for i in range(500):
        writer.write(b'{"n":%05d}' % i)
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.log", "g.log.1", "g.log.2"]
    kept = read_all(base)
    assert kept[-1] == b'{"n":00499}'
    assert kept == sorted(kept)  # the newest lines, still in order


def test_two_writers_on_one_file_lose_no_line_across_rotations(tmp_path):
    """As two gateway workers do: each rotates or follows the other's rotation."""
    base = tmp_path / "g.log"
    writers = [
        LineWriter(base, stdout=io.BytesIO(), max_bytes=2048, backups=1000) for _ in range(2)
    ]

    def produce(w: int) -> None:
        for i in range(400):
            writers[w].write(b'{"w":%d,"i":%d}' % (w, i))
            if i % 20 == 0:
                writers[w]._wake.set()

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    seen = [json.loads(line) for line in read_all(base)]
    assert len(seen) == 800
    assert {(s["w"], s["i"]) for s in seen} == {(w, i) for w in range(2) for i in range(400)}


async def test_the_gateway_rotates_its_log_as_configured(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(tmp_path, log_max_bytes=2048, log_backups=50)
    client = await gateway_client(config)
    for _ in range(30):
        assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
        client.app.state.telemetry.writer._wake.set()
    client.app.state.telemetry.writer.close()
    lines = [json.loads(line) for line in read_all(config.log_file)]
    assert len(lines) == 30
    assert len(rotated_paths(config.log_file)) > 3
