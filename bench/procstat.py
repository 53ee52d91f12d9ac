"""CPU time and resident memory of a process, read from /proc (Linux only)."""

from __future__ import annotations

import bisect
import os
import threading
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of all threads of ``pid`` so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name (field 2) may contain spaces and parentheses, so
    # count fields from the last ")": utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Polls VmRSS in a background thread so that peaks between rounds'
    start and end are seen, not just the value at the end of a round."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self._pid = pid
        self._interval_s = interval_s
        self._times: list[float] = []
        self._values: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_kib(self, start: float, end: float) -> int:
        """Highest sample taken between two time.monotonic() readings."""
        with self._lock:
            lo = bisect.bisect_left(self._times, start)
            hi = bisect.bisect_right(self._times, end)
            window = self._values[lo:hi]
        # A round shorter than one poll interval has no sample: read it now.
        return max(window) if window else rss_kib(self._pid)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                value = rss_kib(self._pid)
            except (FileNotFoundError, ProcessLookupError):
                return  # the process is gone; the runner reports that itself
            with self._lock:
                self._times.append(time.monotonic())
                self._values.append(value)
