"""Write a synthetic telemetry log of a given size, to time ``python -m src.tools.report``.

    python bench/make_log.py /tmp/big.log --mb 1024

Lines look like the gateway's (same fields, realistic values): 50 clients,
4 aliases, 14 days, about 2 % errors, a damaged line every 100,000.
"""

from __future__ import annotations

import argparse
import random

import orjson

CLIENTS = [f"team-{i:02d}" for i in range(50)]
ALIASES = ["default-chat", "fast-chat", "smart-chat", "embed"]


def line(rng: random.Random, i: int) -> bytes:
    failed = rng.random() < 0.02
    prompt, completion = rng.randint(5, 3000), rng.randint(1, 800)
    latency = rng.lognormvariate(6.5, 0.8)
    record = {
        "request_id": f"gw-{i:012x}",
        "client_id": rng.choice(CLIENTS),
        "endpoint": "/v1/chat/completions",
        "alias": rng.choice(ALIASES),
        "provider": "openai",
        "upstream_model": "gpt-4o-mini",
        "status": 502 if failed else 200,
        "error_type": "upstream_error" if failed else None,
        "latency_ms": round(latency, 3),
        "upstream_latency_ms": round(latency * 0.97, 3),
        "prompt_tokens": None if failed else prompt,
        "completion_tokens": None if failed else completion,
        "total_tokens": None if failed else prompt + completion,
        "cost_usd": None if failed else round(prompt * 1.5e-7 + completion * 6e-7, 8),
        "stub": False,
        "targets_tried": 1,
        "stream": False,
        "ttft_ms": None,
        "outcome": "upstream_error" if failed else "completed",
        "event": "request",
        "timestamp": f"2026-11-{1 + i * 14 // 3_000_000 % 14:02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        f".{i % 1_000_000:06d}Z",
    }
    return orjson.dumps(record)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--mb", type=int, default=1024)
    args = parser.parse_args()
    rng = random.Random(7)
    target = args.mb * 1024 * 1024
    written = i = 0
    with open(args.path, "wb", buffering=1 << 22) as out:
        while written < target:
            data = b'{"damaged": ' if i % 100_000 == 99_999 else line(rng, i)
            out.write(data + b"\n")
            written += len(data) + 1
            i += 1
    print(f"{args.path}: {i} lines, {written / 1024 / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
