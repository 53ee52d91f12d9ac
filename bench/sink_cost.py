"""CPU cost per request of the observability sinks, measured in-process.

    python -m bench.sink_cost

Feeds one successful request's record to the Prometheus sink, the dashboard's
rolling aggregate and the in-flight gauge, many times, and prints µs per call
(best of five runs). Tracing is off by default and not included.
"""

from __future__ import annotations

import time

from src.config import parse_config
from src.observability.labels import Labels
from src.observability.metrics import InFlight, Metrics
from src.observability.rolling import Rolling
from src.observability.telemetry import Attempt, CallRecord

N = 200_000
CONFIG = parse_config({
    "providers": {"openai": {"base_url": "http://127.0.0.1:9/v1"}},
    "aliases": {"default-chat": {"provider": "openai", "model": "gpt-4o-mini"}},
    "rate_limit": {"requests_per_minute": 1000},
})  # fmt: skip


def record() -> tuple[CallRecord, dict[str, object]]:
    rec = CallRecord("gw-000000000001", "/v1/chat/completions", "team-a")
    rec.alias, rec.provider, rec.upstream_model = "default-chat", "openai", "gpt-4o-mini"
    rec.prompt_tokens, rec.completion_tokens, rec.targets_tried = 12, 40, 1
    rec.upstream_latency_ms = 310.5
    now = time.perf_counter()
    rec.attempts.append(Attempt("openai", "gpt-4o-mini", now, now, None))
    return rec, rec.fields()


def per_call_us(fn: object, *args: object) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(N):
            fn(*args)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best / N * 1e6


def main() -> None:
    labels = Labels(CONFIG)
    metrics = Metrics(CONFIG, labels)
    in_flight = InFlight(metrics)
    rolling = Rolling(CONFIG, labels, in_flight)
    rec, fields = record()
    now = time.perf_counter()

    def in_and_out() -> None:
        in_flight.enter()
        in_flight.leave()

    def attempt_note() -> None:
        Attempt("openai", "gpt-4o-mini", now, now, None)

    results = {
        "prometheus sink": per_call_us(metrics.observe, rec, fields),
        "dashboard sink": per_call_us(rolling.observe, rec, fields),
        "in-flight gauge": per_call_us(in_and_out),
        "attempt record": per_call_us(attempt_note),
    }
    for name, us in results.items():
        print(f"{name:16s} {us:5.2f} µs")
    print(f"{'total':16s} {sum(results.values()):5.2f} µs per request")


if __name__ == "__main__":
    main()
