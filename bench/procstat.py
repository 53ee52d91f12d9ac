"""CPU time and resident memory of processes, and how busy a core is, from /proc (Linux only)."""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from collections.abc import Collection

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


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's workers), from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited while we looked
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(pid)
    return total


def tree_rss_kib(pids: list[int]) -> int:
    """Sum of VmRSS: pages the processes share are counted once per process."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, RuntimeError):
            total += rss_kib(pid)
    return total


def core_times(cpus: Collection[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of some cores since boot, summed, from /proc/stat."""
    prefixes = tuple(f"cpu{cpu} ".encode() for cpu in cpus)
    busy = total = 0
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(prefixes):
                # user nice system idle iowait irq softirq steal (guest is in user)
                ticks = [int(v) for v in line.split()[1:9]]
                total += sum(ticks)
                busy += sum(ticks) - ticks[3] - ticks[4]
    if not total:
        raise RuntimeError(f"no line for cores {sorted(cpus)} in /proc/stat")
    return busy, total
