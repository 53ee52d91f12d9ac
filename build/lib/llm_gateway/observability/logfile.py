"""The telemetry log file: lines appended from one background thread, rotated by size.

``LineWriter.write`` only queues a line, so a slow disk never stalls the event
loop, and a single writer thread means lines never interleave. With
``max_bytes`` set the file is rotated the way ``logging.handlers.
RotatingFileHandler`` names its files: ``gateway.log`` is renamed
``gateway.log.1``, ``.1`` becomes ``.2`` and so on, ``gateway.log.<backups>``
is the oldest kept. A rotation happens between two lines, in the writer
thread, so no line is lost or split across files; a file exceeds
``max_bytes`` only when one line alone is longer.

Several gateway processes may append to one file (``O_APPEND`` keeps each
write whole). The process that rotates holds an exclusive ``flock`` on the
file while renaming; the others notice that the path now names another file
and reopen it instead of rotating again.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections import deque
from pathlib import Path
from typing import BinaryIO

_FLUSH_INTERVAL_S = 0.05


def rotated_paths(path: str | os.PathLike[str], backups: int | None = None) -> list[Path]:
    """The log file and its rotated copies that exist, oldest first.

    Without ``backups``, every ``<path>.<n>`` present is included.
    """
    base = Path(path)
    numbered: list[tuple[int, Path]] = []
    for candidate in base.parent.glob(base.name + ".*"):
        suffix = candidate.name[len(base.name) + 1 :]
        if suffix.isdigit() and (backups is None or int(suffix) <= backups):
            numbered.append((int(suffix), candidate))
    ordered = [p for _, p in sorted(numbered, reverse=True)]
    return [*ordered, base] if base.exists() else ordered


class LineWriter:
    """Appends byte lines to a file, and to stdout when ``echo``, from one background thread.

    ``write`` only queues the line. The thread wakes every 50 ms (or on
    ``close``) and writes everything queued, in one ``os.write`` per target
    unless a rotation falls inside the batch. A failed write is counted in
    ``dropped`` and does not stop the gateway.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        stdout: BinaryIO | None = None,
        *,
        max_bytes: int | None = None,
        backups: int = 5,
        echo: bool = True,
    ) -> None:
        self.path = Path(path)
        self._echo = echo
        self.dropped = 0
        self._max_bytes = max_bytes
        self._backups = backups
        self._stdout = stdout if stdout is not None else sys.stdout.buffer
        self._pending: deque[bytes] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._fd = self._open()
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()

    def write(self, line: bytes) -> None:
        self._pending.append(line)

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError:
            return None

    def _run(self) -> None:
        while True:
            self._wake.wait(_FLUSH_INTERVAL_S)
            self._flush()
            if self._closing:
                self._flush()
                return

    def _flush(self) -> None:
        pending = self._pending
        batch = []
        while pending:
            batch.append(pending.popleft())
        if not batch:
            return
        data = b"\n".join(batch) + b"\n"
        if self._fd is None:
            self._fd = self._open()
        if self._fd is None:
            self.dropped += len(batch)
        elif self._max_bytes is None:
            if not _write_all(self._fd, data):
                self.dropped += len(batch)
        else:
            self._write_rotating(batch, self._max_bytes)
        if not self._echo:
            return
        try:
            self._stdout.write(data)
            self._stdout.flush()
        except (OSError, ValueError):
            pass  # stdout gone (closed pipe): the file is the record

    def _write_rotating(self, batch: list[bytes], max_bytes: int) -> None:
        """Write ``batch`` in groups that fit the room left, rotating between groups."""
        size = self._current_size()
        group: list[bytes] = []
        group_bytes = 0
        for line in batch:
            needed = len(line) + 1
            if size + group_bytes + needed > max_bytes and (group or size > 0):
                self._append(group)
                self._rotate()
                size, group, group_bytes = 0, [], 0
            group.append(line)
            group_bytes += needed
        self._append(group)

    def _append(self, group: list[bytes]) -> None:
        if not group:
            return
        if self._fd is None or not _write_all(self._fd, b"\n".join(group) + b"\n"):
            self.dropped += len(group)

    def _current_size(self) -> int:
        """The size of the file the path names, reopening it if another process rotated it."""
        if self._fd is None:
            return 0
        try:
            mine = os.fstat(self._fd)
            if os.stat(self.path).st_ino == mine.st_ino:
                return mine.st_size
        except OSError:
            pass
        self._reopen()
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def _rotate(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self._shift()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass  # the next write reopens the path; a failed rename loses no line
        self._reopen()

    def _shift(self) -> None:
        base = str(self.path)
        for n in range(self._backups - 1, 0, -1):
            if os.path.exists(f"{base}.{n}"):
                os.replace(f"{base}.{n}", f"{base}.{n + 1}")
        os.replace(base, f"{base}.1")

    def _reopen(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._open()


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError:
        return False
    return True
