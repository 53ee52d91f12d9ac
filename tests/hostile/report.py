"""Run the hostile suite and print its figures (the table of docs/reliability.md).

    python -m tests.hostile.report                # the CI-sized run
    python -m tests.hostile.report --scale 10     # thousands of cases per area
    python -m tests.hostile.report --scale 10 --write    # and write them into docs/reliability.md

Exits with the suite's status: figures from a failing run are printed but
never written into the page.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reliability.md"
START, END = "<!-- hostile-figures -->", "<!-- /hostile-figures -->"

AREAS = [
    ("input", "1. Input (schemathesis + hand-written)"),
    ("secrets", "2. Secrets (canaries)"),
    ("ssrf", "3. SSRF"),
    ("auth_path", "4. Auth path tricks"),
    ("faults", "5. Upstream faults"),
    ("disconnects", "6. Disconnects"),
    ("shutdown", "7. Shutdown (SIGTERM)"),
    ("telemetry", "8. Telemetry integrity"),
    ("slow_clients", "9. Slow clients"),
    ("upstream_bodies", "10. Upstream bodies (endless, huge, gzip bomb)"),
    ("stalled_clients", "11. Clients that stop reading"),
    ("sse_flood", "12. Streams without newlines"),
    ("connection_cap", "13. Upstream connection cap"),
    ("n_choices", "14. Token limit and n choices"),
    ("nesting", "15. Nesting, and exceptions after admission"),
    ("early_refusals", "16. Early refusals (body still coming)"),
    ("pipelining", "17. Pipelined requests behind a stream"),
    ("malformed_fields", "18. Malformed fields (hypothesis)"),
    ("log_amplification", "19. Log amplification"),
    ("over_limit", "20. Over-limit clients and large bodies"),
]


def render(figures: dict[str, dict[str, Any]], scale: int) -> str:
    lines = [
        f"Run: `python -m tests.hostile.report --scale {scale}`.",
        "",
        "| Area | Figure | Value |",
        "|---|---|---|",
    ]
    for key, title in AREAS:
        for index, (name, value) in enumerate(sorted(figures.get(key, {}).items())):
            shown = json.dumps(value) if isinstance(value, dict) else value
            lines.append(f"| {title if index == 0 else ''} | {name} | {shown} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="multiply every case count")
    parser.add_argument(
        "--write", action="store_true", help="write the table into docs/reliability.md"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "figures.json"
        env = {**os.environ, "HOSTILE_SCALE": str(args.scale), "HOSTILE_FIGURES": str(target)}
        status = subprocess.call(
            [sys.executable, "-m", "pytest", "tests/hostile", "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
        )
        figures = json.loads(target.read_text()) if target.exists() else {}
    table = render(figures, args.scale)
    print(table)
    if args.write and status == 0:
        text = PAGE.read_text()
        block = f"{START}\n{table}\n{END}"
        PAGE.write_text(re.sub(f"{START}.*?{END}", lambda _: block, text, flags=re.S))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
