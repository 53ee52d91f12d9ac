"""Run one wrk round and parse the JSON line that post.lua's done() prints."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).parent
SCRIPTS = {"nonstream": BENCH_DIR / "post.lua", "stream": BENCH_DIR / "post_stream.lua"}
MARKER = "WRK_JSON "
# wrk's default 2 s would count slow gateway answers as errors rather
# than as latency.
REQUEST_TIMEOUT = "10s"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def parse_output(stdout: str) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
            return WrkResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1000,
                p90_ms=raw["p90_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
                errors=raw["errors"],
            )
    raise RuntimeError(f"wrk printed no {MARKER.strip()} line:\n{stdout}")


def run_wrk(
    url: str, mode: str, concurrency: int, duration_s: int, cpu: int, api_key: str | None = None
) -> WrkResult:
    """One wrk round, pinned to ``cpu``, single thread, bounded by ``duration_s``."""
    cmd = [
        "taskset", "-c", str(cpu),
        "wrk", "-t1", f"-c{concurrency}", f"-d{duration_s}s", f"--timeout={REQUEST_TIMEOUT}",
        "-s", str(SCRIPTS[mode]), url,
    ]  # fmt: skip
    env = dict(os.environ)
    env.pop("BENCH_API_KEY", None)
    if api_key:
        env["BENCH_API_KEY"] = api_key
    # The timeout is a safety net: wrk stops itself after duration_s.
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=duration_s + 30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )
    return parse_output(done.stdout)
