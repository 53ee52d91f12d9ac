"""The telemetry log writer alone: to a file and stdout, never waiting for the disk, and
counting the lines it could not write."""

from __future__ import annotations

import io
import threading

from src.observability.telemetry import LineWriter


def test_writer_goes_to_file_and_stdout_and_makes_the_folder(tmp_path):
    out = io.BytesIO()
    writer = LineWriter(tmp_path / "deep" / "dir" / "g.log", stdout=out)
    writer.write(b'{"a":1}')
    writer.write(b'{"a":2}')
    writer.close()
    assert (tmp_path / "deep" / "dir" / "g.log").read_bytes() == b'{"a":1}\n{"a":2}\n'
    assert out.getvalue() == b'{"a":1}\n{"a":2}\n'


def test_write_returns_without_waiting_for_the_disk(tmp_path):
    class SlowStdout(io.BytesIO):
        gate = threading.Event()

        def write(self, data):
            self.gate.wait(5)
            return super().write(data)

    slow = SlowStdout()
    writer = LineWriter(tmp_path / "g.log", stdout=slow)
    done = threading.Event()

    def produce():
        for i in range(1000):
            writer.write(b'{"i":%d}' % i)
        done.set()

    threading.Thread(target=produce).start()
    assert done.wait(2), "write() blocked behind a stalled output"
    slow.gate.set()
    writer.close()
    assert len((tmp_path / "g.log").read_bytes().splitlines()) == 1000


def test_unwritable_log_counts_dropped_lines_and_keeps_going(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    writer = LineWriter(blocker / "g.log", stdout=io.BytesIO())
    writer.write(b"{}")
    writer.close()
    assert writer.dropped == 1
