"""What a process costs, from /proc: resident memory, CPU time, and the peak of memory over a while."""

from __future__ import annotations

import os
import threading
from types import TracebackType

MIB = 1024 * 1024
_TICK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class PeakRss:
    """Samples a process's resident memory every 20 ms while the block runs.

    ``growth`` is the highest sample minus the one taken on entry, in bytes.
    """

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.start = 0
        self.peak = 0

    @property
    def growth(self) -> int:
        return self.peak - self.start

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_bytes(self._pid)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(2)
        self.peak = max(self.peak, rss_bytes(self._pid))

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss_bytes(self._pid))
            except (OSError, RuntimeError):
                return
